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

    name, isa = cpu_name(), cpu_isa()
    return f"{name} ({isa})" if isa else name


def cpu_isa() -> str:
    """The CPU's family/model and widest vector units, from ``/proc/cpuinfo``: virtual machines
    often name only the vendor line ("AMD EPYC"), yet a Zen 3 with AVX2 and a Zen 4 with AVX-512
    differ about 2x in ONNX Runtime timings and round floats differently in oneDNN's kernels.
    Empty where ``/proc/cpuinfo`` is unreadable."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if not line.strip():
                break  # the first processor's block is enough
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return ""
    flags = set(fields.get("flags", "").split())
    vector = ("AVX-512, AMX" if "amx_tile" in flags else "AVX-512" + (" BF16" if "avx512_bf16" in flags else "")
              if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2")
    if flags & {"avx512_vnni", "avx_vnni"}:
        vector += ", VNNI"  # ONNX Runtime's INT8 kernels differ with it (bench_int8_saturation.py)
    where = f"family {fields['cpu family']} model {fields['model']}, " if "cpu family" in fields and "model" in fields else ""
    return where + vector


def results_header(title: str, machine_extra: str = "") -> list[str]:
    """The first lines of a results markdown file: the title, the command as it was run, and the
    date, code commit and machine (``machine_extra`` is appended to the machine's description)."""
    import os
    import platform
    import sys
    from datetime import datetime, timezone

    command = " ".join(["python", f"experiments/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    return [f"# {title}", "", f"Command: `{command}`  ",
            f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; code {code_commit()}; machine: {cpu_model()} "
            f"({platform.machine()}), {os.cpu_count()} cores{machine_extra}.  "]


def write_csv(path: Path, rows: list[dict]) -> None:
    """``rows`` (dicts with the same keys, in column order) as a CSV file, written atomically."""
    import csv
    import io

    from donna_nas.runtime.io import write_text_atomic

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())
