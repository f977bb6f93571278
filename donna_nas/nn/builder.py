"""Architecture → encoder network with one feature tap per block."""

from __future__ import annotations

import torch
from torch import nn

from donna_nas.nn.ops import make_layer
from donna_nas.space.ops import block_ops

IMAGE_MEAN = 0.45
IMAGE_STD = 0.225


class SearchedEncoder(nn.Module):
    """Stem + blocks; ``forward`` returns the output of every block (its tap).

    Input is an image in [0, 1]; it is normalised here with the same constants as the ResNet
    teachers, so every encoder in the toolkit has the same contract.
    """

    def __init__(self, space, arch, input_size=None):
        super().__init__()
        groups = block_ops(space, arch, input_size or space.input_size)
        self.arch_string = arch.encode()
        self.stem = make_layer(groups[0][0])
        self.blocks = nn.ModuleList(nn.Sequential(*(make_layer(op) for op in ops))
                                    for ops in groups[1:])
        self.channels = [ops[-1].cout for ops in groups[1:]]
        self.block_names = list(arch.names)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem((x - IMAGE_MEAN) / IMAGE_STD)
        taps = []
        for block in self.blocks:
            x = block(x)
            taps.append(x)
        return taps


def build_encoder(space, arch, input_size=None) -> SearchedEncoder:
    return SearchedEncoder(space, arch, input_size)
