"""X-Distill (Cai et al., BMVC 2021): semantic segmentation supervises self-supervised depth.

A segmentation teacher labels each training frame; its classes are regrouped into a few
depth-relevant groups (YAML mapping); a small trainable transfer network maps the predicted
(multi-scale, mean-normalised) disparity to group logits, and its cross-entropy against the teacher
trains the depth network through the transfer network. Training only: the exported depth network
is unchanged.

Teacher sources (``--seg-teacher``):
  * a file written by ``donna-nas train-seg-teacher`` (``.safetensors``), or the name of a shipped
    one (``synth-segnet``, see ``donna-nas models list``),
  * an ONNX (``.onnx``) or TorchScript (``.pt``/``.ts``/``.torchscript``) model: input a float
    image (B,3,H,W) in [0,1], output class logits (B,C,h,w) over Cityscapes trainIds,
  * ``labels``: the dataset's own label maps (``semantics/`` tree), or a folder holding label PNGs
    laid out like that tree (read by the dataset).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from donna_nas.data.epochs import EpochDataset
from donna_nas.errors import UserError

__all__ = [
    "GroupMapping",
    "load_groups",
    "TransferNet",
    "xdistill_loss",
    "ModelTeacher",
    "LabelTeacher",
    "make_teacher",
]

IGNORE = 255


@dataclass(frozen=True)
class GroupMapping:
    """names[g] is group g; ``lut`` maps a class id (0..255) to a group id (255 = ignore)."""

    names: tuple[str, ...]
    lut: torch.Tensor  # (256,) int64

    @property
    def num_groups(self) -> int:
        return len(self.names)

    def __call__(self, classes: torch.Tensor) -> torch.Tensor:
        return self.lut.to(classes.device)[classes.long().clamp(0, 255)]


def _class_ids() -> dict[str, int]:
    from donna_nas.data.semantics import CLASSES

    return {c.name: c.id for c in CLASSES}


def load_groups(path: str | Path | None = None) -> GroupMapping:
    """Read a ``groups: {name: [class, ...]}`` YAML (default: the shipped mapping)."""
    if path is None:
        text = resources.files("donna_nas.resources").joinpath("xdistill_groups.yaml").read_text()
        src = "xdistill_groups.yaml (shipped)"
    else:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"{p}: group mapping file not found")
        text, src = p.read_text(), str(p)
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{src}: not valid YAML ({exc})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("groups"), dict) or not obj["groups"]:
        raise UserError(f"{src}: expected a mapping 'groups: {{group_name: [class names or ids]}}'")
    ids = _class_ids()
    lut = torch.full((256,), IGNORE, dtype=torch.long)
    seen: dict[int, str] = {}
    names = []
    for g, (gname, members) in enumerate(obj["groups"].items()):
        names.append(str(gname))
        if not isinstance(members, list) or not members:
            raise UserError(f"{src}: groups.{gname} must be a non-empty list of classes")
        for m in members:
            cid = m if isinstance(m, int) and not isinstance(m, bool) else ids.get(str(m))
            if cid is None or not 0 <= cid < 255:
                raise UserError(f"{src}: groups.{gname}: unknown class {m!r}; use one of {', '.join(ids)} or an id 0-254")
            if cid in seen:
                raise UserError(f"{src}: class {m!r} is in both groups {seen[cid]!r} and {gname!r}")
            seen[cid] = str(gname)
            lut[cid] = g
    return GroupMapping(tuple(names), lut)


class TransferNet(nn.Module):
    """Disparity (B,1,H,W) → group logits (B,G,H,W): a few (dilated) 3×3 convs, ~20k parameters.

    Its input is the disparity divided by its per-image mean, since self-supervised depth is only
    known up to scale.
    """

    def __init__(self, num_groups: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=4, dilation=4), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=8, dilation=8), nn.ReLU(inplace=True),
            nn.Conv2d(width, num_groups, 1),
        )

    def forward(self, disp: torch.Tensor) -> torch.Tensor:
        d = disp / (disp.mean((2, 3), keepdim=True) + 1e-7)
        return self.net(d)


def xdistill_loss(transfer: nn.Module, disps: list[torch.Tensor], groups: torch.Tensor) -> torch.Tensor:
    """Mean over scales of CE(transfer(disparity upsampled to label size), teacher groups)."""
    h, w = groups.shape[-2:]
    total = disps[0].new_zeros(())
    for d in disps:
        if d.shape[-2:] != (h, w):
            d = F.interpolate(d, size=(h, w), mode="bilinear", align_corners=False)
        logits = transfer(d)
        if bool((groups != IGNORE).any()):
            total = total + F.cross_entropy(logits, groups, ignore_index=IGNORE)
        else:  # every pixel ignored: zero loss that still touches the graph
            total = total + 0 * logits.sum()
    return total / len(disps)


class ModelTeacher:
    """A frozen segmentation model → per-pixel groups of the un-jittered target frame."""

    needs_semantics = False

    def __init__(self, predict: Callable[[torch.Tensor], torch.Tensor], mapping: GroupMapping, name: str):
        self.predict, self.mapping, self.name = predict, mapping, name

    @property
    def num_groups(self) -> int:
        return self.mapping.num_groups

    def __call__(self, batch: dict[str, Any]) -> torch.Tensor:
        img = batch["images"][:, 0]
        logits = self.predict(img)
        if logits.shape[-2:] != img.shape[-2:]:
            logits = F.interpolate(logits, size=img.shape[-2:], mode="bilinear", align_corners=False)
        return self.mapping(logits.argmax(1))


class LabelTeacher:
    """Label maps delivered by the dataset (``semantics`` key) → groups."""

    needs_semantics = True

    def __init__(self, mapping: GroupMapping):
        self.mapping = mapping
        self.name = "labels"

    @property
    def num_groups(self) -> int:
        return self.mapping.num_groups

    def __call__(self, batch: dict[str, Any]) -> torch.Tensor:
        if "semantics" not in batch:
            raise UserError("--seg-teacher labels: the dataset gave no label maps (semantics/ folder missing?)")
        return self.mapping(batch["semantics"])


def _onnx_predict(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise UserError(f"{path}: cannot load ONNX segmentation teacher ({exc})") from None
    name = sess.get_inputs()[0].name

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(sess.run(None, {name: x.detach().cpu().numpy().astype("float32")})[0])

    return predict


def _torchscript_predict(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        m = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        raise UserError(f"{path}: cannot load TorchScript segmentation teacher ({exc})") from None

    def predict(x: torch.Tensor) -> torch.Tensor:
        out = m(x)
        return out[0] if isinstance(out, (list, tuple)) else out

    return predict


def make_teacher(cfg: Any) -> ModelTeacher | LabelTeacher:
    """Teacher from ``cfg.seg_teacher`` and group mapping ``cfg.groups``."""
    mapping = load_groups(cfg.groups)
    src = str(cfg.seg_teacher)
    if src == "labels":
        return LabelTeacher(mapping)
    p = Path(src)
    if p.is_dir():
        return LabelTeacher(mapping)  # LabelFolder (below) adds this folder's PNGs to each sample
    from donna_nas.tasks.depth.zoo import is_model_name, resolve_model

    if is_model_name(src):  # a shipped segmentation teacher (`donna-nas models list`)
        p = resolve_model(src, kind="segmentation").weights
    if not p.is_file():
        raise UserError(f"--seg-teacher {src}: not found; give a train-seg-teacher file, an .onnx/.pt model, a label folder or 'labels'")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        from donna_nas.tasks.depth.seg_teacher import load_seg_teacher

        net = load_seg_teacher(p)

        @torch.no_grad()
        def predict(x: torch.Tensor) -> torch.Tensor:
            return net(x)

        return ModelTeacher(predict, mapping, str(p))
    if suffix == ".onnx":
        return ModelTeacher(_onnx_predict(p), mapping, str(p))
    if suffix in (".pt", ".ts", ".torchscript", ".jit"):
        return ModelTeacher(_torchscript_predict(p), mapping, str(p))
    raise UserError(f"--seg-teacher {src}: unknown teacher type {suffix!r}; use .safetensors (train-seg-teacher), .onnx, .pt (TorchScript), a label folder or 'labels'")


class LabelFolder(EpochDataset):
    """Wrap a KittiRawDataset: add ``semantics`` read from a folder laid out like its ``semantics/`` tree.

    ``FOLDER/<date>/<drive>/image_0X/data/<frame:010d>.png`` (uint8 class ids, 255 = ignore), e.g. label
    maps a segmentation model wrote offline. Horizontal flips follow the wrapped dataset's per-sample
    decision (its documented rule: ``default_rng([seed, epoch, index])``, second draw < 0.5).
    """

    def __init__(self, base: Any, folder: str | Path):
        self.base, self.folder = base, Path(folder)
        missing = [self._path(e) for e in base.entries if not self._path(e).is_file()]
        if missing:
            raise UserError(
                f"--seg-teacher {self.folder}: {len(missing)} of {len(base.entries)} label PNGs missing "
                f"(first: {missing[0]}); lay them out as <date>/<drive>/image_0X/data/<frame>.png"
            )

    def _path(self, e: Any) -> Path:
        return self.folder / e.folder / f"image_0{e.cam}" / "data" / f"{e.frame:010d}.png"

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import numpy as np
        from PIL import Image

        out = self.base[index]
        e = self.base.entries[index]
        with Image.open(self._path(e)) as im:
            H, W = self.base.size
            if im.size != (W, H):
                im = im.resize((W, H), Image.Resampling.NEAREST)
            lab = torch.from_numpy(np.asarray(im, dtype=np.int64).copy())
        u = np.random.default_rng([self.base.seed, self.base.epoch, int(index)]).random(6)
        if self.base.train and u[1] < 0.5:
            lab = lab.flip(-1)
        out["semantics"] = lab.contiguous()
        return out
