"""Build an architecture of the space from its distilled blocks (the DONNA finetune start point).

Each block's layers come from the supernet of its (op, act), sliced to the choice; the first
layer takes the first ``cin`` input channels, where ``cin`` is the previous block's chosen width.
The stem comes from the first block's supernet. BKD adapters are dropped. Batch-norm statistics
are recalibrated on the cached training frames when ``recalibrate`` is true (shared statistics
do not fit any single sub-network).
"""

from __future__ import annotations

from pathlib import Path

import torch

from donna_nas.distill.bkd import _recalibrate, load_bkd_model
from donna_nas.errors import UserError
from donna_nas.nn.builder import SearchedEncoder
from donna_nas.space.space import Architecture, SearchSpace

__all__ = ["assemble", "load_run_space", "recalibrate_on_cache"]


def load_run_space(run_dir: str | Path) -> SearchSpace:
    path = Path(run_dir) / "space.yaml"
    if not path.is_file():
        raise UserError(f"{path}: not found; {run_dir} is not a build-supernet run directory")
    return SearchSpace.from_yaml(path)


def assemble(run_dir: str | Path, arch: Architecture | str, recalibrate: bool = True,
             input_size: tuple[int, int] | None = None) -> SearchedEncoder:
    """The encoder of ``arch`` with the distilled weights of ``run_dir`` loaded."""
    run_dir = Path(run_dir)
    space = load_run_space(run_dir)
    if isinstance(arch, str):
        arch = space.decode(arch)
    space.check(arch)
    enc = space.build(arch) if input_size is None else SearchedEncoder(space, arch, input_size)
    cin = space.stem.channels
    with torch.no_grad():
        for i, choice in enumerate(arch.block_choices):
            model = load_bkd_model(run_dir, space, i, choice.op, choice.act)
            if i == 0:
                enc.stem.load_state_dict(model.block.stem.state_dict())
            layers = model.block.export(choice, cin)
            enc.blocks[i].load_state_dict(layers.state_dict(), strict=True)
            cin = choice.out_channels
    if recalibrate:
        recalibrate_on_cache(enc, run_dir)
    return enc.eval()


def recalibrate_on_cache(encoder: torch.nn.Module, run_dir: str | Path, frames: int = 64) -> bool:
    """Re-estimate ``encoder``'s batch-norm statistics (a cumulative average, not an EMA) on the
    first ``frames`` cached training frames of ``run_dir``, un-augmented; leaves it in eval mode.

    Used after assembly (shared supernet statistics fit no single sub-network) and after a short
    finetune, whose running statistics are an EMA over its last few colour-jittered batches and so
    differ from seed to seed. False (nothing changed) when the run has no cached frames."""
    cache = Path(run_dir) / "cache" / "train" / "images.npy"
    if not cache.is_file():
        return False
    from donna_nas.distill.cache import FeatureCache

    _recalibrate(encoder, FeatureCache(Path(run_dir) / "cache", "train").images()[:frames], 16)
    return True
