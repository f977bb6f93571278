"""Reflection padding by one pixel, with a backward that is three times faster on CPU.

Monodepth2's decoder pads every 3×3 convolution by reflection, and SSIM reflects both images;
that is about 20 pads per training step, most at full resolution. ATen's CPU backward of a
reflection pad walks the padded gradient element by element (1.8 ms for 4×16×66×194 on one
thread of an AMD EPYC, 1.4 ms on a Xeon); its adjoint written with slices (copy the interior,
then add the reflected border rows, columns and corners onto the rows and columns they mirror)
costs 0.25 ms (0.4 ms on the Xeon): ``experiments/bench_train.py --kernels``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["reflect_pad1", "reflect_pad1_adjoint"]


def reflect_pad1_adjoint(grad: torch.Tensor) -> torch.Tensor:
    """The gradient of ``F.pad(x, (1, 1, 1, 1), mode="reflect")`` w.r.t. x, given the padded gradient.

    Padded row 0 mirrors input row 1, padded row H+1 mirrors row H-2 (the same for columns), and each
    padded corner mirrors the input pixel diagonally inside; needs H, W >= 2 (what reflection needs).
    """
    g = grad[..., 1:-1, 1:-1].clone()
    g[..., 1, :] += grad[..., 0, 1:-1]
    g[..., -2, :] += grad[..., -1, 1:-1]
    g[..., :, 1] += grad[..., 1:-1, 0]
    g[..., :, -2] += grad[..., 1:-1, -1]
    g[..., 1, 1] += grad[..., 0, 0]
    g[..., 1, -2] += grad[..., 0, -1]
    g[..., -2, 1] += grad[..., -1, 0]
    g[..., -2, -2] += grad[..., -1, -1]
    return g


class _ReflectPad1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.pad(x, (1, 1, 1, 1), mode="reflect")

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return reflect_pad1_adjoint(grad)


def reflect_pad1(x: torch.Tensor) -> torch.Tensor:
    """``F.pad(x, (1, 1, 1, 1), mode="reflect")`` for 4-d x; the slice adjoint as its backward while
    autograd records, ATen's own op otherwise (inference, export and tracing see a plain pad)."""
    if (x.requires_grad and torch.is_grad_enabled() and x.dim() == 4 and not torch.jit.is_tracing()
            and not torch.onnx.is_in_onnx_export()):
        return _ReflectPad1.apply(x)
    return F.pad(x, (1, 1, 1, 1), mode="reflect")
