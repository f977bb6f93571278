"""NSGA-II through optuna: constraints, non-dominated fronts, resumable studies."""

import json

import numpy as np
import pytest

from donna_nas.errors import UserError
from donna_nas.search import Constraints, Evaluator, SyntheticLatency, search, synthetic_predictor
from donna_nas.search.nsga import arch_from_params, distributions, run_nsga2
from donna_nas.search.pareto import non_dominated_mask
from donna_nas.space import load_space


@pytest.fixture(scope="module")
def space():
    return load_space("tiny")


def test_distributions_only_for_multi_valued_options(space):
    d = distributions(space)
    expect = sum(1 for b in space.blocks for v in b.options().values() if len(v) > 1)
    assert len(d) == expect
    assert "b1.op" in d and "b1.expand" not in d  # tiny's b1 has one expansion
    arch = space.sample(3)
    params = {k: getattr(arch.block_choices[space.block_names.index(k.split(".")[0])], k.split(".")[1])
              for k in d}
    assert arch_from_params(space, params) == arch


def test_nsga2_front_non_dominated_and_feasible():
    from donna_nas.latency import LookupTable, shipped_tables_dir

    space = load_space("ofa_mbv3_w12")
    pred = synthetic_predictor(space, 1)
    lat = LookupTable.from_csv(shipped_tables_dir() / "note10_ofa_mbv3_w12.csv")
    ev = Evaluator(space, pred, lat)
    probe = [ev.evaluate(space.sample(i)) for i in range(50)]
    cons = Constraints(max_latency_ms=float(np.percentile([e.latency_ms for e in probe], 40)),
                       max_params=int(np.percentile([e.params for e in probe], 60)))
    res = search(space, pred, lat, cons, method="nsga2", trials=400, population=40, seed=0)
    assert res.method == "nsga2" and res.front
    assert all(e.latency_ms <= cons.max_latency_ms and e.params <= cons.max_params for e in res.front)
    pts = np.array([[e.metric, e.latency_ms] for e in res.front])
    assert non_dominated_mask(pts).all()
    # nothing feasible that was evaluated beats the front
    for e, ok in zip(res.evaluated, res.feasible):
        if ok:
            assert any(f.metric <= e.metric and f.latency_ms <= e.latency_ms for f in res.front)
    # scored against the exact constrained front: a ratio in (0, 1]
    assert 0 < res.hv_ratio <= 1 + 1e-12
    assert res.selected.metric == min(e.metric for e in res.front)


def test_resume_continues_trial_count(tmp_path, space):
    pred = synthetic_predictor(space, 0)
    ev = Evaluator(space, pred, SyntheticLatency())
    log = tmp_path / "studies" / "s.log"
    first = run_nsga2(space, ev, trials=70, population=20, storage=str(log), study_name="s")
    assert first.new_trials == 70 and len(first.trials) == 70
    assert len(load_study(log, "s").trials) == 70
    again = run_nsga2(space, ev, trials=70, population=20, storage=str(log), study_name="s")
    assert again.new_trials == 0 and len(again.trials) == 70  # finished: a no-op
    more = run_nsga2(space, ev, trials=110, population=20, storage=str(log), study_name="s")
    assert more.new_trials == 40 and len(more.trials) == 110
    assert [t.evaluation for t in more.trials[:70]] == [t.evaluation for t in first.trials]
    # NSGA-II generation bookkeeping survives the restart
    gens = [t.system_attrs.get("NSGAIISampler:generation") for t in load_study(log, "s").trials]
    assert gens[:20] == [0] * 20 and max(gens) >= 4 and gens == sorted(gens)
    # stopped and resumed = never stopped
    straight = run_nsga2(space, ev, trials=110, population=20)
    assert [t.evaluation for t in more.trials] == [t.evaluation for t in straight.trials]


def load_study(path, name):
    import optuna

    from donna_nas.search.storage import open_journal

    return optuna.load_study(study_name=name, storage=open_journal(path))


