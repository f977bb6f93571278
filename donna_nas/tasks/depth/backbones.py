"""Resolve ``--backbone`` (resnet18 | resnet50 | arch string | NAS run dir) to an encoder module."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from donna_nas.errors import UserError

__all__ = ["make_encoder"]


def make_encoder(backbone: str, space: str | None = None, weights: str | None = None,
                 init: bool = True) -> nn.Module:
    """Encoder with the five-tap contract. ``weights``: a torchvision-format file (ResNets only).

    ``backbone`` may be a build-supernet run directory: its ``selected.json`` architecture (written
    by ``donna-nas search``), initialised from the run's blockwise-distilled blocks (``init``;
    without it, the plain architecture — what rebuilding a trained model needs)."""
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
        return _from_supernet_run(p, init)
    if space is None:
        raise UserError(
            f"--backbone {name!r}: not resnet18/resnet50; an architecture string needs --space (a YAML file or a shipped space name)"
        )
    from donna_nas.space import load_space

    sp = load_space(space)
    arch = sp.decode(name)
    return sp.build(arch)


def selected_architecture(run: Path) -> str:
    """The architecture string that ``donna-nas search RUN`` selected."""
    import json

    sel = run / "selected.json"
    if not (run / "space.yaml").is_file():
        raise UserError(f"--backbone {run}: not a build-supernet run directory (no space.yaml)")
    if not sel.is_file():
        raise UserError(f"--backbone {run}: {sel} not found; run `donna-nas search {run} ...` first "
                        "to select an architecture")
    try:
        return json.loads(sel.read_text())["arch"]
    except (ValueError, KeyError):
        raise UserError(f"{sel}: not a selection written by donna-nas search (no 'arch' field)") from None


def _from_supernet_run(run: Path, init: bool) -> nn.Module:
    arch = selected_architecture(run)
    if init:
        from donna_nas.distill.assemble import assemble

        return assemble(run, arch)
    from donna_nas.distill.assemble import load_run_space

    sp = load_run_space(run)
    return sp.build(sp.decode(arch))
