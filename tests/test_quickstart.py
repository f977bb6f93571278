"""The quickstart runs end to end at toy scale on a shipped teacher (no teacher training), writes
every artifact it promises (quickstart_table.csv with its rows and columns), and resumes.

The shipped models are used when they are installed; otherwise a two-step ResNet18 depth model and
a one-epoch segmentation teacher are written into a temporary models folder under the shipped
names (the same registry code reads them)."""

import csv
import dataclasses
import json
import time

import pytest

from donna_nas.errors import UserError
from donna_nas.quickstart import ROWS, TABLE_COLUMNS, QuickstartConfig, run_quickstart, stage_names
from donna_nas.tasks.depth import zoo

TEACHER, SEG = QuickstartConfig.teacher, QuickstartConfig.seg_teacher


def _installed() -> bool:
    try:
        zoo.resolve_model(TEACHER, kind="depth")
        zoo.resolve_model(SEG, kind="segmentation")
    except UserError:
        return False
    return True


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The shipped teacher and segmentation teacher: the installed ones, or tiny stand-ins."""
    if _installed():
        yield zoo.models_dir()
        return
    from donna_nas.tasks.depth.run import DepthConfig
    from donna_nas.tasks.depth.seg_teacher import train_seg_teacher
    from donna_nas.tasks.depth.train import train_depth
    from tests.test_depth_train import FakeFrames

    work = tmp_path_factory.mktemp("models")
    root = work / "models"
    frames = FakeFrames(n=4, h=64, w=192)
    cfg = DepthConfig(data="fake", height=64, width=192, batch=2, epochs=1, checkpoint_every=2, seed=0,
                      max_steps=2)
    train_depth(cfg, work / "run", dataset=frames, progress=False, log=None)
    world = {"drives": 6, "frames": 60, "size": [64, 192], "seed": 0, "version": 2}
    zoo.write_shipped_depth_model(TEACHER, work / "run", {"steps": 2, "command": "test", "world": world}, root)
    train_seg_teacher(None, work / "seg.safetensors", size=(64, 192), epochs=1, batch=2, dataset=frames,
                      progress=False)
    zoo.write_shipped_seg_teacher(SEG, work / "seg.safetensors", {"command": "test", "world": world}, root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zoo, "models_dir", lambda: root)
        yield root


@pytest.fixture(scope="module")
def quickstart(models, tmp_path_factory):
    from tests.conftest import quick_pairing

    import dataclasses

    import torch

    from donna_nas.tasks.depth import train

    out = tmp_path_factory.mktemp("qs")
    threads_seen, real = [], train.train_depth

    def recording(cfg, run, *a, **k):  # the torch threads each depth training runs on
        threads_seen.append((run.name, torch.get_num_threads()))
        return real(cfg, run, *a, **k)

    before = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        quick_pairing(mp)
        mp.setattr(train, "train_depth", recording)
        # final_threads only says how the final finetune runs: the tests below resume with tiny()
        result = run_quickstart(out, dataclasses.replace(QuickstartConfig.tiny(), final_threads=before + 1),
                                progress=False)
    result["threads"] = {"seen": threads_seen, "before": before, "after": torch.get_num_threads()}
    return out, result


def test_quickstart_writes_every_artifact(quickstart):
    out, result = quickstart
    for rel in ("report.md", "quickstart_table.csv", "plots/pareto.png", "plots/depth_searched.png",
                "plots/depth_teacher.png", "supernet/selected.json", "supernet/predictor.json",
                "supernet/tables/block_quality.csv", "supernet/tables/latency_ort_int8.csv",
                "teacher/export/model.onnx", "teacher/export/model_int8.onnx",
                "searched/export/model.onnx", "searched/export/model_int8.onnx"):
        assert (out / rel).is_file(), rel
    assert not (out / "table.csv").exists()  # replaced by quickstart_table.csv
    # the finetuned model is the architecture the search selected
    selected = json.loads((out / "supernet" / "selected.json").read_text())
    model = json.loads((out / "searched" / "model.json").read_text())
    assert model["backbone"] == selected["arch"]
    report = (out / "report.md").read_text()
    assert selected["arch"] in report and "plots/pareto.png" in report


def test_quickstart_table_has_its_rows_and_columns(quickstart):
    out, result = quickstart
    with (out / "quickstart_table.csv").open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == TABLE_COLUMNS
        rows = list(reader)
    assert tuple(r["model"] for r in rows) == ROWS == ("teacher", "searched", "constant", "prior")
    teacher, searched, constant, prior = rows
    for r in (teacher, searched):
        for k in TABLE_COLUMNS[1:]:
            assert float(r[k]) > 0, (r["model"], k)
    assert int(searched["params"]) < int(teacher["params"])
    for r in (constant, prior):  # baselines: no size, speed or INT8 version
        assert r["params"] == r["fps_fp32"] == r["fps_int8"] == r["sq_rel_int8"] == ""
        assert float(r["sq_rel_fp32"]) > 0 and float(r["abs_rel_fp32"]) > 0 and 0 <= float(r["a1"]) <= 1
    assert float(teacher["a1"]) == pytest.approx(result["rows"][0]["a1_fp32"])
    # report.md: the same table, and for each model whether it beats each baseline
    report = (out / "report.md").read_text()
    assert "| model | params (encoder + decoder) | FPS fp32 | FPS int8 | Sq Rel fp32 | Sq Rel int8 | abs_rel fp32 | δ<1.25 fp32 |" in report
    for r in result["rows"]:
        assert f"| {r['label']} |" in report
    for r in result["rows"][:2]:
        verdicts = [line for line in report.splitlines() if line.startswith(f"- {r['label']}")
                    or line.startswith(f"- **{r['label']} does not beat")]
        assert len(verdicts) == 1, r["label"]


def test_teacher_row_is_the_shipped_model_without_teacher_training(quickstart):
    from safetensors.torch import load_file

    from donna_nas.tasks.depth.run import load_model_weights

    out, result = quickstart
    m = zoo.resolve_model(TEACHER, kind="depth")
    assert not (out / "seg_teacher.safetensors").exists() and not (out / "teacher" / "checkpoints").exists()
    assert list(result["timings"]) == stage_names(QuickstartConfig.tiny())
    assert not any("segmentation teacher" in k or "depth teacher" in k for k in result["timings"])
    info = json.loads((out / "teacher" / "model.json").read_text())
    assert info["shipped"] == TEACHER and info["sha256"] == m.card["sha256"]
    exported = json.loads((out / "teacher" / "export" / "export.json").read_text())
    assert exported["params"] == m.card["params"] == result["rows"][0]["params"]
    assert TEACHER in result["rows"][0]["label"] and TEACHER in (out / "report.md").read_text()
    shipped, _ = load_model_weights(TEACHER)
    got = load_file(str(out / "teacher" / "model.safetensors"))
    assert got.keys() == shipped.keys() and all(got[k].equal(shipped[k]) for k in got)
    # the world of the shipped teacher's card (size, seed, version), at the tiny drive/frame counts
    synth = json.loads((out / "data" / "synth.json").read_text())["args"]
    w = m.card["world"]
    assert synth["size"] == w["size"] == [64, 192] and synth["seed"] == w["seed"]
    assert synth["format_version"] == w["version"]
    # the search and the final finetune distil from the shipped teacher, X-Distill from the shipped segnet
    import yaml

    assert json.loads((out / "supernet" / "teacher.json").read_text())["shipped"] == TEACHER
    ft = yaml.safe_load((out / "searched" / "config.yaml").read_text())
    assert ft["distill_from"] == TEACHER and ft["distill_weight"] == 1.0
    assert ft["xdistill"] and ft["seg_teacher"] == SEG
    assert ft["xdistill_scales"] == list(QuickstartConfig.final_xdistill_scales) == [0]  # the full-resolution map
    # the materialised teacher records the pose net it was trained with; the final finetune the default
    recipe = yaml.safe_load((out / "teacher" / "config.yaml").read_text())
    assert (recipe["pose_batch_pairs"], recipe["pose_downsample"]) == (False, 1)
    assert ft["pose_downsample"] == 2


def test_quickstart_resumes_without_redoing_work(quickstart):
    out, result = quickstart
    t0 = time.time()
    again = run_quickstart(out, QuickstartConfig.tiny(), progress=False)
    assert time.time() - t0 < 30
    assert again["rows"] == result["rows"]


def test_a_resume_may_change_the_worker_count_but_not_below_one(quickstart):
    """Workers say how the jobs run, not what they compute: no "other settings" refusal."""
    import dataclasses

    out, result = quickstart
    again = run_quickstart(out, dataclasses.replace(QuickstartConfig.tiny(), workers=2), progress=False)
    assert again["rows"] == result["rows"]
    assert json.loads((out / "quickstart.json").read_text())["workers"] == 1  # the first run's record stays
    with pytest.raises(UserError, match="--workers 0: must be at least 1"):
        dataclasses.replace(QuickstartConfig.tiny(), workers=0).resolved()


def test_final_finetune_runs_on_final_threads_then_restores_the_count(quickstart):
    """The final finetune, alone on the machine, takes --final-threads; the stages after it
    (exports, ORT timing) are back on the process's own count."""
    out, result = quickstart
    th = result["threads"]
    assert ("searched", th["before"] + 1) in th["seen"]
    assert th["after"] == th["before"]
    assert f"final finetune on {th['before'] + 1} torch thread(s) (--final-threads" in (out / "report.md").read_text()
    assert json.loads((out / "final_threads.json").read_text())["threads"] == th["before"] + 1
    with pytest.raises(UserError, match="--final-threads 0: must be at least 1"):
        dataclasses.replace(QuickstartConfig.tiny(), final_threads=0).resolved()


