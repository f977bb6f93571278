"""How much semantic information does a depth map already carry? The X-Distill probe.

X-Distill can only help where a transfer network cannot already read the segmentation teacher's
groups off the predicted depth. This probe freezes a depth model, trains a fresh ``TransferNet``
(the X-Distill transfer network) for ``--steps`` steps to map its disparity to the teacher's
groups on the training frames, and reports group pixel accuracy and mIoU on the held-out test
drives. Rows: each given depth model, and the per-pixel prior (mean training depth per pixel,
which sees no image) as the layout-only reference. When the probe on Monodepth2's depth is close
to its ceiling and to X-Distill's own, the cross-task loss has little to add on this world.

    OMP_NUM_THREADS=1 python experiments/xdistill_probe.py --models RUN_OR_NAME ... \\
        [--data ~/dn/teachers/world_v2_6x60_64x192_s0]

Writes experiments/results/xdistill_probe.{csv,md}.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", required=True, help="depth run directories or shipped model names")
    ap.add_argument("--data", default=str(Path.home() / "dn" / "teachers" / "world_v2_6x60_64x192_s0"))
    ap.add_argument("--seg-teacher", default="synth-segnet")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=int, default=2, help="probe at 1/scale resolution (disparity and groups)")
    a = ap.parse_args()

    import pandas as pd
    import torch
    import torch.nn.functional as F

    from donna_nas.data.kitti import KittiRawDataset
    from donna_nas.runtime.io import write_text_atomic
    from donna_nas.tasks.depth.evaluate import load_or_make_prior
    from donna_nas.tasks.depth.run import load_model
    from donna_nas.tasks.depth.xdistill import IGNORE, TransferNet, make_teacher

    torch.set_num_threads(1)
    data = Path(a.data)

    class Cfg:
        seg_teacher, groups = a.seg_teacher, None

    teacher = make_teacher(Cfg)
    G = teacher.num_groups

    def frames(split: str):
        ds = KittiRawDataset(str(data), str(data / "splits" / f"{split}_files.txt"), size=(64, 192), frame_ids=(0,),
                             train=False, semantics=False, stereo=False, seed=0)
        imgs = torch.stack([ds[i]["images"][0] for i in range(len(ds))])
        with torch.no_grad():
            groups = torch.cat([teacher({"images": imgs[i:i + 16, None]}) for i in range(0, len(imgs), 16)])
        return imgs, groups

    train_x, train_g = frames("train")
    test_x, test_g = frames("test")
    small = (64 // a.scale, 192 // a.scale)

    def shrink_groups(gr: torch.Tensor) -> torch.Tensor:  # nearest: a label stays a label
        return F.interpolate(gr[:, None].float(), size=small, mode="nearest")[:, 0].long()

    train_g, test_g = shrink_groups(train_g), shrink_groups(test_g)
    prior = load_or_make_prior(str(data))
    prior_disp = torch.from_numpy(1.0 / np.maximum(prior, 1e-3)).float()[None, None]

    def disparities(name: str, imgs: torch.Tensor) -> torch.Tensor:
        if name == "prior":
            return F.interpolate(prior_disp, size=imgs.shape[-2:], mode="bilinear",
                                 align_corners=False).expand(len(imgs), 1, -1, -1).contiguous()
        net, _ = load_model(name)
        with torch.no_grad():
            return torch.cat([net(imgs[i:i + 16]) for i in range(0, len(imgs), 16)])

    def probe(d_train, d_test) -> dict:
        d_train, d_test = (F.interpolate(d, size=small, mode="bilinear", align_corners=False) for d in (d_train, d_test))
        torch.manual_seed(a.seed)
        tn = TransferNet(G)
        opt = torch.optim.Adam(tn.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(a.seed)
        for _ in range(a.steps):
            idx = torch.randint(0, len(d_train), (8,), generator=g)
            loss = F.cross_entropy(tn(d_train[idx]), train_g[idx], ignore_index=IGNORE)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pred = tn(d_test).argmax(1)
        ok = test_g != IGNORE
        conf = np.bincount((test_g[ok] * G + pred[ok]).numpy(), minlength=G * G).reshape(G, G)
        iou = np.diag(conf) / np.maximum(conf.sum(0) + conf.sum(1) - np.diag(conf), 1)
        present = conf.sum(1) > 0
        return {"pixel_acc": float(np.diag(conf).sum() / conf.sum()), "miou": float(iou[present].mean()),
                "final_ce": float(loss.item())}

    rows = []
    for name in ["prior", *a.models]:
        r = probe(disparities(name, train_x), disparities(name, test_x))
        label = "per-pixel prior (no image)" if name == "prior" else (Path(name).name if Path(name).is_dir() else name)
        rows.append({"depth input": label, **r})
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    df.to_csv(RESULTS / "xdistill_probe.csv", index=False, float_format="%.4f")
    cmd = " ".join(["python experiments/xdistill_probe.py"] + [x if "/" not in x else Path(x).name for x in sys.argv[1:]])
    lines = ["# X-Distill probe: groups read off a frozen depth map", "",
             f"Command: `OMP_NUM_THREADS=1 {cmd}` (run directories given by name). Date {datetime.date.today()}. "
             f"Machine: {platform.machine()} {os.cpu_count()} cores, 1 torch thread, shared with two trainings.", "",
             f"A fresh X-Distill TransferNet ({G} groups of the `{a.seg_teacher}` teacher) trained {a.steps} steps "
             f"(batch 8, Adam 1e-3) on the {len(train_x)} training frames' disparity, scored on the {len(test_x)} "
             "test frames of the held-out drives against the teacher's groups, "
             f"all at {small[0]}x{small[1]} (1/{a.scale} of the training size).", "",
             "| depth input | group pixel accuracy | group mIoU | final train CE |", "|---|---:|---:|---:|"]
    lines += [f"| {r['depth input']} | {r['pixel_acc']:.3f} | {r['miou']:.3f} | {r['final_ce']:.3f} |" for r in rows]
    write_text_atomic(RESULTS / "xdistill_probe.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
