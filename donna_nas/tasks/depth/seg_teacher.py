"""A small segmentation network trained on the dataset's label maps.

It stands in for the pretrained state-of-the-art segmenter of the X-Distill paper: on the synthetic
world the labels exist, so a compact U-Net learns them in minutes on a CPU and then labels frames
as a teacher would. Saved as safetensors with its configuration in the metadata.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader

from donna_nas.data.epochs import start_epoch
from donna_nas.errors import UserError
from donna_nas.runtime.io import atomic_path

__all__ = ["SegNet", "train_seg_teacher", "load_seg_teacher"]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class SegNet(nn.Module):
    """Four-level U-Net; image in [0,1] → class logits at input resolution."""

    def __init__(self, num_classes: int = 19, width: int = 16):
        super().__init__()
        self.num_classes, self.width = num_classes, width
        c = [width, 2 * width, 4 * width, 8 * width]
        self.enc = nn.ModuleList([_block(3, c[0]), _block(c[0], c[1]), _block(c[1], c[2]), _block(c[2], c[3])])
        self.dec = nn.ModuleList([_block(c[3] + c[2], c[2]), _block(c[2] + c[1], c[1]), _block(c[1] + c[0], c[0])])
        self.head = nn.Conv2d(c[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.45) / 0.225
        skips = []
        for i, e in enumerate(self.enc):
            x = e(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for j, d in enumerate(self.dec):
            s = skips[2 - j]
            x = F.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False)
            x = d(torch.cat([x, s], 1))
        return self.head(x)


def train_seg_teacher(
    data: str | Path,
    out: str | Path,
    size: tuple[int, int] = (96, 320),
    epochs: int = 5,
    batch: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    dataset=None,
    progress: bool = True,
) -> dict:
    """Train ``SegNet`` on the training split's label maps; write ``out`` (.safetensors). Returns stats."""
    from donna_nas.data.semantics import NUM_CLASSES

    torch.manual_seed(seed)
    if dataset is None:
        from donna_nas.data.kitti import KittiRawDataset

        split = Path(data) / "splits" / "train_files.txt"
        if not split.is_file():
            raise UserError(f"{split}: training split not found; --data must be a dataset folder with splits/")
        dataset = KittiRawDataset(str(data), str(split), size=size, frame_ids=(0,), train=True, semantics=True, seed=seed)
    net = SegNet(NUM_CLASSES)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, generator=g)
    if len(loader) == 0:
        raise UserError(f"{data}: fewer training frames than one batch ({batch})")
    total = epochs * len(loader)
    t0 = time.time()
    prog = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        prog = Progress(TextColumn("[bold]seg teacher[/]"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn())
        prog.start()
        task = prog.add_task("seg", total=total, loss="-")
    correct = seen = 0
    loss_v = float("nan")
    try:
        net.train()
        for ep in range(epochs):
            start_epoch(dataset, ep)
            for b in loader:
                x = b["images_aug"][:, 0] if "images_aug" in b else b["images"][:, 0]
                y = b["semantics"].long()
                logits = net(x)
                loss = F.cross_entropy(logits, y, ignore_index=255)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_v = float(loss.item())
                if ep == epochs - 1:
                    valid = y != 255
                    correct += int((logits.argmax(1)[valid] == y[valid]).sum())
                    seen += int(valid.sum())
                if prog is not None:
                    prog.update(task, advance=1, loss=f"{loss_v:.3f}")
    finally:
        if prog is not None:
            prog.stop()
    meta = {"num_classes": NUM_CLASSES, "width": net.width, "size": list(size), "epochs": epochs,
            "final_loss": loss_v, "last_epoch_pixel_acc": correct / max(seen, 1)}
    out = Path(out)
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp),
                  metadata={"donna_nas": "seg_teacher", "config": json.dumps(meta)})
    meta["seconds"] = round(time.time() - t0, 1)
    return meta


def load_seg_teacher(path: str | Path) -> SegNet:
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
    except Exception as exc:
        raise UserError(f"{path}: not a safetensors file ({exc})") from None
    if md.get("donna_nas") != "seg_teacher":
        raise UserError(f"{path}: not a segmentation teacher written by `donna-nas train-seg-teacher`")
    cfg = json.loads(md["config"])
    net = SegNet(cfg["num_classes"], cfg["width"])
    net.load_state_dict(load_file(str(path)))
    return net.eval()
