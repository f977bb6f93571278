"""`donna-nas search RUN`: run-dir inputs, outputs, selection and user errors."""

import csv
import json

import pytest

from donna_nas.cli import main
from donna_nas.latency.source import all_ops
from donna_nas.search import Constraints, Evaluator, synthetic_predictor
from donna_nas.search.objectives import TableLatency
from donna_nas.space import load_space

COLUMNS = ["op", "latency_ms", "std_ms", "device", "precision", "runtime", "source", "fixed_for"]


def write_table(path, space, drop=()):
    rows = []
    for i, op in enumerate(all_ops(space, space.input_size)):
        if op.key in drop:
            continue
        ms = op.macs / 2e7 + 0.01 * (i % 7)
        rows.append([op.key, f"{ms:.6f}", "0.001", "testdev", "fp32", "test", "test", ""])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows(rows)
    return {r[0]: float(r[1]) for r in rows}


def make_run(tmp_path, space):
    run = tmp_path / "run"
    run.mkdir()
    (run / "space.yaml").write_text(space.to_yaml())
    synthetic_predictor(space, 3).save(run / "predictor.json")
    return run


def cli(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code, out.out + out.err


def test_search_writes_outputs_and_selects_best_feasible(tmp_path, capsys):
    space = load_space("tiny")
    run = make_run(tmp_path, space)
    table = write_table(tmp_path / "lut.csv", space)
    pred = synthetic_predictor(space, 3)
    ev = Evaluator(space, pred, TableLatency(table))
    evals = [ev.evaluate(a) for a in space.enumerate()]
    bound = sorted(e.latency_ms for e in evals)[len(evals) // 3]
    code, out = cli(["search", str(run), "--latency-table", str(tmp_path / "lut.csv"),
                     "--max-latency-ms", str(bound), "--reference", "ResNet18=5.0"], capsys)
    assert code == 0, out
    assert "exact solver was used" in out
    sel = json.loads((run / "selected.json").read_text())
    feasible = [e for e in evals if e.latency_ms <= bound]
    best = min(feasible, key=lambda e: (e.metric, e.latency_ms))
    assert sel["arch"] == best.arch and sel["space_fingerprint"] == space.fingerprint()
    assert sel["latency_ms"] == pytest.approx(best.latency_ms, rel=1e-9)
    with open(run / "tables" / "pareto.csv") as f:
        front = list(csv.DictReader(f))
    assert front and all(float(r["latency_ms"]) <= bound for r in front)
    assert set(front[0]) == {"rank", "arch", "predicted_metric", "latency_ms", "params", "macs"}
    for r in front:  # each row's numbers are the architecture's own
        e = ev.evaluate(space.decode(r["arch"]))
        assert int(r["params"]) == e.params and float(r["predicted_metric"]) == e.metric
    assert (run / "plots" / "pareto.png").stat().st_size > 10_000
    assert (run / "tables" / "trials.csv").exists()


def test_search_nsga2_resumes_through_cli(tmp_path, capsys):
    space = load_space("tiny")
    run = make_run(tmp_path, space)
    write_table(tmp_path / "lut.csv", space)
    base = ["search", str(run), "--latency-table", str(tmp_path / "lut.csv"), "--method", "nsga2",
            "--population", "10"]
    code, out = cli(base + ["--trials", "30"], capsys)
    assert code == 0, out
    assert "30 trials in the study, 30 this run" in out
    code, out = cli(base + ["--trials", "50"], capsys)
    assert code == 0 and "50 trials in the study, 20 this run" in out
    with open(run / "tables" / "trials.csv") as f:
        assert len(list(csv.DictReader(f))) == 50


def test_missing_run_files_and_table_keys(tmp_path, capsys):
    space = load_space("tiny")
    code, out = cli(["search", str(tmp_path / "nope"), "--latency-table", "x.csv"], capsys)
    assert code == 2 and "space.yaml" in out and "build-supernet" in out
    run = tmp_path / "run"
    run.mkdir()
    (run / "space.yaml").write_text(space.to_yaml())
    code, out = cli(["search", str(run), "--latency-table", "x.csv"], capsys)
    assert code == 2 and "predictor.json" in out and "build-supernet" in out
    synthetic_predictor(space, 0).save(run / "predictor.json")
    keys = sorted(op.key for op in all_ops(space, space.input_size))
    write_table(tmp_path / "lut.csv", space, drop=keys[:1])
    code, out = cli(["search", str(run), "--latency-table", str(tmp_path / "lut.csv")], capsys)
    assert code == 2 and "missing" in out and keys[0] in out.replace("\n", "")
    write_table(tmp_path / "lut.csv", space)
    code, out = cli(["search", str(run), "--latency-table", str(tmp_path / "lut.csv"),
                     "--max-latency-ms", "0.001"], capsys)
    assert code == 2 and "no architecture meets the constraints" in out
    assert not (run / "selected.json").exists()
    code, out = cli(["search", str(run)], capsys)
    assert code == 2 and "exactly one latency source" in out


def test_shipped_table_by_name_with_ofa_space(tmp_path, capsys):
    space = load_space("ofa_mbv3_w12")
    run = make_run(tmp_path, space)
    code, out = cli(["search", str(run), "--latency-table", "note10_ofa_mbv3_w12",
                     "--max-latency-ms", "22", "--max-params", "3M"], capsys)
    assert code == 0, out
    sel = json.loads((run / "selected.json").read_text())
    assert sel["latency_ms"] <= 22 and sel["params"] <= 3_000_000
    assert sel["constraints"] == Constraints(22.0, 3_000_000).to_json()


def test_infeasible_search_removes_a_stale_selection(tmp_path, capsys):
    space = load_space("tiny")
    run = make_run(tmp_path, space)
    write_table(tmp_path / "lut.csv", space)
    base = ["search", str(run), "--latency-table", str(tmp_path / "lut.csv")]
    code, out = cli(base, capsys)
    assert code == 0 and (run / "selected.json").is_file()
    code, out = cli(base + ["--max-latency-ms", "0.001"], capsys)
    assert code == 2 and "no architecture meets the constraints" in out
    assert not (run / "selected.json").exists()
    assert out.strip().splitlines()[-1].startswith("error:") and "Traceback" not in out
    # and what reads the selection says so in one line
    from donna_nas.errors import UserError
    from donna_nas.tasks.depth.backbones import selected_architecture

    with pytest.raises(UserError, match="selected.json not found"):
        selected_architecture(run)


def test_run_defaults_to_the_current_directory(tmp_path, capsys, monkeypatch):
    space = load_space("tiny")
    write_table(tmp_path / "lut.csv", space)
    monkeypatch.chdir(tmp_path)  # not a run: one line naming the argument, exit 2
    code, out = cli(["search", "--latency-table", str(tmp_path / "lut.csv")], capsys)
    assert code == 2 and "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and "pass the run directory" in lines[0] and "RUN" in lines[0]
    run = make_run(tmp_path, space)
    monkeypatch.chdir(run)
    code, out = cli(["search", "--latency-table", str(tmp_path / "lut.csv")], capsys)
    assert code == 0, out
    assert json.loads((run / "selected.json").read_text())["space"] == space.name


def test_nsga_progress_is_shown_on_a_terminal_and_in_logs(tmp_path, capsys):
    import io

    from rich.console import Console

    from donna_nas.cli.search import NsgaProgress

    for terminal in (True, False):
        buf = io.StringIO()
        bar = NsgaProgress(Console(file=buf, force_terminal=terminal, width=120))
        for k in range(1, 121):
            bar(k, 120)
        bar.close()
        text = buf.getvalue()
        assert "NSGA-II trials" in text and "120/120" in text  # the finished bar stays
    # through the CLI with stdout captured (not a terminal): plain progress lines
    space = load_space("tiny")
    run = make_run(tmp_path, space)
    write_table(tmp_path / "lut.csv", space)
    code, out = cli(["search", str(run), "--latency-table", str(tmp_path / "lut.csv"),
                     "--method", "nsga2", "--trials", "30", "--population", "10"], capsys)
    assert code == 0 and "NSGA-II trials: 30/30 (100%)" in out


def test_default_study_is_an_optuna_journal(tmp_path, capsys):
    import optuna

    from donna_nas.search.storage import open_journal

    space = load_space("tiny")
    run = make_run(tmp_path, space)
    write_table(tmp_path / "lut.csv", space)
    code, out = cli(["search", str(run), "--latency-table", str(tmp_path / "lut.csv"),
                     "--method", "nsga2", "--trials", "20", "--population", "10"], capsys)
    assert code == 0, out
    (log,) = (run / "studies").glob("*.log")
    study = optuna.load_study(study_name=log.stem, storage=open_journal(log))
    assert study.metric_names == ["synthetic_sq_rel", "latency_ms"] and len(study.trials) == 20
    with open(run / "tables" / "trials.csv") as f:
        assert [r["arch"] for r in csv.DictReader(f)] == [t.user_attrs["arch"] for t in study.trials]
