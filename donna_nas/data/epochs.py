"""The one interface a training dataset implements to get fresh augmentations every epoch.

A dataset whose augmentation draw depends on the epoch (``default_rng([seed, epoch, index])``, so a
resumed run replays exactly what an uninterrupted one drew) subclasses ``EpochDataset``; the training
loops call ``set_epoch`` at the start of every epoch on such a dataset and on no other. Any plain
``torch.utils.data.Dataset`` still trains, with the same samples every epoch.
"""

from __future__ import annotations

import abc

import torch


class EpochDataset(torch.utils.data.Dataset, abc.ABC):
    """A dataset told which epoch is being drawn, so that its augmentations change per epoch."""

    @abc.abstractmethod
    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentations of ``epoch`` from now on (called before each epoch's first batch)."""


def start_epoch(dataset: torch.utils.data.Dataset, epoch: int) -> None:
    """What a training loop does at the start of an epoch: tell an ``EpochDataset`` which one it is."""
    if isinstance(dataset, EpochDataset):
        dataset.set_epoch(epoch)