def test_default_study_opens_in_optuna_with_named_objectives(tmp_path, space):
    """The run-directory study is an optuna journal: load_study reads every trial as searched."""
    ev = Evaluator(space, synthetic_predictor(space, 0), SyntheticLatency())
    lats = sorted(ev.evaluate(space.sample(i)).latency_ms for i in range(50))
    cons = Constraints(max_latency_ms=lats[25])
    log = tmp_path / "s.log"
    res = run_nsga2(space, ev, cons, trials=45, population=10, storage=str(log), study_name="s",
                    extra_objective="params")
    study = load_study(log, "s")
    assert study.metric_names == ["synthetic_sq_rel", "latency_ms", "params"]
    assert [d.name for d in study.directions] == ["MINIMIZE"] * 3
    assert len(study.trials) == 45 and all(t.state.name == "COMPLETE" for t in study.trials)
    for t, rec in zip(study.trials, res.trials):
        e = rec.evaluation
        assert t.user_attrs["arch"] == e.arch and t.values[:2] == [e.metric, e.latency_ms]
        assert arch_from_params(space, t.params).encode() == e.arch
        assert (t.system_attrs["constraints:max_latency_ms"] <= 0) == rec.feasible
    assert 0 < sum(r.feasible for r in res.trials) < 45


def test_incremental_sampler_matches_stock_nsga2(space):
    """The bookkeeping shortcut changes speed only: same trials as optuna's own sampler."""
    ev = Evaluator(space, synthetic_predictor(space, 0), SyntheticLatency())
    lats = sorted(ev.evaluate(space.sample(i)).latency_ms for i in range(100))
    for cons in (Constraints(), Constraints(max_latency_ms=lats[30])):
        stock = run_nsga2(space, ev, cons, trials=160, population=16, seed=2, fast_sampler=False)
        fast = run_nsga2(space, ev, cons, trials=160, population=16, seed=2)
        assert [t.evaluation for t in fast.trials] == [t.evaluation for t in stock.trials]
        if cons.max_latency_ms is not None:
            assert 0 < sum(t.feasible for t in fast.trials) < 160


def test_journal_of_another_study_or_damaged_is_refused(tmp_path, space):
    ev = Evaluator(space, synthetic_predictor(space, 0), SyntheticLatency())
    log = tmp_path / "s.log"
    run_nsga2(space, ev, trials=5, population=4, storage=str(log), study_name="a")
    with pytest.raises(UserError, match="another --study-name"):
        run_nsga2(space, ev, trials=10, population=4, storage=str(log), study_name="b")
    with pytest.raises(UserError, match="another search"):  # same name, another space
        other = load_space("ofa_mbv3_w12")
        run_nsga2(other, Evaluator(other, synthetic_predictor(other, 0), SyntheticLatency()),
                  trials=10, population=4, storage=str(log), study_name="a")
    lines = log.read_text().splitlines(keepends=True)
    bad = tmp_path / "bad.log"
    bad.write_text("".join(lines[:2]) + '{"op_code": 4, "stu\n' + "".join(lines[2:]))
    with pytest.raises(UserError, match="line 3 is not valid JSON"):
        run_nsga2(space, ev, trials=10, population=4, storage=str(bad), study_name="a")
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"study": "a", "format": "donna-nas-trials/1"}) + "\n")
    with pytest.raises(UserError, match="older donna-nas"):
        run_nsga2(space, ev, trials=10, population=4, storage=str(old), study_name="a")


def test_torn_last_line_is_cut_before_appending(tmp_path, space):
    ev = Evaluator(space, synthetic_predictor(space, 0), SyntheticLatency())
    log = tmp_path / "s.log"
    run_nsga2(space, ev, trials=30, population=10, storage=str(log), study_name="s")
    whole = log.read_bytes()
    log.write_bytes(whole[:-200])  # the last trial's line cut short, as by a kill mid-write
    res = run_nsga2(space, ev, trials=40, population=10, storage=str(log), study_name="s")
    assert res.new_trials == 11 and any("torn" in n for n in res.notes)
    study = load_study(log, "s")  # optuna reads it: nothing was appended onto the torn line
    assert len(study.trials) == 40
    assert log.read_bytes().endswith(b"\n") and log.read_bytes().count(b"\n") == whole.count(b"\n") + 10
    straight = run_nsga2(space, ev, trials=40, population=10)
    assert [t.evaluation for t in res.trials] == [t.evaluation for t in straight.trials]


