"""Resolve ``--backbone`` (resnet18 | resnet50 | arch string | NAS run dir) to an encoder module:
the depth task's name for ``donna_nas.nn.encoders.create_encoder``."""

from __future__ import annotations

from torch import nn

from donna_nas.nn.encoders import create_encoder, selected_architecture

__all__ = ["make_encoder", "selected_architecture"]


def make_encoder(backbone: str, space: str | None = None, weights: str | None = None,
                 init: bool = True, bridge: bool = True) -> nn.Module:
    """Encoder with the five-tap contract (``create_encoder``). ``weights``: a torchvision-format
    file (ResNets only). ``backbone`` may be a build-supernet run directory: its ``selected.json``
    architecture, initialised from the run's blockwise-distilled blocks (``init``; without it,
    the plain architecture — what rebuilding a trained model needs; ``bridge``: joined as
    ``donna_nas.distill.assemble`` says)."""
    return create_encoder(backbone, space, weights, init=init, bridge=bridge)
