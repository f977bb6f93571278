"""Convolutions on tiny feature maps, trained through one matrix product per pass instead of oneDNN.

At Monodepth2's 64×192 training size a ResNet's last stage works on 2×6 maps. Its 512→512 3×3
convolutions hold 2.4M weights for 12 output pixels per image, and oneDNN's backward runs them at
less than half the FLOP rate it reaches on the 256-channel convolutions at 4×12, which have the
same FLOPs (``python experiments/profile_train_step.py --before``, AMD EPYC Zen 3: the nine
512→512 calls of a step took a fifth of its CPU time). Written as im2col plus a single GEMM over
the whole batch (weights 512 × 4608 against 4608 × 48 columns at batch 4), forward and both
backward products are plain BLAS calls: 1.40× faster for one such convolution, and a training step
1.10× faster (``python experiments/bench_train.py --kernels``).

Only the trainer's path changes: the layer keeps ``nn.Conv2d``'s parameters and state-dict keys,
and inference, tracing, ONNX export and bfloat16 autocast see ATen's own convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SMALL_MAP_PIXELS", "SmallMapConv2d", "conv2d_gemm"]

# output pixels per image at or below which a training-time convolution goes through conv2d_gemm:
# the 2×6 maps of a ResNet's last stage at 64×192 (taking the 4×12 maps too gained nothing in a
# throwaway A/B)
SMALL_MAP_PIXELS = 12


def _output_size(h: int, w: int, kh: int, kw: int, stride: int, padding: int) -> tuple[int, int]:
    """Output height and width of a zero-padded, undilated convolution."""
    return (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1


class _GemmConv2d(torch.autograd.Function):
    """Zero-padded, dense (groups 1, dilation 1) convolution without bias as im2col + one GEMM."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:  # noqa: D102
        n, c, h, w = x.shape
        o, _, kh, kw = weight.shape
        oh, ow = _output_size(h, w, kh, kw, stride, padding)
        # (n, c·kh·kw, oh·ow) → (c·kh·kw, n·oh·ow): one product for the whole batch, not n thin ones
        cols = F.unfold(x, (kh, kw), padding=padding, stride=stride).transpose(0, 1).reshape(c * kh * kw, n * oh * ow)
        out = weight.reshape(o, -1) @ cols
        ctx.save_for_backward(cols, weight)
        ctx.geometry = (n, h, w, oh, ow, stride, padding)
        return out.reshape(o, n, oh, ow).transpose(0, 1).contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        cols, weight = ctx.saved_tensors
        n, h, w, oh, ow, stride, padding = ctx.geometry
        o, _, kh, kw = weight.shape
        g = grad.transpose(0, 1).reshape(o, n * oh * ow)
        grad_w = (g @ cols.t()).reshape(weight.shape) if ctx.needs_input_grad[1] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            gcols = (weight.reshape(o, -1).t() @ g).reshape(-1, n, oh * ow).transpose(0, 1)
            grad_x = F.fold(gcols, (h, w), (kh, kw), padding=padding, stride=stride)
        return grad_x, grad_w, None, None


def conv2d_gemm(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """``F.conv2d(x, weight, stride=stride, padding=padding)`` (no bias, groups 1) computed as im2col
    and one matrix product, with a backward of two matrix products and a col2im; equal to ATen's
    up to float rounding (``tests/test_small_map_conv.py``)."""
    return _GemmConv2d.apply(x, weight, stride, padding)


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` that trains through ``conv2d_gemm`` when its output map has at most
    ``SMALL_MAP_PIXELS`` pixels per image (see the module docstring). Falls back to ATen whenever
    the GEMM form does not apply: no autograd recording, tracing or ONNX export, CPU autocast, bias,
    groups, dilation, non-square stride or padding, or a padding mode other than zeros."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self._gemm_applies(x):
            return conv2d_gemm(x, self.weight, self.stride[0], self.padding[0])
        return super().forward(x)

    def _gemm_applies(self, x: torch.Tensor) -> bool:
        if not (torch.is_grad_enabled() and self.weight.requires_grad and x.dim() == 4 and x.device.type == "cpu"):
            return False
        if (self.bias is not None or self.groups != 1 or self.padding_mode != "zeros" or isinstance(self.padding, str)
                or self.dilation != (1, 1) or self.stride[0] != self.stride[1] or self.padding[0] != self.padding[1]):
            return False
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.is_autocast_enabled("cpu"):
            return False
        oh, ow = _output_size(x.shape[2], x.shape[3], *self.kernel_size, self.stride[0], self.padding[0])
        return oh * ow <= SMALL_MAP_PIXELS
