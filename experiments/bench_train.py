"""Depth training throughput on this CPU: images/s and peak RSS for ResNet18/50 at 192x640 and 96x320.

One full Monodepth2 training step (depth net on frame 0, pose net on 2 pairs, 4-scale loss, Adam)
on random frames with the dataset's dict contract; each configuration runs in its own process so
peak RSS (ru_maxrss) is per configuration.

    python experiments/bench_train.py [--batch 2] [--steps 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from donna_nas.runtime.io import write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = [("resnet18", 96, 320), ("resnet18", 192, 640), ("resnet50", 96, 320), ("resnet50", 192, 640)]


def one(backbone: str, h: int, w: int, batch: int, steps: int, threads: int) -> dict:
    import resource

    import torch

    from donna_nas.tasks.depth.run import DepthConfig
    from donna_nas.tasks.depth.train import DepthTrainer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = DepthConfig(backbone=backbone, height=h, width=w, batch=batch)
    m = DepthTrainer(cfg).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-4)
    K = torch.tensor([[0.58 * w, 0, 0.5 * w, 0], [0, 1.92 * h, 0.5 * h, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    imgs = torch.rand(batch, 3, 3, h, w)
    b = {"images": imgs, "images_aug": imgs, "K": K.expand(batch, 4, 4), "inv_K": torch.linalg.inv(K).expand(batch, 4, 4)}

    def step():
        loss, _ = m(b)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB → MiB on Linux
    return {"backbone": backbone, "size": f"{h}x{w}", "batch": batch, "steps": steps, "threads": threads,
            "images_per_s": round(steps * batch / dt, 3), "s_per_step": round(dt / steps, 3), "peak_rss_mib": round(rss)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", nargs=3, metavar=("BACKBONE", "H", "W"))
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]), int(a.one[2]), a.batch, a.steps, a.threads)))
        return
    rows = []
    for bb, h, w in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--one", bb, str(h), str(w), "--batch", str(a.batch),
                              "--steps", str(a.steps), "--threads", str(a.threads)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    import pandas as pd

    df = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS / "bench_train.csv", df.to_csv(index=False))
    table = df.to_markdown(index=False) if _has_tabulate() else df.to_string(index=False)
    cmd = "python experiments/bench_train.py " + " ".join(sys.argv[1:])
    md = f"""# Depth training throughput (bench_train)

Command: `{cmd.strip()}`
Date: {datetime.date.today()}; machine: 2-core CPU ({platform.processor() or platform.machine()}), torch threads {a.threads},
shared with other engineers' jobs at the time (numbers are lower bounds of what an idle machine gives).
One step = depth net on frame 0 + pose net on 2 frame pairs + 4-scale Monodepth2 loss at full resolution + Adam;
random frames, batch {a.batch}, {a.steps} timed steps after 1 warm-up; peak RSS per configuration (own process).

{table}
"""
    write_text_atomic(RESULTS / "bench_train.md", md)
    print(table)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401

        return True
    except ImportError:
        return False


if __name__ == "__main__":
    main()