def test_final_finetune_takes_fewer_threads_when_other_processes_hold_the_cores(monkeypatch):
    """By default as many threads as workers, unless another process keeps a core busy as the
    finetune starts; an explicit --final-threads is taken as given."""
    import donna_nas.quickstart as qs

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    cfg = QuickstartConfig.small()
    assert cfg.final_threads is None and cfg.workers == 2
    monkeypatch.setattr(qs, "cores_busy_elsewhere", lambda s: 0.05)
    assert qs.final_finetune_threads(cfg)[0] == 2
    monkeypatch.setattr(qs, "cores_busy_elsewhere", lambda s: 1.0)
    n, why = qs.final_finetune_threads(cfg)
    assert n == 1 and "1.0 cores busy" in why
    assert qs.final_finetune_threads(dataclasses.replace(cfg, final_threads=2)) == (2, "--final-threads")
    monkeypatch.setattr(qs, "cores_busy_elsewhere", lambda s: None)  # no /proc/stat
    assert qs.final_finetune_threads(cfg)[0] == 2


def test_quickstart_refuses_other_settings_in_same_folder(quickstart):
    out, _ = quickstart
    with pytest.raises(UserError, match="other settings") as ei:
        run_quickstart(out, QuickstartConfig.small(), progress=False)
    # the message names the settings that differ (tiny and small differ in their stage sizes)
    assert "bkd_steps:" in str(ei.value) and " there, " in str(ei.value) and "\n" not in str(ei.value)


