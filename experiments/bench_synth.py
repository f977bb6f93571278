"""Synthetic-world throughput: frames per second of rendering + writing (KITTI layout) on this CPU.

One frame = both colour cameras (image_02, image_03) + their semantic labels + one velodyne sweep,
written as PNG/bin files. Also times the pieces of one frame. Target: >= 10 frames/s at 192x640.

    python experiments/bench_synth.py          # 2 drives x 30 frames per run; 1 and 2 worker processes, ~1 min
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from donna_nas.data.synth import DriveRenderer, synthesize

RESULTS = Path(__file__).resolve().parent / "results"


def _time(fn, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t0) / n


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def bench(size: tuple[int, int], drives: int, frames: int, workers: int, version: int = 2) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
        synthesize(Path(tmp) / "d", drives=drives, frames=frames, size=size, seed=0, progress=False,
                   workers=workers, world_version=version)
        total = time.perf_counter() - t0
        cpu = time.process_time() - c0 + _children_cpu() - k0
        nbytes = sum(p.stat().st_size for p in (Path(tmp) / "d").rglob("*") if p.is_file())
    r = DriveRenderer(0, 1, frames, size, world_version=version)
    n = min(frames, 20)
    view = _time(lambda i: r.render(i), n)
    sweep = _time(lambda i: r.velodyne(i), n)
    pts = np.mean([len(r.velodyne(i)) for i in range(3)])
    return {"size": f"{size[0]}x{size[1]}", "world": version, "workers": workers, "drives": drives, "frames": drives * frames,
            "seconds": round(total, 2), "frames_per_s": round(drives * frames / total, 2),
            "cpu_s_per_frame": round(cpu / (drives * frames), 4),
            "ms_per_view": round(view * 1000, 1), "ms_per_velodyne": round(sweep * 1000, 1),
            "velodyne_points": int(pts), "mib_per_frame": round(nbytes / 2**20 / (drives * frames), 3)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drives", type=int, default=2)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--runs", default="192x640:1:1,192x640:1:2,96x320:1:2,64x192:1:2",
                    help="SIZE:WORKERS[:WORLD_VERSION],... (version 2 when omitted)")
    args = ap.parse_args(argv)
    runs = [(tuple(int(v) for v in r.split(":")[0].split("x")), int(r.split(":")[1]),
             int(r.split(":")[2]) if r.count(":") > 1 else 2) for r in args.runs.split(",")]
    rows = [bench(size, args.drives, args.frames, workers, version) for size, workers, version in runs]
    stamp, load = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), round(os.getloadavg()[0], 1)
    for r in rows:
        r.update({"date": stamp, "load_1min": load})
    cols = list(rows[0])
    lines = ["  ".join(f"{c:>15}" for c in cols)] + ["  ".join(f"{str(r[c]):>15}" for c in cols) for r in rows]
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    csv_path = RESULTS / "bench_synth.csv"
    history = list(csv.DictReader(open(csv_path))) if csv_path.exists() else []
    history = [h for h in history if set(h) == set(cols)] + [{c: str(r[c]) for c in cols} for r in rows]
    with open(csv_path, "w", newline="") as f:  # every run is kept: the machine's load varies a lot
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(history)
    hist_lines = ["  ".join(f"{c:>15}" for c in cols)] + ["  ".join(f"{h[c]:>15}" for c in cols) for h in history]
    cmd = "python experiments/bench_synth.py" + (" " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")
    md = [
        "# Synthetic world throughput (bench_synth)",
        "",
        f"Command: `{cmd}`",
        f"Date: {time.strftime('%Y-%m-%d', time.gmtime())}; machine: 2-core CPU ({platform.machine()}), numpy "
        f"{np.__version__}, shared with other engineers' jobs at the time (figures are lower bounds).",
        "One frame = image_02 + image_03 PNGs, their two label PNGs and one velodyne sweep (64 beams, "
        "+-50 deg), rendered and written in the KITTI raw layout (`synthesize`, seed 0). "
        "`frames_per_s` = frames / wall-clock seconds (what you get now, on a loaded machine); `cpu_s_per_frame` = "
        "CPU seconds per frame, worker processes included (the renderer is single-threaded numpy, so "
        "workers / cpu_s_per_frame is the rate on idle cores); `ms_per_view` = one camera render (cast + shade, wall), `ms_per_velodyne` = one sweep.",
        f"Latest run: {stamp}, load average {load} (1 min) on 2 cores.",
        "Target: >= 10 frames/s at 192x640.",
        "",
        "```",
        *lines,
        "```",
        "",
    ]
    from donna_nas.data.synth_checks import photometric_errors, velodyne_agreement  # imports torch: not in workers

    checks = []
    for seed in (0, 1, 2):
        r = DriveRenderer(seed, 1, 12, (192, 640))
        p, a = photometric_errors(r, 5), velodyne_agreement(r, 5)
        checks.append(f"seed {seed}: warp error {p['warp_error']:.4f} (median {p['warp_error_median']:.4f}) vs "
                      f"no-warp {p['identity_error']:.4f} on {p['pixels_used']:.0%} of pixels; velodyne vs render: "
                      f"{a['points']} points, {a['occluded']:.1%} occluded, median |rel| {a['median_abs_rel']:.1e}, "
                      f"max |rel| {a['max_abs_rel']:.1e}")
    print("\n".join(checks))
    md += ["Geometry self-consistency at 192x640, frame 5 -> 6 of drive 1 (`donna_nas.data.synth_checks`; "
           "colours in [0, 1]; tests require warp error < 0.02 and < 0.25 x no-warp, velodyne max |rel| < 1%):",
           "", *[f"- {c}" for c in checks], "",
           "All runs of this command so far (bench_synth.csv):", "", "```", *hist_lines, "```", ""]
    (RESULTS / "bench_synth.md").write_text("\n".join(md))


if __name__ == "__main__":
    main()
