"""The quickstart's final finetune on one torch thread against two, side by side.

The final finetune is the quickstart's longest stage and the only long one that has the machine
to itself (build-supernet already runs two one-thread worker processes), so it may use both cores
(``QuickstartConfig.final_threads``, ``--final-threads``; default: as many as ``--workers``). This
times that stage's exact training (the searched run's own ``config.yaml``: distillation from the
teacher, X-Distill, batch, lr) for ``--steps`` steps from its distilled blocks, each thread count
in a fresh process, alternating them ``--rounds`` times so that load changes hit both:

    python experiments/bench_final_threads.py runs/quickstart --steps 30 --rounds 2 [--corun]

``--corun`` repeats the rounds while a one-thread matmul loop (another process) keeps one core
busy: the case the one-thread default guards against. Results:
``experiments/results/bench_final_threads.{md,csv}`` (``--record NAME`` for another name).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from donna_nas.runtime.io import write_text_atomic

from _corun import busy_core  # experiments/ is on sys.path when a script here runs
from _provenance import code_commit, cpu_model

RESULTS = Path(__file__).resolve().parent / "results"


def one(searched: Path, steps: int, threads: int) -> dict:
    """Child process: the searched run's finetune for ``steps`` steps on ``threads`` torch threads,
    into a fresh folder; wall and CPU seconds of the whole ``train_depth`` call, and its last loss."""
    import dataclasses

    import torch

    from donna_nas.tasks.depth.run import load_config
    from donna_nas.tasks.depth.train import train_depth

    torch.set_num_threads(threads)
    cfg = dataclasses.replace(load_config(searched), max_steps=steps, checkpoint_every=steps)
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        state = train_depth(cfg, Path(tmp) / "run", progress=False, log=None)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"threads": threads, "steps": int(state["step"]), "wall_s": wall, "cpu_s": cpu,
            "loss": float(state["losses"][-1]) if state["losses"] else None}


def timed(searched: Path, steps: int, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    got = subprocess.run([sys.executable, __file__, "--one", str(searched), str(steps), str(threads)],
                         env=env, capture_output=True, text=True, check=False)
    if got.returncode:
        sys.exit(f"error: the {threads}-thread finetune of {searched} failed: {got.stderr.strip().splitlines()[-1:]}")
    return json.loads(got.stdout.strip().splitlines()[-1])


def rounds(searched: Path, steps: int, counts: list[int], n: int, load: str) -> list[dict]:
    rows = []
    for r in range(n):
        for k in counts:
            row = timed(searched, steps, k) | {"round": r + 1, "load": load}
            print(f"round {r + 1}, {load}: {k} thread(s) {row['wall_s']:.1f} s wall, {row['cpu_s']:.1f} s CPU",
                  flush=True)
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", help="a finished quickstart folder (OUT of `donna-nas quickstart`)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--corun", action="store_true", help="also time beside a one-thread matmul loop")
    ap.add_argument("--record", default="bench_final_threads")
    ap.add_argument("--one", nargs=3, metavar=("SEARCHED", "STEPS", "THREADS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(Path(a.one[0]), int(a.one[1]), int(a.one[2]))))
        return
    if not a.out:
        ap.error("give a finished quickstart folder")
    searched = Path(a.out) / "searched"
    if not (searched / "config.yaml").is_file():
        sys.exit(f"error: {searched / 'config.yaml'}: no final finetune here; run `donna-nas quickstart --out {a.out}` first")
    rows = rounds(searched, a.steps, a.threads, a.rounds, "alone")
    if a.corun:
        with busy_core():
            rows += rounds(searched, a.steps, a.threads, a.rounds, "one core busy (matmul loop)")

    RESULTS.mkdir(exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["load", "round", "threads", "steps", "wall_s", "cpu_s", "loss"],
                       lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(RESULTS / f"{a.record}.csv", buf.getvalue())

    command = "python experiments/bench_final_threads.py " + " ".join(sys.argv[1:])
    md = ["# The quickstart's final finetune: torch threads side by side", "",
          f"Command: `{command}`  ",
          f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; code {code_commit()}; machine: {cpu_model()} "
          f"({platform.machine()}), {os.cpu_count()} cores; OMP wait policy "
          f"{os.environ.get('OMP_WAIT_POLICY', 'default')}.  ",
          f"Scale: the searched run's own finetune config ({searched / 'config.yaml'}) for {a.steps} steps from its "
          f"distilled blocks, each thread count in a fresh process, {a.rounds} alternating rounds; wall time of "
          "the whole `train_depth` call (construction included).", "",
          "| load | threads | wall s (median) | CPU s (median) | wall speed-up vs first | last loss |",
          "|---|---:|---:|---:|---:|---|"]
    for load in dict.fromkeys(r["load"] for r in rows):
        med = {k: statistics.median(r["wall_s"] for r in rows if r["load"] == load and r["threads"] == k)
               for k in a.threads}
        for k in a.threads:
            mine = [r for r in rows if r["load"] == load and r["threads"] == k]
            losses = sorted({f"{r['loss']:.6f}" for r in mine if r["loss"] is not None})
            md.append(f"| {load} | {k} | {med[k]:.1f} | {statistics.median(r['cpu_s'] for r in mine):.1f} | "
                      f"{med[a.threads[0]] / med[k]:.2f}× | {', '.join(losses) or '–'} |")
    per_count = {k: {r["loss"] for r in rows if r["threads"] == k} for k in a.threads}
    same = all(len(v) == 1 for v in per_count.values())
    apart = len({next(iter(v)) for v in per_count.values()}) == len(a.threads) if same else None
    md += ["", f"Last loss: {'the same in every round of a thread count' if same else '**not** the same across rounds of one thread count'}"
           + ("" if apart is None else f", and {'different' if apart else 'the same'} between thread counts")
           + " (float sums run in another order on more threads)."]
    write_text_atomic(RESULTS / f"{a.record}.md", "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
