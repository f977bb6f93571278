"""Hardware-aware selection: the best predicted architecture under a latency bound (checked against
brute force on ``tiny``), --target-fps / --speedup bounds, their one-line errors, and the warning
for a predictor whose Kendall τ is below 0.5."""

import csv
import json
import random

import pytest

from donna_nas.errors import UserError
from donna_nas.latency.source import all_ops
from donna_nas.predictor.quality import PredictorQuality
from donna_nas.search import Constraints, Evaluator, search, synthetic_predictor
from donna_nas.search.objectives import MappingLatency
from donna_nas.search.select import LatencyTarget, TeacherLatency, select_under_bound
from donna_nas.space import load_space
from tests.test_cli_failures import assert_one_line, run_cli
from tests.test_search_cli import make_run, write_table


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


@pytest.fixture(scope="module")
def brute(tiny, tmp_path_factory):
    """Every architecture of ``tiny`` evaluated with the predictor and table the CLI tests use."""
    table = write_table(tmp_path_factory.mktemp("lut") / "lut.csv", tiny)
    ev = Evaluator(tiny, synthetic_predictor(tiny, 3), MappingLatency(table))
    return [ev.evaluate(a) for a in tiny.enumerate()]


def best_under(evals, bound, max_params=None):
    ok = [e for e in evals if e.latency_ms <= bound and (max_params is None or e.params <= max_params)]
    return min(ok, key=lambda e: (e.metric, e.latency_ms))


def add_teacher_row(path, key, ms):
    with open(path, "a", newline="") as f:
        csv.writer(f).writerow([key, f"{ms:.6f}", "0.001", "testdev", "fp32", "test", "test", ""])


def search_run(tmp_path, tiny, tau=None, teacher=True):
    run = make_run(tmp_path, tiny)
    if tau is not None:
        obj = json.loads((run / "predictor.json").read_text())
        obj.update(test_kendall_tau=tau, cv_kendall_tau=tau, n_test=12, n_train=20)
        (run / "predictor.json").write_text(json.dumps(obj))
    if teacher:
        (run / "teacher.json").write_text(json.dumps({"kind": "resnet", "name": "resnet18"}))
    lut = tmp_path / "lut.csv"
    write_table(lut, tiny)
    return run, lut


