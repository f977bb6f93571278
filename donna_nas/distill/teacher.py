"""The teacher, cut into as many blocks as the search space has.

A teacher is any ``nn.Module``. Either it already returns one feature map per cut (the toolkit's
five-tap encoder contract: ResNets, searched encoders), or the user names submodules whose outputs
are the cuts (``TeacherCut(model, ["layer1", "layer2", ...])``, read with forward hooks). The cut
must match the space: same number of taps as blocks and the same cumulative strides.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from donna_nas.errors import UserError
from donna_nas.space.space import SearchSpace

__all__ = ["TeacherCut", "load_teacher"]


class TeacherCut(nn.Module):
    """Wraps a teacher so that ``forward(images) -> list of taps`` (one per block), frozen, eval mode."""

    def __init__(self, module: nn.Module, cut_points: list[str] | None = None, name: str = "teacher"):
        super().__init__()
        self.module = module.eval()
        self.name = name
        self.cut_points = list(cut_points) if cut_points else None
        for p in self.module.parameters():
            p.requires_grad_(False)
        if self.cut_points:
            named = dict(self.module.named_modules())
            unknown = [c for c in self.cut_points if c not in named]
            if unknown:
                some = ", ".join(list(n for n in named if n)[:12])
                raise UserError(f"teacher cut points {unknown} are not submodules of {name} "
                                f"(submodules include: {some}, ...)")
            self._mods = [named[c] for c in self.cut_points]

    def train(self, mode: bool = True) -> "TeacherCut":  # the teacher never trains
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if not self.cut_points:
            out = self.module(x)
            if not isinstance(out, (list, tuple)):
                raise UserError(f"{self.name} returns a single tensor; give cut_points (names of "
                                "submodules whose outputs are the block boundaries)")
            return [t.detach() for t in out]
        taps: dict[int, torch.Tensor] = {}
        handles = [m.register_forward_hook(lambda _m, _i, o, j=j: taps.__setitem__(j, o.detach()))
                   for j, m in enumerate(self._mods)]
        try:
            self.module(x)
        finally:
            for h in handles:
                h.remove()
        return [taps[j] for j in range(len(self._mods))]

    def probe(self, size: tuple[int, int]) -> tuple[list[int], list[int]]:
        """(channels, strides) of the taps for an input of ``size``."""
        h, w = size
        taps = self(torch.rand(1, 3, h, w))
        return [t.shape[1] for t in taps], [round(h / t.shape[2]) for t in taps]

    def check_space(self, space: SearchSpace, size: tuple[int, int]) -> list[int]:
        """Raise ``UserError`` unless the cut matches the space's blocks; returns tap channels."""
        channels, strides = self.probe(size)
        want = space.strides()
        if len(channels) != len(space.blocks):
            raise UserError(f"teacher {self.name} is cut into {len(channels)} blocks (tap strides "
                            f"{strides}) but space {space.name!r} has {len(space.blocks)} blocks "
                            f"(strides {want}); give one cut point per block")
        if strides != want:
            raise UserError(f"teacher {self.name} tap strides {strides} do not match the strides "
                            f"{want} of space {space.name!r} blocks {list(space.block_names)}")
        return channels


def load_teacher(spec: str, weights: str | None = None) -> tuple[TeacherCut, dict[str, Any]]:
    """``resnet18``/``resnet50`` (+ ``weights``: a torchvision-format file or a shipped depth
    model's name, whose encoder is used), a depth run directory, or a shipped depth model's name
    (``donna-nas models list``).

    Returns the cut teacher and a JSON-able description (written to ``RUN/teacher.json``).
    """
    from donna_nas.nn.encoders import RESNETS, create_encoder
    from donna_nas.tasks.depth.zoo import is_model_name, resolve_model

    name = spec.strip()
    if name.lower() in RESNETS:
        if is_model_name(weights):
            shipped = resolve_model(str(weights), kind="depth")
            if shipped.card.get("backbone") != name.lower():
                raise UserError(f"--teacher-weights {weights}: a {shipped.card.get('backbone')} model, but "
                                f"--teacher is {name.lower()}; use --teacher {weights} or a matching model")
            cut, desc = _load_depth_run(shipped.folder, f"{name.lower()}:{shipped.name}")
            desc.update(kind="resnet", name=name.lower(), weights=shipped.name, shipped=shipped.name)
            return cut, desc
        enc = create_encoder(name, weights=weights)
        info = {"kind": "resnet", "name": name.lower(),
                "weights": str(Path(weights).resolve()) if weights else None,
                "pretrained": bool(weights)}
        return TeacherCut(enc, name=name.lower()), info
    path = Path(name)
    if path.is_dir():
        if weights:
            raise UserError(f"--teacher-weights {weights}: not used with a run directory teacher "
                            f"({path} carries its own weights)")
        return _load_depth_run(path)
    if weights:
        raise UserError(f"--teacher-weights {weights}: only for --teacher resnet18/resnet50")
    shipped = resolve_model(name, kind="depth")  # an unknown name lists the shipped ones
    cut, desc = _load_depth_run(shipped.folder, shipped.name)
    desc.update(kind="shipped", run=None, shipped=shipped.name)
    return cut, desc


def _load_depth_run(run: Path, name: str | None = None) -> tuple[TeacherCut, dict[str, Any]]:
    """The encoder of the depth model in ``run`` (a run directory or a shipped model's folder),
    cut; ``name`` names it in messages (default ``RUN:BACKBONE``)."""
    mj, mw = run / "model.json", run / "model.safetensors"
    if not mj.is_file() or not mw.is_file():
        raise UserError(f"{run}: not a finished depth run (needs model.json and model.safetensors; "
                        "finish it with `finetune --resume`)")
    try:
        info = json.loads(mj.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{mj}: corrupt JSON ({exc.msg} at line {exc.lineno})") from None
    from donna_nas.nn.encoders import create_encoder
    from donna_nas.tasks.depth.run import load_model_weights

    enc = create_encoder(info.get("backbone", "resnet18"), info.get("space"))
    sd, _ = load_model_weights(run)  # fp32 (shipped models are stored fp16); unreadable: one line
    enc_sd = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    own = enc.state_dict()
    missing = sorted(set(own) - set(enc_sd))
    unexpected = sorted(set(enc_sd) - set(own))
    if missing or unexpected:
        raise UserError(f"{mw}: encoder weights do not match backbone {info.get('backbone')!r}: "
                        f"missing keys {missing[:5]} ({len(missing)}), unexpected keys "
                        f"{unexpected[:5]} ({len(unexpected)})")
    enc.load_state_dict(enc_sd)
    desc = {"kind": "depth_run", "run": str(run.resolve()), "backbone": info.get("backbone"),
            "space": info.get("space"), "pretrained": True}
    return TeacherCut(enc, name=name or f"{run.name}:{info.get('backbone')}"), desc
