"""NSGA-II killed with SIGKILL and resumed equals a search that never stopped; shared RDB studies:
stale RUNNING trials of a killed worker, and ``trials`` as the study's total over two workers."""

import os
import signal
import subprocess
import sys

import optuna
import pytest

from donna_nas.search import Constraints, Evaluator, SyntheticLatency, synthetic_predictor
from donna_nas.search.nsga import run_nsga2
from donna_nas.search.storage import open_journal
from donna_nas.space import load_space

# the child runs the same search as the parent; DONNA_NAS_KILL_AT picks where it dies
CHILD = """
import sys
from donna_nas.search import Constraints, Evaluator, SyntheticLatency, synthetic_predictor
from donna_nas.search.nsga import run_nsga2
from donna_nas.space import load_space
space = load_space("tiny")
ev = Evaluator(space, synthetic_predictor(space, 0), SyntheticLatency())
storage, trials, pop, bound = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
run_nsga2(space, ev, Constraints(max_latency_ms=bound), trials=trials, population=pop, seed=3,
          storage=storage, study_name="s")
"""


@pytest.fixture(scope="module")
def setup():
    space = load_space("tiny")
    ev = Evaluator(space, synthetic_predictor(space, 0), SyntheticLatency())
    lats = sorted(ev.evaluate(space.sample(i)).latency_ms for i in range(60))
    return space, ev, lats[40]


def child(storage, trials, pop, bound, kill_at=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("DONNA_NAS_KILL_AT", None)
    if kill_at:
        env["DONNA_NAS_KILL_AT"] = kill_at
    return subprocess.Popen([sys.executable, "-c", CHILD, str(storage), str(trials), str(pop),
                             repr(bound)], env=env, stderr=subprocess.PIPE, text=True)


def run_child(*args, **kw):
    p = child(*args, **kw)
    _, err = p.communicate(timeout=120)
    return p.returncode, err


def evaluations(res):
    return [(t.evaluation, t.feasible) for t in res.trials]


@pytest.mark.parametrize("kill_at", ["journal:s.log#4", "nsga2:evaluated#47"])
def test_killed_journal_search_resumes_to_the_uninterrupted_result(tmp_path, setup, kill_at):
    """Killed during the 3rd append of trials (a torn line: half of generation 2 reached the file), or while
    evaluating trial 47 (mid-generation 3: trials 37-46 done but not yet appended); the resume
    cuts the torn tail, re-runs the lost trials and ends where an uninterrupted search ends."""
    space, ev, bound = setup
    log = tmp_path / "s.log"
    code, err = run_child(log, 90, 12, bound, kill_at)
    assert code == -signal.SIGKILL, err
    data = log.read_bytes()
    kept = len(optuna.load_study(study_name="s", storage=open_journal(log)).trials)
    if kill_at.startswith("journal"):
        assert not data.endswith(b"\n")  # the torn line is there
        assert 24 < kept < 36             # generation 2 half written: resumed mid-generation
    else:
        assert data.endswith(b"\n") and kept == 36
    res = run_nsga2(space, ev, Constraints(max_latency_ms=bound), trials=90, population=12,
                    seed=3, storage=str(log), study_name="s")
    assert res.new_trials == 90 - kept
    straight = run_nsga2(space, ev, Constraints(max_latency_ms=bound), trials=90, population=12,
                         seed=3)
    assert evaluations(res) == evaluations(straight)
    study = optuna.load_study(study_name="s", storage=open_journal(log))
    assert [t.user_attrs["arch"] for t in study.trials] == [t.evaluation.arch for t in straight.trials]


def test_killed_sqlite_worker_resumes_and_leaves_no_running_trial(tmp_path, setup):
    space, ev, bound = setup
    url = f"sqlite:///{tmp_path / 's.db'}"
    code, err = run_child(url, 16, 5, bound, "nsga2:evaluated#12")
    assert code == -signal.SIGKILL, err
    before = optuna.load_study(study_name="s", storage=url)
    assert [t.state.name for t in before.trials].count("RUNNING") == 1
    res = run_nsga2(space, ev, Constraints(max_latency_ms=bound), trials=16, population=5,
                    seed=3, storage=url, study_name="s")
    assert any("RUNNING" in n for n in res.notes) and res.new_trials == 5
    states = [t.state.name for t in optuna.load_study(study_name="s", storage=url).trials]
    assert states.count("COMPLETE") == 16 and states.count("FAIL") == 1 and "RUNNING" not in states
    straight = run_nsga2(space, ev, Constraints(max_latency_ms=bound), trials=16, population=5,
                         seed=3)
    assert evaluations(res) == evaluations(straight)


def test_two_workers_share_the_trial_total(tmp_path, setup):
    space, ev, bound = setup
    url = f"sqlite:///{tmp_path / 's.db'}"
    # create the schema first, so the two workers do not race to create tables
    run_nsga2(space, ev, Constraints(max_latency_ms=bound), trials=1, population=4, seed=3,
              storage=url, study_name="s")
    workers = [child(url, 10, 4, bound) for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=180)
        assert w.returncode == 0, err
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert sum(t.state.name == "COMPLETE" for t in trials) == 10
    assert not any(t.state.name == "RUNNING" for t in trials)
    workers_seen = {t.user_attrs.get("worker") for t in trials[1:] if t.state.name == "COMPLETE"}
    assert len(workers_seen) == 2  # both took part
