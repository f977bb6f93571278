"""How repeatable are the speed-up ratios a quickstart selects on and reports? Re-time its networks.

The quickstart keeps an architecture whose whole depth network, timed round-robin beside the
teacher (``DepthDeployedLatency.paired_ms``: ten round pairs, the median round ratio), beats the
teacher by ``--speedup`` plus a guard band; its table's INT8 FPS ratio is a second round-robin
timing of the two exports. Both are single measurements. This experiment repeats them on the
finished quickstart folders given:

- every candidate the run's deployed check timed (``supernet/tables/deployed_latency_int8.json``),
  re-paired ``--pairings`` times with the teacher, each time in a fresh ``DepthDeployedLatency``
  (new export, calibration and ONNX Runtime sessions), against the ratio the run recorded;
- the run's teacher and searched exports timed side by side ``--exports`` times
  (``time_exports_side_by_side``, the table's measurement), against the FPS ratio the table shows.

``--corun``: also time the exports side by side while a one-thread matmul loop keeps the other
core busy, to see whether the ratio depends on what the machine's other core is doing.

Writes ``experiments/results/bench_deployed_noise.{md,csv}`` (``--record NAME``: ``NAME.{md,csv}``):

    OMP_NUM_THREADS=1 python experiments/bench_deployed_noise.py runs/quickstart runs/quickstart2 --pairings 4 --exports 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from donna_nas.runtime.io import write_text_atomic

from _corun import busy_core  # experiments/ is on sys.path when a script here runs
from _provenance import code_commit, cpu_model

RESULTS = Path(__file__).resolve().parent / "results"


def spread(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs),
            "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0}


def export_ratios(run: Path, size: tuple, repeats: int, n: int) -> list[float]:
    """The run's teacher and searched INT8 exports timed side by side ``n`` times (the table's
    measurement, ``time_exports_side_by_side``): searched FPS / teacher FPS of each timing."""
    from donna_nas.export.pipeline import time_exports_side_by_side

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            got = time_exports_side_by_side({k: run / k for k in ("teacher", "searched")}, size, repeats,
                                            Path(tmp) / f"fps{i}.json")
            out.append(got["searched/int8"]["fps"] / got["teacher/int8"]["fps"])
    return out


def ratios_beside_load(run: Path, size: tuple, repeats: int, n: int) -> list[float]:
    """``export_ratios`` while a one-thread float matmul loop (a separate process) keeps the other
    core busy."""
    with busy_core():
        return export_ratios(run, size, repeats, n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="finished quickstart folders (OUT of `donna-nas quickstart`)")
    ap.add_argument("--pairings", type=int, default=4, help="fresh re-pairings of each deployed-check candidate")
    ap.add_argument("--exports", type=int, default=3, help="side-by-side re-timings of each run's two exports")
    ap.add_argument("--load", default="alone on the machine", help="what else ran meanwhile (recorded)")
    ap.add_argument("--corun", action="store_true",
                    help="also time the exports while a one-thread matmul loop runs on the other core")
    ap.add_argument("--record", default="bench_deployed_noise", help="results name: experiments/results/NAME.{md,csv}")
    a = ap.parse_args()

    import torch

    from donna_nas.quickstart import QuickstartConfig
    from donna_nas.space import load_space
    from donna_nas.tasks.depth.deployed import DepthDeployedLatency, pairings_by_arch

    torch.set_num_threads(1)
    cfg = QuickstartConfig.small(False)
    rows = []
    for run in map(Path, a.runs):
        sup = run / "supernet"
        cache = sup / "tables" / "deployed_latency_int8.json"
        if not cache.is_file():
            raise SystemExit(f"{cache}: not found; give a finished quickstart folder (its deployed check writes it)")
        rec = json.loads(cache.read_text())
        key = rec["key"]
        size = tuple(key["input_size"])
        space = load_space(sup / "space.yaml")
        teacher = json.loads((sup / "teacher.json").read_text())["backbone"]
        selected = json.loads((sup / "selected.json").read_text())["arch"]
        # every pairing the check made of each candidate (its confirmation trials included); the
        # run's recorded ratio is their median
        recorded = {arch: [tms / cand for cand, tms in pairs] for arch, pairs in pairings_by_arch(rec["paired_ms"]).items()}
        ratios: dict[str, list[float]] = {arch: [] for arch in recorded}
        for _ in range(a.pairings):
            dep = DepthDeployedLatency(space, teacher, size, key["precision"], cache=None, act=key["act"],
                                       teacher_act=key["teacher_act"])
            for arch in ratios:
                cand, tms = dep.paired_ms(arch)
                ratios[arch].append(tms / cand)
        for arch, rs in ratios.items():
            rows.append({"run": str(run), "what": "deployed check pairing", "arch": arch, "selected": arch == selected,
                         "recorded": statistics.median(recorded[arch]), "recorded_n": len(recorded[arch]),
                         "n": len(rs), **spread(rs)})
        table = json.loads((run / "fps_side_by_side.json").read_text())
        table_ratio = table["searched/int8"]["fps"] / table["teacher/int8"]["fps"]
        ex = export_ratios(run, size, cfg.fps_repeats, a.exports)
        rows.append({"run": str(run), "what": "exports side by side (the table's INT8 FPS ratio)", "arch": selected,
                     "selected": True, "recorded": table_ratio, "recorded_n": 1, "n": len(ex), **spread(ex)})
        print(rows[-1], flush=True)
        if a.corun:
            rows.append({"run": str(run), "what": "exports side by side, other core busy (matmul loop)",
                         "arch": selected, "selected": True, "recorded": table_ratio, "recorded_n": 1,
                         "n": a.exports, **spread(ratios_beside_load(run, size, cfg.fps_repeats, a.exports))})
            print(rows[-1], flush=True)

    import pandas as pd

    df = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / f"{a.record}.csv", df.to_csv(index=False, float_format="%.4f"))
    cmd = " ".join(["python experiments/bench_deployed_noise.py"] + sys.argv[1:])
    lines = ["# Speed-up ratios re-timed: how repeatable the deployed check and the table's INT8 FPS are", "",
             f"Command: `OMP_NUM_THREADS=1 {cmd}`. Date {datetime.date.today()}; code {code_commit()}; machine: "
             f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores, 1 thread; {a.load}.", "",
             "Ratio = teacher latency / network latency (INT8, ONNX Runtime, batch 1). `recorded`: the run's own "
             "measurement (the median of its pairings when the check paired a candidate more than once); the rest: fresh re-timings (new exports, calibration and sessions for the pairings; the "
             "run's exports for the table ratio).", "",
             "| run | measurement | architecture | selected | recorded | re-timed median | min | max | sd | n |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {Path(r['run']).name} | {r['what']} | `{r['arch']}` | {'yes' if r['selected'] else ''} | "
                     f"{r['recorded']:.3f} | {r['median']:.3f} | {r['min']:.3f} | {r['max']:.3f} | {r['sd']:.3f} | "
                     f"{r['n']} |")
    pair = df[df.what == "deployed check pairing"]
    lines += ["", f"Deployed-check pairings: median sd of a re-paired ratio {pair['sd'].median():.3f}; "
              f"largest |recorded − re-timed median| {(pair.recorded - pair['median']).abs().max():.3f}."]
    write_text_atomic(RESULTS / f"{a.record}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
