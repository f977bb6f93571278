"""Executors: run independent, picklable jobs in-process, in a process pool, or on Ray.

Jobs carry their own seeds and set their own thread count, so their results do not depend on the
executor or the number of workers (tests compare 1 worker, 2 workers and Ray). Results come back
in job order. Jobs write their own result files; resume is handled by the caller, which only
submits jobs whose result file is missing.
"""

from __future__ import annotations

import abc
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

from donna_nas.errors import UserError

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "make_executor"]


class Executor(abc.ABC):
    """Where independent jobs run (blockwise distillation, predictor finetunes, op timings): the
    one interface the pipeline hands its jobs to. ``map(fn, jobs)`` returns the results in job
    order and calls ``on_done(i, result)`` after each job, so that a caller can save progress."""

    name = "base"

    @abc.abstractmethod
    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any],
            on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
        """Run ``fn(job)`` for every job; results in job order."""


class LocalExecutor(Executor):
    """One process (``workers=1``) or a spawn-started process pool."""

    name = "local"

    def __init__(self, workers: int = 1):
        if workers < 1:
            raise UserError(f"--workers {workers}: must be at least 1")
        self.workers = workers

    def map(self, fn, jobs, on_done=None):
        jobs = list(jobs)
        results: list[Any] = [None] * len(jobs)
        if self.workers == 1 or len(jobs) <= 1:
            for i, job in enumerate(jobs):
                results[i] = fn(job)
                if on_done:
                    on_done(i, results[i])
            return results
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(self.workers, len(jobs)), mp_context=ctx) as pool:
            futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
            from concurrent.futures import as_completed

            for fut in as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                if on_done:
                    on_done(i, results[i])
        return results


class RayExecutor(Executor):
    """Ray tasks: ``ray.init()`` on this machine, or join a cluster at ``address``."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'donna-nas[ray]'") from None
        self.address, self.num_cpus = address, num_cpus

    def map(self, fn, jobs, on_done=None):
        import ray

        jobs = list(jobs)
        started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.num_cpus, **kwargs)
            started = True
        try:
            remote = ray.remote(num_cpus=1)(fn)
            refs = [remote.remote(job) for job in jobs]
            index = {ref: i for i, ref in enumerate(refs)}
            results: list[Any] = [None] * len(jobs)
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    i = index[ref]
                    results[i] = ray.get(ref)
                    if on_done:
                        on_done(i, results[i])
            return results
        finally:
            if started:
                ray.shutdown()


def make_executor(kind: str = "local", workers: int = 1, address: str | None = None) -> Executor:
    if kind == "local":
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(address, num_cpus=workers)
    raise UserError(f"--executor {kind!r}: use 'local' or 'ray'")
