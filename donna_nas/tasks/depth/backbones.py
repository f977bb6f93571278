"""Resolve ``--backbone`` (resnet18 | resnet50 | arch string | NAS run dir) to an encoder module."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from donna_nas.errors import UserError

__all__ = ["make_encoder"]


def make_encoder(backbone: str, space: str | None = None, weights: str | None = None) -> nn.Module:
    """Encoder with the five-tap contract. ``weights``: a torchvision-format file (ResNets only)."""
    from donna_nas.nn.resnet import load_torchvision_state_dict, resnet18, resnet50

    name = backbone.strip()
    if name.lower() in ("resnet18", "resnet50"):
        enc = resnet18() if name.lower() == "resnet18" else resnet50()
        if weights:
            load_torchvision_state_dict(enc, weights)
        return enc
    if weights:
        raise UserError(f"--weights {weights}: torchvision weights apply only to --backbone resnet18/resnet50")
    p = Path(name)
    if p.is_dir():
        raise UserError(
            f"--backbone {name}: initialising from a NAS run directory is not supported yet; "
            "pass resnet18, resnet50 or an architecture string with --space"
        )
    if space is None:
        raise UserError(
            f"--backbone {name!r}: not resnet18/resnet50; an architecture string needs --space (a YAML file or a shipped space name)"
        )
    from donna_nas.space import load_space

    sp = load_space(space)
    arch = sp.decode(name)
    return sp.build(arch)
