"""Trained models shipped inside the package: depth teachers and the segmentation teacher.

A shipped model is a folder ``donna_nas/resources/models/NAME/`` holding

* ``model.safetensors``: the weights (fp16 on disk, loaded as fp32),
* ``model.json`` (depth models): how to rebuild the network, as a depth run's ``model.json``,
* ``card.json``: the model card: kind, world, steps, command, metrics, params and the sha256 of
  the weights file, checked on every load so a damaged install is reported, not silently used.

A shipped depth model is used wherever a depth run directory is accepted: its name works as
``--teacher`` (build-supernet, quickstart), ``--backbone``/``--init-from`` (finetune: the encoder
or the whole depth net starts from it), ``--teacher-weights`` (a ResNet teacher's encoder weights)
and ``evaluate --model``. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from donna_nas.errors import UserError

__all__ = ["ShippedModel", "models_dir", "list_models", "resolve_model", "is_model_name",
           "write_shipped_depth_model", "write_shipped_seg_teacher", "sha256_of", "SHIPPED_TEACHER_POSE"]

CARD = "card.json"
# the pose net the shipped depth teachers were trained with (DepthConfig fields): one call per frame
# pair at the training size, as Monodepth2; the trainer's defaults changed after they were made
SHIPPED_TEACHER_POSE = {"pose_batch_pairs": False, "pose_downsample": 1}
WEIGHTS = "model.safetensors"


def models_dir() -> Path:
    """``donna_nas/resources/models`` of the installed package (a plain folder: wheels are unzipped)."""
    return Path(__file__).resolve().parents[2] / "resources" / "models"


@dataclass(frozen=True)
class ShippedModel:
    """One shipped model: its folder and its card."""

    name: str
    folder: Path
    card: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.card.get("kind", "depth"))

    @property
    def weights(self) -> Path:
        return self.folder / WEIGHTS

    def verify(self) -> None:
        """Raise a one-line ``UserError`` unless the weights file is there and matches the card's sha256."""
        if not self.weights.is_file():
            raise UserError(f"{self.weights}: missing from the installed package; reinstall donna-nas")
        got = sha256_of(self.weights)
        if got != self.card.get("sha256"):
            raise UserError(f"{self.weights}: sha256 {got[:12]}… does not match its card "
                            f"({str(self.card.get('sha256'))[:12]}…): the file is damaged; reinstall donna-nas")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def list_models(root: Path | None = None) -> list[ShippedModel]:
    """Every folder under the models directory that has a card, sorted by name."""
    root = root or models_dir()
    out = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            card = d / CARD
            if d.is_dir() and card.is_file():
                try:
                    out.append(ShippedModel(d.name, d, json.loads(card.read_text())))
                except json.JSONDecodeError as exc:
                    raise UserError(f"{card}: corrupt model card ({exc.msg}); reinstall donna-nas") from None
    return out


def is_model_name(spec: str | None, root: Path | None = None) -> bool:
    """True when ``spec`` names a shipped model (and is not an existing path)."""
    if not spec or Path(spec).exists():
        return False
    return any(m.name == spec for m in list_models(root))


def resolve_model(name: str, kind: str | None = None, root: Path | None = None) -> ShippedModel:
    """The shipped model ``name`` with its weights verified; an unknown name lists the known ones."""
    models = list_models(root)
    for m in models:
        if m.name == name:
            if kind is not None and m.kind != kind:
                raise UserError(f"{name}: a shipped {m.kind} model, not a {kind} model; known {kind} models: "
                                f"{', '.join(x.name for x in models if x.kind == kind) or 'none'}")
            m.verify()
            return m
    known = ", ".join(m.name for m in models if kind is None or m.kind == kind) or "none"
    raise UserError(f"{name!r}: not a path and not a shipped model; shipped models: {known} "
                    f"(see `donna-nas models list`)")


def _write_fp16(src: Path, dst: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import load_file, save_file

    from donna_nas.runtime.io import atomic_path

    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(src)).items()}
    with atomic_path(dst) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def write_shipped_depth_model(name: str, run: Path, card: dict[str, Any], root: Path | None = None) -> ShippedModel:
    """Copy depth run ``run``'s model into the package as fp16, with ``card`` (sha256 and params added)."""
    from donna_nas.runtime.io import write_json_atomic

    folder = (root or models_dir()) / name
    folder.mkdir(parents=True, exist_ok=True)
    _write_fp16(run / WEIGHTS, folder / WEIGHTS)
    info = json.loads((run / "model.json").read_text())
    info = {k: info[k] for k in ("backbone", "space", "act", "height", "width", "min_depth", "max_depth", "params")}
    info["steps"] = card.get("steps")
    write_json_atomic(folder / "model.json", info)
    full = {"name": name, "kind": "depth", "backbone": info["backbone"], "params": info["params"],
            "dtype": "float16", **card, "sha256": sha256_of(folder / WEIGHTS),
            "bytes": (folder / WEIGHTS).stat().st_size}
    write_json_atomic(folder / CARD, full)
    return ShippedModel(name, folder, full)


def write_shipped_seg_teacher(name: str, src: Path, card: dict[str, Any], root: Path | None = None) -> ShippedModel:
    """Copy a ``train-seg-teacher`` file into the package (it is small: kept fp32), with ``card``."""
    from safetensors import safe_open

    from donna_nas.runtime.io import write_json_atomic

    folder = (root or models_dir()) / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, folder / WEIGHTS)
    with safe_open(str(src), framework="pt") as f:
        params = sum(f.get_tensor(k).numel() for k in f.keys() if "running" not in k and "num_batches" not in k)
    full = {"name": name, "kind": "segmentation", "params": int(params), "dtype": "float32", **card,
            "sha256": sha256_of(folder / WEIGHTS), "bytes": (folder / WEIGHTS).stat().st_size}
    write_json_atomic(folder / CARD, full)
    return ShippedModel(name, folder, full)
