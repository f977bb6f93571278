"""Executors: results in job order, and identical block-quality tables for 1 worker, 2 workers and Ray."""

import sys
from pathlib import Path

import pytest

from donna_nas.distill.pipeline import build_supernet
from donna_nas.errors import UserError
from donna_nas.runtime.executor import LocalExecutor, RayExecutor, make_executor

sys.path.insert(0, str(Path(__file__).parent))
from test_distill_pipeline import SPACE, _cfg, _frames, _teacher  # noqa: E402


def square(x):
    return x * x


def test_local_executor_keeps_job_order_and_reports_each_job():
    seen = []
    out = LocalExecutor(1).map(square, [3, 1, 2], on_done=lambda i, r: seen.append((i, r)))
    assert out == [9, 1, 4]
    assert sorted(seen) == [(0, 9), (1, 1), (2, 4)]
    with pytest.raises(UserError, match="--workers"):
        LocalExecutor(0)
    with pytest.raises(UserError, match="local' or 'ray"):
        make_executor("slurm")


def _table(run):
    return (run / "tables" / "block_quality.csv").read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("ex") / "one"
    build_supernet(SPACE, run, _cfg(), teacher=_teacher(), frames=_frames(), progress=False,
                   executor=LocalExecutor(1))
    return _table(run)


def test_two_local_workers_give_the_same_table(reference, tmp_path):
    run = tmp_path / "two"
    build_supernet(SPACE, run, _cfg(), teacher=_teacher(), frames=_frames(), progress=False,
                   executor=LocalExecutor(2))
    assert _table(run) == reference


@pytest.mark.slow  # starting Ray takes ~20 s
def test_ray_on_two_local_cpus_gives_the_same_table(reference, tmp_path):
    pytest.importorskip("ray")
    run = tmp_path / "ray"
    build_supernet(SPACE, run, _cfg(), teacher=_teacher(), frames=_frames(), progress=False,
                   executor=RayExecutor(num_cpus=2))
    assert _table(run) == reference