def test_default_world_comes_from_the_teacher_card(models):
    cfg = QuickstartConfig.small().resolved()
    w = zoo.resolve_model(TEACHER).card["world"]
    assert (cfg.size, cfg.drives, cfg.frames, cfg.world_seed, cfg.world_version) == \
        (tuple(w["size"]), w["drives"], w["frames"], w["seed"], w["version"])
    with pytest.raises(UserError, match="trained at 64x192"):
        QuickstartConfig(size=(96, 320)).resolved()


def test_train_teacher_keeps_the_path_that_trains_both_teachers():
    """No shipped model needed: the segmentation and depth teachers are trained stages."""
    for cfg in (QuickstartConfig.small(train_teacher=True), QuickstartConfig.tiny(train_teacher=True)):
        r = cfg.resolved()
        names = stage_names(r)
        assert names[1:3] == ["segmentation teacher", "resnet18 depth teacher (X-Distill)"]
        assert not any(n.startswith("shipped") for n in names) and r.teacher_backbone() == "resnet18"
    assert QuickstartConfig.small(train_teacher=True).resolved().size == (96, 320)
    assert QuickstartConfig.tiny(train_teacher=True).resolved().size == (64, 192)
    with pytest.raises(UserError, match="--train-teacher trains resnet18 or resnet50"):
        QuickstartConfig(train_teacher=True).resolved()


def test_unknown_teacher_is_one_line_listing_the_shipped_models(models, tmp_path, capsys):
    from tests.test_cli_failures import assert_one_line, run_cli

    code, out, err = run_cli(["quickstart", "--tiny", "--teacher", "synth-resnet99", "--out", tmp_path / "qs"],
                             capsys)
    assert_one_line(code, out, err, "synth-resnet99", TEACHER)
    assert not (tmp_path / "qs" / "quickstart.json").exists()
    code, out, err = run_cli(["quickstart", "--tiny", "--train-teacher", "--teacher", TEACHER,
                              "--out", tmp_path / "qs2"], capsys)
    assert_one_line(code, out, err, "--train-teacher trains resnet18 or resnet50")
