"""Torch thread count: one thread per process unless asked otherwise.

PyTorch's default (one OpenMP thread per core) collapses when the cores are shared: OpenMP
threads spin-wait for each other, and with other jobs on the same cores one step can take 10×
longer than with a single thread (``quickstart --tiny``: 349 s with the default, 43 s with one
thread, on the same loaded 2-core machine). So donna-nas runs every process with one torch
thread by default, which is also what parallel jobs (``--workers``) want; ``--threads N`` uses N,
``--threads 0`` PyTorch's own default (all cores: fastest on an otherwise idle machine).
``OMP_NUM_THREADS``, when set, is the default instead of 1.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager


__all__ = ["default_threads", "set_threads", "set_threads_on_import", "THREADS_HELP", "torch_threads",
           "cores_busy_elsewhere", "threads_if_free"]

THREADS_HELP = ("Torch threads of this process (default: $OMP_NUM_THREADS, else 1, which stays fast "
                "when other jobs share the cores; 0: one per core, fastest on an idle machine).")


def default_threads() -> int:
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return 1


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (``None``: ``default_threads()``); returns the count in use."""
    import torch

    from donna_nas.errors import UserError

    n = default_threads() if threads is None else threads
    if n < 0:
        raise UserError(f"--threads {n}: must be 0 (one per core) or a positive number")
    if n == 0:
        n = os.cpu_count() or 1
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1 if n == 1 else min(n, 4))
    except RuntimeError:  # only settable before the first parallel work; keep what is set
        pass
    return torch.get_num_threads()


@contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """Run the block with ``n`` torch intra-op threads, then restore the count in use before.

    For one stage that has the cores to itself (the quickstart's final finetune) inside a process
    that otherwise keeps one thread; inter-op threads are left as they are (settable only once)."""
    import torch

    if n < 1:
        raise ValueError(f"torch_threads({n}): need at least one thread")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def set_threads_on_import() -> None:
    """The default thread count (``default_threads()``) for a process that may never need torch.

    Importing torch costs about 1.5 s, more than ``--help``, ``space show`` or a refused argument
    take in all. So when torch is not imported yet, this exports ``OMP_NUM_THREADS`` (which torch
    reads when it is first imported) instead of importing it; when it is, it calls ``set_threads``.
    Commands with ``--threads`` call ``set_threads`` themselves."""
    import sys

    if "torch" in sys.modules:
        set_threads(None)
        return
    n = default_threads()
    os.environ["OMP_NUM_THREADS"] = str(n if n > 0 else os.cpu_count() or 1)


def cpu_times(stat: str = "/proc/stat") -> tuple[float, float] | None:
    """(busy, total) CPU ticks of the whole machine, from the ``cpu`` line of ``/proc/stat``
    (idle and iowait count as not busy; guest time is already inside user time); None where
    the file is missing or unreadable (not Linux)."""
    try:
        with open(stat) as f:
            first = f.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu" or len(first) < 5:
        return None
    ticks = [float(x) for x in first[1:9]]
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)


def cores_busy_elsewhere(sample_s: float = 1.0, stat: str = "/proc/stat") -> float | None:
    """How many cores other processes keep busy, sampled over ``sample_s`` seconds (this
    process's own CPU time taken out); None where the machine's CPU time cannot be read."""
    a, c0, t0 = cpu_times(stat), time.process_time(), time.perf_counter()
    time.sleep(sample_s)
    b, c1, t1 = cpu_times(stat), time.process_time(), time.perf_counter()
    if a is None or b is None or b[1] <= a[1]:
        return None
    machine = (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1)
    return max(0.0, machine - (c1 - c0) / (t1 - t0))


def threads_if_free(wanted: int, busy_elsewhere: float | None, cores: int | None = None) -> int:
    """``wanted`` threads when that many cores are free, else as many as are (at least one).

    More OpenMP threads than free cores is the collapse this module's default avoids: the
    quickstart's final finetune took 1.9x longer on two threads than on one beside a one-core
    matmul loop (``experiments/results/bench_final_threads.md``). ``None`` (load unknown): ``wanted``."""
    if busy_elsewhere is None or wanted <= 1:
        return max(1, wanted)
    free = (cores or os.cpu_count() or 1) - busy_elsewhere
    return max(1, min(wanted, int(free + 0.5)))
