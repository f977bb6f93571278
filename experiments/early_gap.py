"""Early self-supervised training: which implementation choice decides the first 250 steps?

An independent Monodepth2 implementation reached abs_rel 0.65 after 260 steps on the version-1 world
(6 drives x 60 frames, 64x192, ResNet18 from scratch, batch 4, lr 1e-4), where this project's
trainer reached 2.0. This experiment trains the same setting with one implementation choice
changed at a time, two seeds each, and evaluates every run on the test drives:

- ``baseline``: this project's trainer as it is;
- ``align-false`` (``--warp monodepth2``): the warp samples with ``grid_sample(align_corners=False)``
  while the pixel coordinates are normalised for ``align_corners=True``. That is what Monodepth2's code does on
  PyTorch >= 1.3: the warped source is magnified by W/(W-1) about the image centre (a shift of
  -0.5 px at the left edge to +0.5 px at the right), whatever the depth;
- ``no-jitter``: the networks see the un-jittered frames (horizontal flips stay);
- ``bf16`` (``--mixed-precision bf16``): the depth and pose nets under bfloat16 autocast.

Every run resumes from its checkpoint, and finished runs are skipped, so a killed invocation
continues where it stopped.

    python experiments/early_gap.py --world old --steps 250 --seeds 0 1
    python experiments/early_gap.py --world new --steps 250 --seeds 0 1 --variants baseline align-false bf16
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _provenance import code_commit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("baseline", "align-false", "no-jitter", "bf16")
METRICS = ("abs_rel", "sq_rel", "rmse", "a1")


@contextlib.contextmanager
def variant_patch(variant: str):
    """Apply one implementation change for the duration of a run (and undo it afterwards)."""
    from donna_nas.data import kitti

    if variant == "baseline":
        yield
        return
    if variant in ("align-false", "bf16"):  # the trainer's own options (run_one's DepthConfig)
        yield
        return
    if variant == "no-jitter":
        original_getitem = kitti.KittiRawDataset.__getitem__

        def getitem_no_jitter(self, i):
            item = original_getitem(self, i)
            item["images_aug"] = item["images"]
            return item

        kitti.KittiRawDataset.__getitem__ = getitem_no_jitter
        try:
            yield
        finally:
            kitti.KittiRawDataset.__getitem__ = original_getitem
        return
    raise SystemExit(f"--variants: unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")


def run_one(work: Path, data: Path, variant: str, seed: int, steps: int, size: tuple[int, int]) -> dict:
    from donna_nas.tasks.depth.evaluate import evaluate_run
    from donna_nas.tasks.depth.run import DepthConfig, checkpoint_path
    from donna_nas.tasks.depth.train import train_depth

    run = work / "runs" / f"{variant}_s{seed}"
    h, w = size
    cfg = DepthConfig(data=str(data), backbone="resnet18", height=h, width=w, batch=4, lr=1e-4, epochs=100000,
                      lr_step=100000, seed=seed, checkpoint_every=50, max_steps=steps,
                      warp="monodepth2" if variant == "align-false" else "exact",
                      mixed_precision="bf16" if variant == "bf16" else "off")
    t0 = time.time()
    with variant_patch(variant):
        resume = checkpoint_path(run).exists()
        train_depth(None if resume else cfg, run, resume=resume, overrides={"max_steps": steps} if resume else None,
                    progress=False, log=lambda s: print(f"{variant} s{seed}: {s}", flush=True))
    seconds = time.time() - t0
    evaluate_run(run, report=False)
    res = json.loads((run / "metrics.json").read_text())
    return {"variant": variant, "seed": seed, "steps": steps, **{k: res["metrics"][k] for k in METRICS},
            "train_s": round(seconds), "baselines": {b: {k: m[k] for k in METRICS} for b, m in res["baselines"].items()}}


def write_report(rows: list[dict], a, h: int, w: int) -> None:
    import pandas as pd

    from donna_nas.runtime.io import write_text_atomic

    RESULTS.mkdir(exist_ok=True)
    name = f"early_gap_{a.world}"
    pd.DataFrame([{k: v for k, v in r.items() if k != "baselines"} for r in rows]).to_csv(RESULTS / f"{name}.csv", index=False)
    base = rows[0]["baselines"]
    cmd = "python experiments/early_gap.py " + " ".join(sys.argv[1:])
    lines = [f"# Early training ({a.steps} steps): one implementation choice at a time", "",
             f"Command: `{cmd.strip()}`. Date {datetime.date.today()}; code {code_commit()}; machine "
             f"{platform.machine()} {os.cpu_count()} cores, 1 torch thread per process.",
             f"Scale: world version {'1' if a.world == 'old' else '2'} ({a.drives} drives x {a.frames} frames, seed 0) at "
             f"{h}x{w}, ResNet18 from scratch, batch 4, lr 1e-4, {a.steps} steps, seeds {' '.join(map(str, a.seeds))}; "
             "Eigen metrics on the held-out test drives.", "",
             "| variant | seed | abs_rel | Sq Rel | RMSE | δ<1.25 | train s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['seed']} | {r['abs_rel']:.3f} | {r['sq_rel']:.3f} | {r['rmse']:.3f} | "
                     f"{r['a1']:.3f} | {r['train_s']} |")
    for b in ("constant", "prior"):
        m = base[b]
        lines.append(f"| {b} (no image) | – | {m['abs_rel']:.3f} | {m['sq_rel']:.3f} | {m['rmse']:.3f} | {m['a1']:.3f} | – |")
    lines += ["", "Mean over seeds:", "", "| variant | abs_rel | Sq Rel | δ<1.25 |", "|---|---:|---:|---:|"]
    for v in dict.fromkeys(r["variant"] for r in rows):
        g = [r for r in rows if r["variant"] == v]
        lines.append(f"| {v} | {statistics.mean(r['abs_rel'] for r in g):.3f} | {statistics.mean(r['sq_rel'] for r in g):.3f} | "
                     f"{statistics.mean(r['a1'] for r in g):.3f} |")
    write_text_atomic(RESULTS / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", choices=("old", "new"), default="old")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS[:3]), choices=VARIANTS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--size", default="64x192")
    ap.add_argument("--drives", type=int, default=6)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--work", default=str(Path.home() / "dn" / "early_gap"))
    a = ap.parse_args()
    import torch

    from donna_nas.data.synth import synthesize

    torch.set_num_threads(1)
    h, w = (int(v) for v in a.size.split("x"))
    version = 1 if a.world == "old" else 2
    work = Path(a.work) / a.world
    data = synthesize(work / f"world_v{version}", drives=a.drives, frames=a.frames, size=(h, w), seed=0,
                      progress=False, world_version=version)
    done_path = work / "rows.json"
    rows = json.loads(done_path.read_text()) if done_path.exists() else []
    for seed in a.seeds:
        for v in a.variants:
            if any(r["variant"] == v and r["seed"] == seed and r["steps"] == a.steps for r in rows):
                continue
            rows.append(run_one(work, data, v, seed, a.steps, (h, w)))
            done_path.write_text(json.dumps(rows, indent=1))
            r = rows[-1]
            print(f"{v} seed {seed}: abs_rel {r['abs_rel']:.3f} sq_rel {r['sq_rel']:.3f} a1 {r['a1']:.3f} ({r['train_s']} s)",
                  flush=True)
    rows = [r for r in rows if r["variant"] in a.variants and r["seed"] in a.seeds and r["steps"] == a.steps]
    rows.sort(key=lambda r: (a.variants.index(r["variant"]), r["seed"]))
    write_report(rows, a, h, w)


if __name__ == "__main__":
    main()