def test_log_of_another_study_is_refused(tmp_path, space):
    ev = Evaluator(space, synthetic_predictor(space, 0), SyntheticLatency())
    log = tmp_path / "s.jsonl"
    run_nsga2(space, ev, trials=5, population=4, storage=str(log), study_name="a")
    with pytest.raises(UserError, match="another --study-name"):
        run_nsga2(space, ev, trials=10, population=4, storage=str(log), study_name="b")


def test_rdb_storage_resumes(tmp_path, space):
    ev = Evaluator(space, synthetic_predictor(space, 0), SyntheticLatency())
    url = f"sqlite:///{tmp_path / 'study.db'}"
    a = run_nsga2(space, ev, trials=5, population=4, storage=url, storage_mode="direct",
                  study_name="shared")
    b = run_nsga2(space, ev, trials=8, population=4, storage=url,  # a URL: direct by default
                  study_name="shared")
    assert a.new_trials == 5 and b.new_trials == 3 and len(b.trials) == 8
    # one worker on an RDB study follows the same trajectory as the in-memory search
    mem = run_nsga2(space, ev, trials=8, population=4)
    assert [t.evaluation for t in b.trials] == [t.evaluation for t in mem.trials]
    import optuna

    assert optuna.load_study(study_name="shared", storage=url).metric_names == [
        "synthetic_sq_rel", "latency_ms"]


def test_second_writer_of_a_journal_is_refused(tmp_path, space):
    from donna_nas.search.storage import JournalStudy

    ev = Evaluator(space, synthetic_predictor(space, 0), SyntheticLatency())
    log = tmp_path / "s.log"
    run_nsga2(space, ev, trials=5, population=4, storage=str(log), study_name="s")
    held = JournalStudy(log, "s", ["minimize", "minimize"], ["synthetic_sq_rel", "latency_ms"],
                        space.fingerprint())
    try:
        with pytest.raises(UserError, match="another search is writing"):
            run_nsga2(space, ev, trials=10, population=4, storage=str(log), study_name="s")
    finally:
        held.close()
    assert run_nsga2(space, ev, trials=10, population=4, storage=str(log), study_name="s").new_trials == 5


def test_journal_lines_are_what_optuna_writes(tmp_path, space):
    """Each mirrored trial reads back through optuna exactly as one optuna wrote itself."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from donna_nas.search.nsga import distributions
    from donna_nas.search.storage import JournalStudy

    dists = distributions(space)
    arch = space.sample(1)
    params = {k: getattr(arch.block_choices[space.block_names.index(k.split(".")[0])], k.split(".")[1])
              for k in dists}
    trials = [optuna.trial.create_trial(params=params, distributions=dists, values=[0.5 + i, 2.0],
                                        user_attrs={"arch": arch.encode(), "params": 7},
                                        system_attrs={"NSGAIISampler:generation": i,
                                                      "constraints:max_latency_ms": -0.25})
              for i in range(3)]
    ours = JournalStudy(tmp_path / "ours.log", "s", ["minimize", "minimize"], ["m", "latency_ms"],
                        space.fingerprint())
    ours.append(trials)
    ours.close()
    ref = JournalStorage(JournalFileBackend(str(tmp_path / "ref.log")))
    sid = optuna.create_study(storage=ref, study_name="s", directions=["minimize"] * 2)._study_id
    for t in trials:
        ref.create_new_trial(sid, template_trial=t)
    a = load_study(tmp_path / "ours.log", "s").trials
    b = optuna.load_study(study_name="s", storage=open_ref(tmp_path / "ref.log")).trials
    fields = ("number", "state", "values", "params", "distributions", "user_attrs", "system_attrs",
              "datetime_start", "datetime_complete", "intermediate_values")
    assert len(a) == 3
    for x, y in zip(a, b):
        assert {f: getattr(x, f) for f in fields} == {f: getattr(y, f) for f in fields}


def open_ref(path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))
