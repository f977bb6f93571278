"""Provenance for experiment results: the code's git commit, for the header of every results file."""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_commit() -> str:
    """The repository's short HEAD commit, ``+dirty`` when ``donna_nas/`` has uncommitted changes
    (the results then come from code no commit holds), or ``unknown`` outside a git checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "donna_nas"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def cpu_model() -> str:
    """The CPU's model name (what ``donna_nas.latency.ort.cpu_name`` reads from ``/proc/cpuinfo``):
    kernel timings and their ratios differ between CPU families, so a timing result names the
    CPU it ran on. Imported here, not at the top, because bench_train's subprocesses run older
    checkouts of the package that may lack it."""
    from donna_nas.latency.ort import cpu_name

    return cpu_name()
