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
    """The CPU's model name (``/proc/cpuinfo``), else the machine type: kernel timings and their
    ratios differ between CPU families, so a timing result names the CPU it ran on."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
