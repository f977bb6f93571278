"""Learnability of the synthetic world: how sharply the photometric loss pins depth at the truth.

For the old (version 1) and new (version 2) world and the flat-textured control, at 64x192, 96x320
and 192x640, renders target frames with both neighbours and measures (``donna_nas.data.learnability``)
over static non-sky pixels inside the Garg crop: the fraction where the true depth beats depth x 0.8
and x 1.25 and passes the auto-mask, and the median ratio of the best wrong-scale error to the
true-depth error. Targets at the training size (64x192): fraction >= 0.85, ratio >= 2.0.
A second table breaks the version-2 fraction down by how far pixels move between frames and by
whether they lie near a depth or object edge, which says what would raise it.

A third table is the ceiling: the pixels are partitioned once (flow under 1 px, near a depth jump,
near an object boundary with continuous depth, interior; ``Learnability.by_kind``), and the ceiling
counts every pixel of the last two kinds as taught, the first two (set mostly by the street's
geometry and the camera's motion) staying as measured. It says how much is left to win away from
occlusions and the focus of expansion. Beside version 2 it measures two *what-if* textures that no world format holds,
made by scaling the version-2 renderer in this process only: every texture band's contrast x2, and
the pixel aperture's blur (the MTF exponent) x0.1. They show how far texture alone moves the
figures, against the ceiling.

    python experiments/bench_learnability.py [--drives 2] [--targets 6] [--load "alone on the machine"]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from _provenance import code_commit, cpu_model  # experiments/ is on sys.path when a script here runs

RESULTS = Path(__file__).resolve().parent / "results"


#: What-if textures (module doc): (name, contrast gain of every v2 texture band, MTF exponent scale).
WHAT_IF = (("v2, texture contrast x2 (what-if)", 2.0, 1.0), ("v2, contrast x2 and blur x0.1 (what-if)", 2.0, 0.1))


@contextmanager
def what_if_texture(gain: float, blur: float):
    """The version-2 renderer with every texture band's amplitude times ``gain`` and the pixel
    aperture's MTF exponent times ``blur``, restored on exit (this process only, nothing written)."""
    from donna_nas.data import synth_render as R

    band, k_mtf = R._band, R.K_MTF
    R._band = lambda *args, **kw: gain * band(*args, **kw)
    R.K_MTF = k_mtf * blur
    try:
        yield
    finally:
        R._band, R.K_MTF = band, k_mtf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drives", type=int, default=2)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--targets", type=int, default=6, help="target frames per drive")
    ap.add_argument("--sizes", nargs="+", default=["64x192", "96x320", "192x640"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--load", default="shared with other jobs", help="what else ran on the machine, for the header")
    a = ap.parse_args()

    import pandas as pd
    import torch

    from donna_nas.data.learnability import KINDS, measure
    from donna_nas.runtime.io import write_text_atomic

    torch.set_num_threads(1)
    rows, where, ceilings = [], [], []
    for size in a.sizes:
        h, w = (int(v) for v in size.split("x"))
        for name, kw in (("old (v1)", {"world_version": 1}), ("new (v2)", {"world_version": 2}),
                         ("flat control (v2 geometry)", {"world_version": 2, "texture": "flat"})):
            t0 = time.time()
            r = measure(seed=a.seed, drives=a.drives, frames=a.frames, size=(h, w), targets_per_drive=a.targets, **kw)
            road = r.by_class.get("road", {})
            rows.append({"size": size, "world": name, "fraction": round(r.fraction, 3),
                         "median_ratio": round(r.median_ratio, 2), "road_fraction": round(road.get("fraction", 0), 3),
                         "road_ratio": round(road.get("median_ratio", 0), 2), "pixels": r.pixels, "frames": r.frames,
                         "seconds": round(time.time() - t0, 1)})
            print(rows[-1], flush=True)
            if kw == {"world_version": 2}:
                for part, groups in (("flow", r.by_flow), ("region", r.by_region)):
                    for g, v in groups.items():
                        where.append({"size": size, "by": part, "pixels": g, "share": round(v["share"], 3),
                                      "fraction": round(v["fraction"], 3), "median_ratio": round(v["median_ratio"], 2)})
                ceilings.append(_ceiling_row(size, name, r))
                for wname, gain, blur in WHAT_IF:
                    with what_if_texture(gain, blur):
                        what = measure(seed=a.seed, drives=a.drives, frames=a.frames, size=(h, w),
                                       targets_per_drive=a.targets)
                    ceilings.append(_ceiling_row(size, wname, what))
                    print(ceilings[-1], flush=True)
    df = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    df.to_csv(RESULTS / "bench_learnability.csv", index=False)
    pd.DataFrame(where).to_csv(RESULTS / "bench_learnability_where.csv", index=False)
    pd.DataFrame(ceilings).to_csv(RESULTS / "bench_learnability_ceiling.csv", index=False)
    cmd = "python experiments/bench_learnability.py " + shlex.join(sys.argv[1:])
    lines = ["# Learnability of the synthetic world", "",
             f"Command: `{cmd.strip()}`. Date {datetime.date.today()}; code {code_commit()}. Machine: "
             f"{cpu_model()}, {platform.machine()}, {os.cpu_count()} cores ({a.load}), 1 torch thread.",
             f"Scale: seed {a.seed}, {a.drives} drives x {a.frames} frames, {a.targets} target frames per drive; "
             "static non-sky pixels inside the Garg crop. Targets at the training size 64x192: fraction >= 0.85, "
             "median ratio >= 2.0.", "",
             "| size | world | fraction (true depth wins and passes auto-mask) | median wrong/true error | road fraction | road ratio | pixels |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['world']} | {r['fraction']:.3f} | {r['median_ratio']:.2f} | "
                     f"{r['road_fraction']:.3f} | {r['road_ratio']:.2f} | {r['pixels']} |")
    lines += ["", "## Where version 2 fails to teach", "",
              "Flow: how far a pixel moves to frame t+1 under the true depth and pose. Near edge: within "
              "2 px of a depth jump (> 35%) or an object boundary. Share: of the valid pixels at that size.", "",
              "| size | pixels | share | fraction | median wrong/true error |", "|---|---|---:|---:|---:|"]
    for r in where:
        lines.append(f"| {r['size']} | {r['pixels']} | {r['share']:.3f} | {r['fraction']:.3f} | {r['median_ratio']:.2f} |")
    kinds = [k for k in KINDS if ceilings and f"{k} share" in ceilings[0]]
    lines += ["", "## The ceiling", "",
              "Each pixel counts once, as the first kind that applies: flow under 1 px, within 2 px of a depth "
              "jump (an occlusion), within 2 px of an object boundary across which depth is continuous, interior. "
              "Ceiling: the fraction if every pixel of the last two kinds were taught, the first two staying as "
              "measured with that texture (texture moves them too, so it is no bound on every texture). The what-if "
              "rows scale the version-2 renderer in this process only (module doc); no world format holds them.",
              "", "| size | texture | fraction | median ratio | " + " | ".join(
                  f"{k} share / fraction" for k in kinds) + " | ceiling | ceiling against the target 0.85 (64x192) |",
              "|---|---|---:|---:|" + "---:|" * len(kinds) + "---:|---|"]
    for c in ceilings:
        parts = " | ".join(f"{c[k + ' share']:.3f} / {c[k + ' fraction']:.3f}" for k in kinds)
        verdict = ("ceiling below the target" if c["ceiling"] < 0.85 else "ceiling above the target") \
            if c["size"] == "64x192" else "–"
        lines.append(f"| {c['size']} | {c['texture']} | {c['fraction']:.3f} | {c['median_ratio']:.2f} | {parts} | "
                     f"**{c['ceiling']:.3f}** | {verdict} |")
    write_text_atomic(RESULTS / "bench_learnability.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def _ceiling_row(size: str, texture: str, r) -> dict:
    """One row of the ceiling table: the fraction, each kind's share and fraction, the ceiling."""
    row = {"size": size, "texture": texture, "fraction": round(r.fraction, 3), "median_ratio": round(r.median_ratio, 2)}
    for k, v in r.by_kind.items():
        row[f"{k} share"] = round(v["share"], 3)
        row[f"{k} fraction"] = round(v["fraction"], 3)
    row["ceiling"] = round(r.ceiling, 3)
    return row


if __name__ == "__main__":
    main()
