"""Classification data in ImageFolder layout (one sub-folder per class) and a shipped real dataset.

Layout read by ``ImageFolder(root)``::

    ROOT/<class name>/<image>.png|jpg|jpeg|bmp|gif|tif|tiff|webp|ppm|pgm

A dataset for ``--task classify`` is a folder with ``train/`` and ``val/`` in that layout (and an
optional ``test/``); every split must name the same classes. Images are read with Pillow, made RGB
and resized to the requested size, so grayscale and odd-sized images are fine.

``write_digits_imagefolder`` writes scikit-learn's handwritten digits (1,797 real 8×8 scans that
ship inside scikit-learn: no download) upsampled to ``size`` as PNGs in that layout: the data of
the tests, the quickstart and the classification experiment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from donna_nas.errors import UserError

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "load_split", "split_dir", "write_digits_imagefolder"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class ImageFolder:
    """Images of ``root/<class>/`` with their class index (classes sorted by name).

    ``classes``: force this class list (e.g. the training split's), so that indices agree across
    splits; a missing or extra class folder is then an error.
    """

    root: Path
    size: tuple[int, int] | None = None
    classes: list[str] | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise UserError(f"{self.root}: image folder not found (expected one sub-folder per class)")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not found:
            raise UserError(f"{self.root}: no class folders; put each class's images in ROOT/<class name>/")
        if self.classes is None:
            self.classes = found
        elif found != list(self.classes):
            missing = sorted(set(self.classes) - set(found))
            extra = sorted(set(found) - set(self.classes))
            raise UserError(f"{self.root}: class folders differ from the training split's "
                            f"(missing {missing[:5]}, extra {extra[:5]}); every split needs the same classes")
        self.samples: list[tuple[Path, int]] = []
        for i, c in enumerate(self.classes):
            files = sorted(p for p in (self.root / c).iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise UserError(f"{self.root / c}: class folder holds no images "
                                f"({', '.join(IMAGE_EXTENSIONS[:4])}, ...); add images or remove the folder")
            self.samples += [(f, i) for f in files]

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_classes(self) -> int:
        return len(self.classes or [])

    def load_image(self, path: Path) -> torch.Tensor:
        """(3, H, W) float in [0, 1]; an unreadable file is a ``UserError`` naming it."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if self.size is not None and im.size != (self.size[1], self.size[0]):
                    im = im.resize((self.size[1], self.size[0]), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8).copy()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise UserError(f"{path}: cannot read the image ({type(exc).__name__}); "
                            "replace or delete the file") from None
        return torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        return self.load_image(path), label

    def tensors(self, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """All images (N, 3, H, W) and labels (N,); ``limit`` picks evenly spaced samples."""
        if self.size is None:
            raise UserError(f"{self.root}: give a size to stack images of possibly different sizes")
        idx = np.arange(len(self))
        if limit is not None and limit < len(idx):
            idx = np.linspace(0, len(self) - 1, limit).round().astype(int)
        x = torch.stack([self.load_image(self.samples[i][0]) for i in idx])
        y = torch.tensor([self.samples[i][1] for i in idx], dtype=torch.long)
        return x, y


def split_dir(data: str | Path, split: str) -> Path:
    """``DATA/<split>``, or a ``UserError`` that says the expected layout."""
    d = Path(data) / split
    if not d.is_dir():
        raise UserError(f"{d}: split folder not found; a classification dataset needs "
                        f"{Path(data)}/train and {Path(data)}/val in ImageFolder layout "
                        "(see `donna-nas data digits`)")
    return d


def load_split(data: str | Path, split: str, size: tuple[int, int], limit: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images, labels, classes) of ``DATA/<split>``; class order comes from ``DATA/train``."""
    classes = None
    if split != "train":
        classes = ImageFolder(split_dir(data, "train")).classes
    ds = ImageFolder(split_dir(data, split), size=size, classes=classes)
    x, y = ds.tensors(limit)
    return x, y, list(ds.classes or [])


def write_digits_imagefolder(out: str | Path, size: int = 32, seed: int = 0,
                             fractions: tuple[float, float] = (0.7, 0.15)) -> dict[str, int]:
    """Write scikit-learn's handwritten digits, upsampled to ``size``×``size``, as PNGs.

    A stratified split (per class: ``fractions`` train / val, the rest test) drawn with ``seed``.
    Returns the image count per split. Same arguments → byte-identical files.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    if size < 8:
        raise UserError(f"--size {size}: digits are 8×8 scans; use a size of at least 8")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: already exists and is not empty; choose another --out")
    digits = load_digits()
    images = (digits.images / 16.0 * 255.0).round().clip(0, 255).astype(np.uint8)
    labels = digits.target
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "val": 0, "test": 0}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_tr = int(round(len(idx) * fractions[0]))
        n_va = int(round(len(idx) * fractions[1]))
        parts = {"train": idx[:n_tr], "val": idx[n_tr:n_tr + n_va], "test": idx[n_tr + n_va:]}
        for split, ids in parts.items():
            d = out / split / str(c)
            d.mkdir(parents=True, exist_ok=True)
            for i in ids:
                im = Image.fromarray(images[i], mode="L").resize((size, size), Image.BICUBIC)
                im.save(d / f"{int(i):04d}.png")
            counts[split] += len(ids)
    return counts
