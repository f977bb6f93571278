"""Build an architecture of the space from its distilled blocks (the DONNA finetune start point).

Each block's layers come from the supernet of its (op, act), sliced to the choice; the first
layer takes the first ``cin`` input channels, where ``cin`` is the previous block's chosen width.
The stem comes from the first block's supernet. Batch-norm statistics are recalibrated on the
cached training frames when ``recalibrate`` is true (shared statistics do not fit any single
sub-network).

**Bridges.** Blockwise distillation never feeds a block its predecessor's output. Block i learns
to read ``A_in_i(Y_{i-1})``, the teacher's tap through its own 1×1 in-adapter, and block i−1 learns
an output ``r`` with ``A_out_{i-1}(r) ≈ Y_{i-1}`` through its own out-adapter. The two adapters are
trained apart, so ``r`` itself lies in a basis block i has never seen: concatenating the blocks
raw hands every block a scrambled input. Both adapters are affine, so their composition

    B_i(r) = A_in_i[:c] (A_out_{i-1}[:, :c] r + a_out) + a_in[:c]      (a c×c 1×1 map, c = cin)

takes block i−1's output to what block i was distilled on, and it folds into block i's first
convolution: the weights become ``W·B`` and the constant ``W·b`` moves into the batch norm that
follows (its running mean), which training-mode batch norm ignores anyway. The fold is exact for
a 1×1 first convolution (``ir`` and ``gconv`` expansions) and exact away from the zero-padded
border for a k×k one (``fused_ir``); the deployed network has no extra layer. A block whose first
convolution is depthwise (``ir`` at expansion 1, which no block after the first has in the shipped
spaces) cannot absorb a dense map and is joined raw. Measured on
``donna_depth_lite`` (``experiments/predictor_rank.py --zero-step``, docs/supernet.md), it is what
makes the assembled network approximate the teacher before any finetune step.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from donna_nas.distill.bkd import BKDModel, _recalibrate, load_bkd_model
from donna_nas.errors import UserError
from donna_nas.nn.builder import SearchedEncoder
from donna_nas.space.space import Architecture, SearchSpace

__all__ = ["assemble", "bridge_map", "fold_bridge", "load_run_space", "recalibrate_on_cache"]


def load_run_space(run_dir: str | Path) -> SearchSpace:
    path = Path(run_dir) / "space.yaml"
    if not path.is_file():
        raise UserError(f"{path}: not found; {run_dir} is not a build-supernet run directory")
    return SearchSpace.from_yaml(path)


@torch.no_grad()
def bridge_map(prev: BKDModel, cur: BKDModel, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The affine map (M (c, c), m (c,)) from ``prev``'s raw output of ``width`` channels to the
    first ``width`` channels ``cur``'s layers read during distillation (module docstring)."""
    w_out = prev.adapt_out.weight[:, :width, 0, 0].double()        # (T, c)
    b_out = prev.adapt_out.bias.double()                             # (T,)
    if cur.adapt_in is None:
        raise ValueError("the first block reads the image and has no in-adapter")
    w_in = cur.adapt_in.weight[:width, :, 0, 0].double()             # (c, T)
    b_in = cur.adapt_in.bias[:width].double()
    return w_in @ w_out, w_in @ b_out + b_in


@torch.no_grad()
def fold_bridge(conv_bn: nn.Sequential, M: torch.Tensor, m: torch.Tensor) -> None:
    """Make ``conv_bn`` (a bias-free dense conv, then batch norm) read ``x`` where it read
    ``M x + m``: W ← W·M, and the batch norm's running mean absorbs the constant W·m."""
    conv, bn = conv_bn[0], conv_bn[1]
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or conv.bias is not None \
            or not isinstance(bn, nn.BatchNorm2d):
        raise ValueError(f"cannot fold a bridge into {conv_bn}: needs a dense bias-free conv then batch norm")
    w = conv.weight.double()
    const = torch.einsum("oikl,i->o", w, m.to(w))
    conv.weight.copy_(torch.einsum("oikl,ij->ojkl", w, M.to(w)).to(conv.weight))
    bn.running_mean.sub_(const.to(bn.running_mean))


def assemble(run_dir: str | Path, arch: Architecture | str, recalibrate: bool = True,
             input_size: tuple[int, int] | None = None, bridge: bool = True) -> SearchedEncoder:
    """The encoder of ``arch`` with the distilled weights of ``run_dir`` loaded. ``bridge``: fold
    each block boundary's BKD adapters into the next block (module docstring); False joins the
    blocks raw, as releases before the bridges did (kept for the comparison in docs/supernet.md)."""
    run_dir = Path(run_dir)
    space = load_run_space(run_dir)
    if isinstance(arch, str):
        arch = space.decode(arch)
    space.check(arch)
    enc = space.build(arch) if input_size is None else SearchedEncoder(space, arch, input_size)
    cin = space.stem.channels
    prev: BKDModel | None = None
    with torch.no_grad():
        for i, choice in enumerate(arch.block_choices):
            model = load_bkd_model(run_dir, space, i, choice.op, choice.act)
            if i == 0:
                enc.stem.load_state_dict(model.block.stem.state_dict())
            layers = model.block.export(choice, cin)
            enc.blocks[i].load_state_dict(layers.state_dict(), strict=True)
            first = enc.blocks[i][0].body[0]
            if bridge and prev is not None and first[0].groups == 1:
                fold_bridge(first, *bridge_map(prev, model, cin))
            cin, prev = choice.out_channels, model
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