# ------------------------------------------------------------------ the rule, against brute force
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_latency_bound_selects_best_predicted_under_it(tiny, seed):
    rng = random.Random(seed)
    table = MappingLatency({op.key: rng.uniform(0.1, 2.0) for op in all_ops(tiny, tiny.input_size)})
    pred = synthetic_predictor(tiny, seed, noise=0.5)
    ev = Evaluator(tiny, pred, table)
    evals = [ev.evaluate(a) for a in tiny.enumerate()]
    lats = sorted(e.latency_ms for e in evals)
    pars = sorted(e.params for e in evals)
    for q in (0.05, 0.3, 0.7):
        bound = lats[int(q * len(lats))]
        expect = best_under(evals, bound)
        res = search(tiny, pred, table, Constraints(max_latency_ms=bound), method="exact",
                     context_samples=10)
        assert res.selected.arch == expect.arch and res.selected.latency_ms <= bound
        assert select_under_bound(evals, "minimize", bound).arch == expect.arch
        # params only as an extra constraint
        cap = pars[len(pars) // 2]
        got = search(tiny, pred, table, Constraints(bound, cap), method="exact", context_samples=10)
        assert got.selected.arch == best_under(evals, bound, cap).arch
    # nothing under the bound: no selection, and the fastest architecture is reported
    res = search(tiny, pred, table, Constraints(max_latency_ms=lats[0] * 0.5), method="exact",
                 context_samples=10)
    assert res.selected is None and res.fastest.latency_ms == pytest.approx(lats[0], rel=1e-12)


# ------------------------------------------------------------------ bounds from the options
def test_target_fps_and_speedup_convert_to_the_bound():
    b = LatencyTarget(target_fps=40).resolve()
    assert b.max_latency_ms == pytest.approx(25.0) and b.origin == "target-fps"
    teacher = TeacherLatency("resnet18", 30.0, "measured (test)")
    b = LatencyTarget(speedup=1.5).resolve(teacher)
    assert b.max_latency_ms == pytest.approx(20.0) and b.origin == "speedup" and b.teacher == teacher
    assert "1.5" in b.describe() and "30 ms" in b.describe()
    b = LatencyTarget(speedup=2, teacher_latency_ms=9.0).resolve(teacher_name="resnet50")
    assert b.max_latency_ms == pytest.approx(4.5) and b.teacher.how.startswith("given")
    assert LatencyTarget(max_latency_ms=7).resolve().max_latency_ms == 7.0
    assert LatencyTarget.from_options(default_speedup=1.5).speedup == 1.5
    assert LatencyTarget.from_options(max_latency_ms=3, default_speedup=1.5).speedup is None
    assert LatencyTarget().resolve().max_latency_ms is None
    with pytest.raises(UserError, match="one latency target"):
        LatencyTarget(max_latency_ms=3, speedup=1.5)
    with pytest.raises(UserError, match="positive"):
        LatencyTarget(target_fps=0)
    with pytest.raises(UserError, match="--teacher-latency-ms"):
        LatencyTarget(speedup=1.5).resolve(None)


def test_cli_target_fps_selects_under_1000_over_fps(tmp_path, tiny, brute, capsys):
    run, lut = search_run(tmp_path, tiny)
    bound = sorted(e.latency_ms for e in brute)[len(brute) // 4]
    fps = 1000.0 / bound
    code, out, err = run_cli(["search", run, "--latency-table", lut, "--target-fps", repr(fps)], capsys)
    assert code == 0, out + err
    sel = json.loads((run / "selected.json").read_text())
    assert sel["arch"] == best_under(brute, 1000.0 / fps).arch
    assert sel["latency_bound"]["origin"] == "target-fps"
    assert sel["latency_bound"]["max_latency_ms"] == pytest.approx(bound)
    assert sel["latency_ms_how"] == "looked up (lut.csv)"
    assert "encoder" in sel["params_scope"] and "bound: latency ≤" in out


def test_cli_speedup_with_a_table_row_and_a_given_teacher_latency(tmp_path, tiny, brute, capsys):
    run, lut = search_run(tmp_path, tiny)
    lats = sorted(e.latency_ms for e in brute)
    teacher_ms = 1.5 * lats[len(lats) // 3]
    add_teacher_row(lut, f"model:resnet18:h={tiny.input_size[0]},w={tiny.input_size[1]}", teacher_ms)
    code, out, err = run_cli(["search", run, "--latency-table", lut, "--speedup", "1.5"], capsys)
    assert code == 0, out + err
    sel = json.loads((run / "selected.json").read_text())
    b = sel["latency_bound"]
    assert b["origin"] == "speedup" and b["max_latency_ms"] == pytest.approx(teacher_ms / 1.5)
    assert b["teacher"]["latency_ms"] == pytest.approx(teacher_ms) and "looked up" in b["teacher"]["how"]
    assert sel["teacher_latency_ms"] == pytest.approx(teacher_ms)
    assert sel["arch"] == best_under(brute, teacher_ms / 1.5).arch
    # a given teacher latency replaces the lookup
    code, out, err = run_cli(["search", run, "--latency-table", lut, "--speedup", "2",
                              "--teacher-latency-ms", repr(2 * lats[10])], capsys)
    assert code == 0, out + err
    sel = json.loads((run / "selected.json").read_text())
    assert sel["latency_bound"]["max_latency_ms"] == pytest.approx(lats[10])
    assert sel["arch"] == best_under(brute, lats[10]).arch


def test_cli_speedup_with_a_table_that_cannot_price_the_teacher(tmp_path, tiny, capsys):
    run, lut = search_run(tmp_path, tiny)
    code, out, err = run_cli(["search", run, "--latency-table", lut, "--speedup", "1.5"], capsys)
    line = assert_one_line(code, out, err, "--speedup", "cannot price the teacher resnet18",
                           "--teacher-latency-ms", "--max-latency-ms")
    assert "lut.csv" in line
    # the quickstart refuses it before any training stage, and writes no settings
    from donna_nas.quickstart import QuickstartConfig, check_latency_target

    with pytest.raises(UserError, match="--teacher-latency-ms"):
        check_latency_target(QuickstartConfig.tiny(train_teacher=True), str(lut), tmp_path)
    check_latency_target(QuickstartConfig(teacher_latency_ms=5.0), str(lut), tmp_path)  # no error


def test_cli_nothing_meets_the_bound(tmp_path, tiny, brute, capsys):
    run, lut = search_run(tmp_path, tiny)
    fastest = min(e.latency_ms for e in brute)
    code, out, err = run_cli(["search", run, "--latency-table", lut, "--max-latency-ms",
                              repr(fastest / 2)], capsys)
    assert_one_line(code, out, err, "no architecture meets the constraints",
                    f"latency ≤ {fastest / 2:.4g} ms", f"fastest candidate runs {fastest:.4g} ms")
    assert not (run / "selected.json").exists()
    code, out, err = run_cli(["search", run, "--latency-table", lut, "--speedup", "3",
                              "--teacher-latency-ms", repr(fastest)], capsys)
    assert_one_line(code, out, err, "--speedup 3", f"fastest candidate runs {fastest:.4g} ms")


def test_cli_rejects_two_latency_targets(tmp_path, tiny, capsys):
    run, lut = search_run(tmp_path, tiny)
    code, out, err = run_cli(["search", run, "--latency-table", lut, "--speedup", "1.5",
                              "--max-latency-ms", "3"], capsys)
    assert_one_line(code, out, err, "one latency target")
    code, out, err = run_cli(["quickstart", "--tiny", "--out", tmp_path / "qs", "--speedup", "2",
                              "--target-fps", "30"], capsys)
    assert_one_line(code, out, err, "one latency target")
    assert not (tmp_path / "qs" / "quickstart.json").exists()


# ------------------------------------------------------------------ predictor warning
def test_warning_fires_for_a_poor_predictor_only(tmp_path, tiny, capsys):
    assert PredictorQuality(0.33, "held-out", 3).warning().startswith("warning:")
    assert PredictorQuality(0.8, "held-out", 12).warning() is None
    assert PredictorQuality(None).warning() is None
    assert PredictorQuality(0.8, "held-out", None).warning() is None  # an unknown count is not held against it
    q = PredictorQuality.from_json({"test_kendall_tau": float("nan"), "cv_kendall_tau": 0.1})
    assert q.kind == "cross-validated" and q.tau == 0.1 and q.warning()
    for tau, warned in ((0.2, True), (0.9, False)):
        (tmp_path / str(tau)).mkdir()
        run, lut = search_run(tmp_path / str(tau), tiny, tau=tau)
        code, out, err = run_cli(["search", run, "--latency-table", lut], capsys)
        assert code == 0, out + err
        text = " ".join(out.split())
        assert (f"warning: predictor Kendall τ {tau:.2f} (held-out, 12 architectures) is below 0.5" in text) == warned
        assert ("unreliable" in text) == warned and f"Kendall τ {tau:.2f}" in text
        sel = json.loads((run / "selected.json").read_text())
        assert sel["predictor_quality"]["kendall_tau"] == tau
        assert (sel["predictor_quality"]["warning"] is not None) == warned
        # the quickstart / paper-table report lines
        from donna_nas.quickstart import selection_markdown

        md = "\n".join(selection_markdown(sel))
        assert ("unreliable" in md) == warned and f"Kendall τ {tau:.2f}" in md
        assert "encoder params" in md and "(table)" not in md and "looked up (lut.csv)" in md


# ------------------------------------------------------------------ the teacher on ORT
def test_teacher_units_compose_to_the_encoder():
    """The teacher is timed unit by unit; the units are the whole encoder, in order."""
    import torch

    from donna_nas.latency.teacher import resnet_units
    from donna_nas.nn.encoders import create_encoder

    torch.manual_seed(0)
    enc = create_encoder("resnet18").eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        y = (x - enc.mean) / enc.std
        for _, mod in resnet_units(enc):
            y = mod(y)
        assert torch.allclose(y, enc(x)[-1], atol=1e-5)
    assert len(resnet_units(enc)) == 1 + 8


def test_a_teacher_that_is_not_a_resnet_asks_for_its_latency():
    import pytest
    import torch

    from donna_nas.errors import UserError
    from donna_nas.latency.teacher import resnet_units

    with pytest.raises(UserError, match="not a ResNet encoder.*--teacher-latency-ms"):
        resnet_units(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)))


def test_measured_teacher_latency_is_cached(tmp_path, monkeypatch):
    import donna_nas.latency.teacher as lt
    from donna_nas.latency.ort import cpu_name
    from donna_nas.search.run import teacher_latency

    calls = []

    def fake(name, size, precision="int8", threads=1, seed=0):
        calls.append((name, size, precision))
        return {"teacher": name, "input_size": list(size), "precision": precision,
                "device": cpu_name(), "latency_ms": 12.0}

    monkeypatch.setattr(lt, "measure_resnet_encoder", fake)
    for _ in range(2):
        t = teacher_latency("measure", None, "resnet18", (64, 192), tmp_path, precision="int8")
        assert t.latency_ms == 12.0 and t.how.startswith("measured (ONNX Runtime int8")
    assert calls == [("resnet18", (64, 192), "int8")]
    teacher_latency("measure", None, "resnet18", (96, 320), tmp_path, precision="int8")
    assert len(calls) == 2  # another input size is measured anew


def test_quickstart_defaults_select_by_latency():
    from donna_nas.quickstart import QuickstartConfig

    for cfg in (QuickstartConfig.small(), QuickstartConfig.tiny()):
        assert cfg.speedup == 1.5 and cfg.max_params_ratio is None
        assert cfg.latency_target().origin == "speedup"


def test_tau_over_too_few_architectures_warns_and_the_measured_tau_is_preferred():
    from donna_nas.predictor.quality import MIN_TAU_ARCHS

    # tau over 2 architectures is +-1 whatever the predictor: a perfect one is still unmeasured
    few = PredictorQuality(1.0, "held-out", 2)
    assert not few.measured and few.reliable is False
    assert "fewer than 5 architectures" in few.warning() and "unmeasured" in few.verdict()
    assert PredictorQuality(0.9, "held-out", MIN_TAU_ARCHS).warning() is None
    # exactly at the threshold is not below it, even when the pair-count ratio rounds under it
    assert PredictorQuality(0.4999999999999999, "cross-validated", 8).warning() is None
    assert "below 0.5" in PredictorQuality(0.49, "cross-validated", 8).warning()
    # the quickstart's case: 2 held-out, 6 cross-validated -> the cross-validated tau is the measured one
    q = PredictorQuality.from_json({"test_kendall_tau": -1.0, "n_test": 2, "cv_kendall_tau": 0.6, "n_train": 6})
    assert (q.kind, q.tau, q.n, q.warning()) == ("cross-validated", 0.6, 6, None)
    q = PredictorQuality.from_json({"test_kendall_tau": 0.2, "n_test": 10, "cv_kendall_tau": 0.9, "n_train": 20})
    assert q.kind == "held-out" and "below 0.5" in q.warning()
    # neither measured: the held-out one is shown, with the warning
    q = PredictorQuality.from_json({"test_kendall_tau": 1.0, "n_test": 2, "cv_kendall_tau": 1.0, "n_train": 3})
    assert q.kind == "held-out" and "fewer than 5" in q.warning()


def test_a_constant_predictor_warns_that_it_ranks_nothing():
    """A ridge shrunk to its intercept predicts one value; leave-one-out of that gives tau -1 by
    construction, which the warning must not present as a ranking."""
    import numpy as np

    from donna_nas.predictor.fit import cv_predict, kendall_tau, predicts_constant
    from donna_nas.predictor.models import Ridge

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 5)), rng.normal(size=8)
    flat = Ridge(alpha=1e9)
    assert predicts_constant(flat.fit(X, y).predict(X), y)
    assert kendall_tau(cv_predict(lambda: Ridge(alpha=1e9), X, y), y) == pytest.approx(-1.0)
    assert not predicts_constant(Ridge(alpha=1e-6).fit(X, X @ np.arange(5.0)).predict(X), X @ np.arange(5.0))
    q = PredictorQuality.from_json({"cv_kendall_tau": -1.0, "n_train": 8, "constant": True})
    assert q.constant and q.reliable is False
    assert "same prediction" in q.warning() and "ranks nothing" in q.warning()
    assert q.to_json()["constant"] is True
    # a constant predictor warns even with a tau that would otherwise pass
    assert PredictorQuality.from_json({"test_kendall_tau": 0.9, "n_test": 10, "constant": True}).warning()
    assert PredictorQuality.from_json({"test_kendall_tau": 0.9, "n_test": 10}).warning() is None
