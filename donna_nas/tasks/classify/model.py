"""``ClassifierNet``: any five-tap encoder + global average pool + linear head on the last tap."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClassifierNet"]


class ClassifierNet(nn.Module):
    """Logits from the deepest tap. Parameter names: ``encoder.*`` and ``head.*``, so a trained
    classifier's run directory also serves as a build-supernet teacher (its encoder part)."""

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.encoder = encoder
        self.num_classes = int(num_classes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(int(encoder.channels[-1]), self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[-1].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))
