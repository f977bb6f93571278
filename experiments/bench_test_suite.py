"""The default test suite's time, an older revision against this checkout, side by side.

Each revision runs its own README test command (the ``python -m pytest ...`` line of its README's
set-up) on its own code: the older one from a temporary git worktree, put first on ``PYTHONPATH``
so that its tests and the ``python -m donna_nas`` processes they start import its package. The
revisions alternate ``--rounds`` times, so that a change of load hits both; each row is the median.

A second comparison, ``--common``, runs only the tests both revisions have (the same node ids,
each revision with its own command's options), so that tests added since the older revision do
not count against the newer one.

    python experiments/bench_test_suite.py --compare 0182fcb --rounds 2 --common
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import os
import platform
import re
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _provenance import code_commit  # noqa: E402

from donna_nas.latency.ort import cpu_name  # noqa: E402
from donna_nas.runtime.io import write_text_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
COMMAND = re.compile(r"python -m pytest[^\n`]*")


def readme_command(tree: Path) -> list[str]:
    """The pytest arguments of the README's test command in ``tree``."""
    m = COMMAND.search((tree / "README.md").read_text())
    if m is None:
        raise SystemExit(f"{tree / 'README.md'}: no `python -m pytest ...` command found")
    return shlex.split(m.group(0))[3:]


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def node_ids(tree: Path, args: list[str]) -> list[str]:
    """The test ids the command selects in ``tree`` (collected, not run)."""
    sel = [a for a in args if a not in ("-n", "--dist") and not re.fullmatch(r"\d+|load\w*", a)]
    p = subprocess.run([sys.executable, "-m", "pytest", *sel, "--collect-only", "-q", "-p", "no:cacheprovider"],
                       cwd=tree, env=_env(tree), capture_output=True, text=True)
    return [ln.strip() for ln in p.stdout.splitlines() if "::" in ln]


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("OMP_NUM_THREADS", None)  # each revision's own thread policy
    return env


def run_suite(tree: Path, args: list[str], ids: list[str] | None) -> dict:
    """One run of ``python -m pytest ARGS`` in ``tree``: wall and CPU seconds, the pytest summary."""
    if ids is not None:  # the ids are the selection (a few hundred fit on a command line)
        args = [a for a in args if a not in ("-m", "not slow")] + ids
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider"], cwd=tree,
                       env=_env(tree), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tail = [ln for ln in p.stdout.splitlines() if re.search(r"\d+ (passed|failed)", ln)]
    summary = tail[-1].strip("= ") if tail else p.stdout[-300:]
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", summary)) else 0
    failed = int(m.group(1)) if (m := re.search(r"(\d+) failed", summary)) else 0
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "passed": passed, "failed": failed, "rc": p.returncode, "summary": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", required=True, help="the older git revision")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--common", action="store_true", help="also time only the tests both revisions have")
    ap.add_argument("--record", default="bench_test_suite")
    a = ap.parse_args()
    # a kill (SIGTERM) still removes the temporary worktree: the ``finally`` below runs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    old_rev, new_rev = git("rev-parse", "--short", a.compare), code_commit()
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "old"
        git("worktree", "add", "--detach", str(old_tree), old_rev)
        try:
            trees = {f"{old_rev} (before)": old_tree, f"{new_rev} (this checkout)": ROOT}
            cmds = {k: readme_command(t) for k, t in trees.items()}
            plans: list[tuple[str, str, list[str] | None]] = [(k, "whole suite", None) for k in trees]
            common: list[str] = []
            if a.common:
                ids = {k: node_ids(t, cmds[k]) for k, t in trees.items()}
                common = sorted(set.intersection(*(set(v) for v in ids.values())))
                plans += [(k, f"common tests ({len(common)})", common) for k in trees]
            rows: dict[tuple[str, str], list[dict]] = {}
            for r in range(a.rounds):
                for k, what, sel in plans:
                    res = run_suite(trees[k], cmds[k], sel)
                    rows.setdefault((k, what), []).append(res)
                    print(f"round {r + 1}: {k}, {what}: {res['wall_s']:.0f} s wall, {res['cpu_s']:.0f} CPU-s, "
                          f"{res['summary']}", flush=True)
        finally:
            git("worktree", "remove", "--force", str(old_tree))
    table = []
    for (k, what), runs in rows.items():
        shown = cmds[k] if what == "whole suite" else [x for x in cmds[k] if x not in ("-m", "not slow")] + ["IDS"]
        table.append({"revision": k, "selection": what, "command": shlex.join(["python", "-m", "pytest", *shown]),
                      "tests_passed": runs[-1]["passed"], "failed": max(r["failed"] for r in runs),
                      "wall_s": round(statistics.median(r["wall_s"] for r in runs), 1),
                      "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 1),
                      "walls": " / ".join(f"{r['wall_s']:.0f}" for r in runs)})
    cmd = "python experiments/bench_test_suite.py " + " ".join(sys.argv[1:])
    lines = [
        "# Default test suite: before and after, side by side",
        "",
        f"Command: `{cmd}`. Date {datetime.date.today()}; machine: {cpu_name()}, {platform.machine()}, "
        f"{os.cpu_count()} cores, 1-min load average {load_at_start:.2f} at the start; code {new_rev}.",
        f"Each revision runs its own README test command on its own code; the two alternate {a.rounds} times; "
        "medians. CPU-s: user + system time of the pytest process and everything it started. IDS: the node ids "
        "of the tests both revisions have, instead of `-m 'not slow'`.",
        "",
        "| revision | selection | command | tests passed | failed | wall s (median) | CPU-s | wall s per round |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for t in table:
        lines.append(f"| {t['revision']} | {t['selection']} | `{t['command']}` | {t['tests_passed']} | {t['failed']} "
                     f"| {t['wall_s']} | {t['cpu_s']} | {t['walls']} |")
    old_label, new_label = list(trees)
    for sel in ("whole suite", f"common tests ({len(common)})" if a.common else None):
        old, new = (next((t for t in table if t["revision"] == k and t["selection"] == sel), None)
                    for k in (old_label, new_label))
        if sel and old and new:
            lines += ["", f"{sel[0].upper() + sel[1:]}: this checkout takes **{new['wall_s'] / old['wall_s']:.2f}x** the "
                      f"wall time of {old_rev} ({new['wall_s']} s against {old['wall_s']} s; CPU-s "
                      f"{new['cpu_s'] / old['cpu_s']:.2f}x)."]
    md = "\n".join(lines) + "\n"
    print(md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS / f"{a.record}.md", md)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(table[0]))
    w.writeheader()
    w.writerows(table)
    write_text_atomic(RESULTS / f"{a.record}.csv", buf.getvalue())


if __name__ == "__main__":
    main()
