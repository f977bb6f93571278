"""One encoder factory (in the manner of timm's ``create_model``): a backbone spec → an encoder.

A spec is what ``--backbone`` (and ``--teacher``) accept:

- ``resnet18`` / ``resnet50``: the ResNet teachers, optionally with torchvision-format ``weights``;
- an architecture string (``b1:ir_d1_k3_e2_c16_relu|...``) of ``space`` (a YAML file, a shipped
  space name, or a build-supernet run directory, whose ``space.yaml`` is used);
- a build-supernet run directory: the architecture ``donna-nas search RUN`` selected
  (``selected.json``), or with ``space`` = that run, any architecture string of it.

Every encoder has the five-tap contract (``forward`` returns one feature map per block). An
architecture from a build-supernet run starts from its blockwise-distilled blocks when ``init``
(DONNA's finetune start point); without it, the plain architecture is built (what rebuilding a
trained model needs before loading its weights).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from donna_nas.errors import UserError

__all__ = ["EncoderSpec", "RESNETS", "create_encoder", "is_supernet_run", "resolve_encoder",
           "selected_architecture"]

RESNETS = ("resnet18", "resnet50")


@dataclass(frozen=True)
class EncoderSpec:
    """A resolved backbone spec: a ResNet name or an architecture string with its space."""

    name: str                      # ResNet name or architecture string
    space: str | None = None       # space spec of an architecture (YAML path or shipped name)
    run: Path | None = None        # the build-supernet run an architecture comes from

    @property
    def is_resnet(self) -> bool:
        return self.name.lower() in RESNETS


def is_supernet_run(path: str | Path | None) -> bool:
    """A build-supernet run directory (its space and distilled blocks)."""
    return path is not None and (Path(path) / "space.yaml").is_file() and (Path(path) / "blocks").is_dir()


def selected_architecture(run: Path) -> str:
    """The architecture string that ``donna-nas search RUN`` selected."""
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


def resolve_encoder(spec: str, space: str | None = None) -> EncoderSpec:
    """Resolve a backbone spec (see the module docstring) without building anything."""
    name = spec.strip()
    if name.lower() in RESNETS:
        return EncoderSpec(name.lower())
    if Path(name).is_dir():
        run = Path(name)
        return EncoderSpec(selected_architecture(run), str(run / "space.yaml"), run)
    if is_supernet_run(space):
        return EncoderSpec(name, str(Path(space) / "space.yaml"), Path(space))  # type: ignore[arg-type]
    return EncoderSpec(name, space, None)


def create_encoder(spec: str | EncoderSpec, space: str | None = None, weights: str | None = None, *,
                   init: bool = True, input_size: tuple[int, int] | None = None,
                   bridge: bool = True) -> nn.Module:
    """The encoder of ``spec``. ``weights``: a torchvision-format file (ResNets only); ``init``:
    start an architecture of a build-supernet run from its distilled blocks (built for
    ``input_size``, default the space's)."""
    es = spec if isinstance(spec, EncoderSpec) else resolve_encoder(spec, space)
    if es.is_resnet:
        from donna_nas.nn.resnet import load_torchvision_state_dict, resnet18, resnet50

        enc = resnet18() if es.name == "resnet18" else resnet50()
        if weights:
            load_torchvision_state_dict(enc, weights)
        return enc
    if weights:
        raise UserError(f"--weights {weights}: torchvision weights apply only to --backbone resnet18/resnet50")
    if es.run is not None and init:
        from donna_nas.distill.assemble import assemble

        return assemble(es.run, es.name, input_size=input_size, bridge=bridge)
    if es.space is None:
        raise UserError(
            f"--backbone {es.name!r}: not resnet18/resnet50; an architecture string needs --space "
            "(a YAML file or a shipped space name)")
    from donna_nas.space import load_space

    sp = load_space(es.space)
    return sp.build(sp.decode(es.name))
