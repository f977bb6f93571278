"""A searched encoder's depth decoder, stitched from the teacher's instead of drawn at random.

Blockwise distillation trains, for each block, a 1×1 out-adapter that maps the block's output
(its chosen width) to the teacher's tap. An assembled encoder followed by those adapters
therefore approximates the teacher encoder tap by tap, and the teacher's own decoder can read it.
Each adapter is affine and sits right before a 3×3 convolution of the decoder (the convolution
that reads the deepest tap, and the skip half of each merge convolution), so it folds into that
convolution exactly:

    W'[o, s] = Σ_t W[o, t] · A[t, s],    b'[o] = b[o] + Σ_t Σ_kernel W[o, t] · a[t]

(the decoder pads by reflection, which commutes with a per-pixel affine map, so the fold is exact
at the borders too). The result is an ordinary ``DepthDecoder`` for the student's widths.

Why: a predictor finetune that starts from a random decoder spends its short budget learning the
decoder, and how far it gets varies with the seed more than with the architecture. Starting from
the teacher's decoder makes the finetune a correction of the stitched network, as DONNA's
finetunes from distilled blocks are.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from donna_nas.errors import UserError
from donna_nas.space.space import Architecture

__all__ = ["fold_input_adapter", "stitched_decoder", "tap_adapters"]


def fold_input_adapter(conv: nn.Conv2d, start: int, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A copy of ``conv`` whose input channels ``start : start + T`` read ``s`` where ``conv`` read
    the adapted ``weight @ s + bias`` (``weight`` is (T, S)); the other input channels are kept."""
    t = weight.shape[0]
    w = conv.weight.detach()
    if conv.bias is None or w.shape[1] < start + t:
        raise ValueError(f"cannot fold a {t}-channel adapter at input channel {start} of {tuple(w.shape)}")
    part = w[:, start:start + t]
    folded = torch.einsum("otij,ts->osij", part, weight)
    new_w = torch.cat([w[:, :start], folded, w[:, start + t:]], 1)
    out = nn.Conv2d(new_w.shape[1], new_w.shape[0], conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=True)
    with torch.no_grad():
        out.weight.copy_(new_w)
        out.bias.copy_(conv.bias.detach() + torch.einsum("otij,t->o", part, bias))
    return out


@torch.no_grad()
def tap_adapters(run_dir: str | Path, arch: Architecture) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The BKD out-adapter of each block of ``arch``, sliced to its chosen width: (weight (T, S), bias (T,))."""
    from donna_nas.distill.assemble import load_run_space
    from donna_nas.distill.bkd import load_bkd_model

    space = load_run_space(run_dir)
    out = []
    for i, choice in enumerate(arch.block_choices):
        model = load_bkd_model(Path(run_dir), space, i, choice.op, choice.act)
        w = model.adapt_out.weight[:, :choice.out_channels, 0, 0].clone()
        out.append((w, model.adapt_out.bias.detach().clone()))
    return out


@torch.no_grad()
def stitched_decoder(run_dir: str | Path, arch: Architecture, teacher_decoder: nn.Module) -> nn.Module:
    """The teacher's decoder with the BKD adapters of ``arch`` folded in (module docstring)."""
    from donna_nas.tasks.depth.networks import DepthDecoder

    adapters = tap_adapters(run_dir, arch)
    if [w.shape[0] for w, _ in adapters] != list(teacher_decoder.enc_channels):
        raise UserError(f"{run_dir}: the blocks were distilled to taps of widths {[w.shape[0] for w, _ in adapters]}, "
                        f"but the decoder reads {list(teacher_decoder.enc_channels)}; stitch with the decoder "
                        f"of the depth model the supernet was distilled from")
    dec = DepthDecoder([w.shape[1] for w, _ in adapters], teacher_decoder.scales, teacher_decoder.act)
    own = dec.state_dict()
    for k, v in teacher_decoder.state_dict().items():  # every tensor that does not read a tap
        if own[k].shape == v.shape:
            own[k].copy_(v)
    dec.load_state_dict(own)
    w, b = adapters[4]  # the deepest tap feeds the first convolution
    dec.upconv0[4][0].conv = fold_input_adapter(teacher_decoder.upconv0[4][0].conv, 0, w, b)
    for i in range(1, 5):  # merge i reads [upsampled x (decoder width), skip tap i-1]
        w, b = adapters[i - 1]
        conv = teacher_decoder.upconv1[i][0].conv
        dec.upconv1[i][0].conv = fold_input_adapter(conv, conv.in_channels - w.shape[0], w, b)
    return dec
