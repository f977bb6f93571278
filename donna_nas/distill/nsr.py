"""Noise-to-signal ratio (DONNA's blockwise distillation loss and block-quality metric).

NSR(Y, Ŷ) = (1/C) Σ_c mean(‖Y_c − Ŷ_c‖²) / σ²_c, with σ²_c the variance of teacher channel c over
the training frames. Normalising per channel puts every block (any width, any depth) on one
scale: predicting the teacher's channel means scores exactly 1, a perfect student 0.

Channels whose variance is tiny (dead ReLU channels of a teacher) would blow the ratio up on
rounding noise, so σ²_c is floored at ``VAR_FLOOR`` × the mean channel variance of the tap.
"""

from __future__ import annotations

import torch

__all__ = ["nsr", "channel_variance", "effective_variance", "NSRAccumulator"]

EPS = 1e-12
VAR_FLOOR = 1e-3


def effective_variance(var: torch.Tensor) -> torch.Tensor:
    """σ²_c floored at ``VAR_FLOOR`` × mean(σ²) (plus a tiny epsilon), the NSR denominator."""
    var = var.double()
    return var.clamp(min=float(var.mean()) * VAR_FLOOR) + EPS


def channel_variance(y: torch.Tensor) -> torch.Tensor:
    """Population variance of each channel of (N, C, H, W) features (float64 for stability)."""
    y = y.double().transpose(0, 1).reshape(y.shape[1], -1)
    return y.var(dim=1, unbiased=False).float()


def nsr(pred: torch.Tensor, target: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Mean over channels of the per-channel MSE divided by the teacher variance ``var`` (C,)."""
    err = (pred - target).pow(2).mean(dim=(0, 2, 3))
    return (err / effective_variance(var).to(err)).mean()


class NSRAccumulator:
    """NSR over many batches: per-channel squared errors are summed before the division."""

    def __init__(self, var: torch.Tensor):
        self.var = effective_variance(var)
        self.sq = torch.zeros_like(self.var)
        self.count = 0

    def add(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        d = (pred - target).double()
        self.sq += d.pow(2).sum(dim=(0, 2, 3))
        self.count += d.shape[0] * d.shape[2] * d.shape[3]

    def value(self) -> float:
        return float((self.sq / max(self.count, 1) / self.var).mean())
