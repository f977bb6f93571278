"""CLI defaults come from the config dataclasses: an option that mirrors a config field defaults to
None ("the config's default"), its --help shows the config's value, and a command passes on only
the options the user gave."""

import dataclasses
import inspect
import os
import subprocess
import sys

import pytest
import typer

from donna_nas.cli import classify as classify_cli
from donna_nas.cli import depth as depth_cli
from donna_nas.cli import supernet as supernet_cli
from donna_nas.cli.common import default_of, with_default

DEPTH = "donna_nas.tasks.depth.run:DepthConfig"
CLASSIFY = "donna_nas.tasks.classify.train:ClassifyConfig"
SUPERNET = "donna_nas.distill.pipeline:SupernetConfig"
SEG = "donna_nas.tasks.depth.seg_teacher:train_seg_teacher"


def _defaults(ref):
    """The real defaults of a config dataclass's fields, or of a function's parameters."""
    import importlib

    module, _, name = ref.partition(":")
    obj = getattr(importlib.import_module(module), name)
    if dataclasses.is_dataclass(obj):
        return {f.name: f.default for f in dataclasses.fields(obj) if f.default is not dataclasses.MISSING}
    return {p.name: p.default for p in inspect.signature(obj).parameters.values()
            if p.default is not inspect.Parameter.empty}


def _options(fn):
    """name → typer OptionInfo of a command function."""
    return {n: p.default for n, p in inspect.signature(fn).parameters.items()
            if isinstance(p.default, typer.models.OptionInfo)}


# command → the configs it builds, and options mirroring config fields under another name
COMMANDS = {
    "finetune": (depth_cli.finetune, (DEPTH, CLASSIFY), ("size",)),
    "train-seg-teacher": (depth_cli.train_seg_teacher_cmd, (SEG,), ()),
    "build-supernet": (supernet_cli.build_supernet_cmd, (SUPERNET,), ("size",)),
    "train-classifier": (classify_cli.train_classifier_cmd, (CLASSIFY,), ("size",)),
}


@pytest.mark.parametrize("ref", [DEPTH, CLASSIFY, SUPERNET, SEG])
def test_defaults_read_from_source_match_the_configs(ref):
    """default_of reads the source (no torch at CLI start-up); it must agree with the real config."""
    for name, value in _defaults(ref).items():
        if value is None or isinstance(value, (bool, int, float, str, tuple)):
            assert default_of(ref, name) == value, (ref, name)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_options_that_mirror_a_config_field_default_to_none(command):
    fn, refs, extra = COMMANDS[command]
    fields = set(extra).union(*(_defaults(ref) for ref in refs))
    mirrored = {n: o for n, o in _options(fn).items() if n in fields}
    assert mirrored, command
    written_twice = {n: o.default for n, o in mirrored.items() if o.default is not None}
    assert written_twice == {}, f"{command}: defaults written again in the CLI: {written_twice}"


def test_finetune_has_no_parameter_source_special_case():
    assert "get_parameter_source" not in inspect.getsource(depth_cli)
    assert "ctx" not in inspect.signature(depth_cli.finetune).parameters


def _help(*args):
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "donna_nas", *args, "--help"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return " ".join(r.stdout.split())


def test_finetune_help_shows_the_configs_defaults():
    text = _help("finetune")
    d, c = _defaults(DEPTH), _defaults(CLASSIFY)
    assert f"[default: {d['batch']}; classify: {c['batch']}]" in text
    assert f"[default: {d['lr']}; classify: {c['lr']}]" in text
    assert "[default: 12; classify: 64]" in text and "[default: 0.0001; classify: 0.002]" in text
    assert f"[default: {d['height']}x{d['width']}]" in text
    assert "\\[" not in text  # the escape of rich markup does not show


def test_other_commands_help_show_the_configs_defaults():
    assert "--batch <int> [default: 8]" in _help("train-seg-teacher")
    assert "--size <str> Training size HxW. [default: 96x320]" in _help("train-seg-teacher")
    assert f"[default: {_defaults(SUPERNET)['bkd_steps']}]" in _help("build-supernet")
    assert f"--kd-weight <float> Weight of the KD term (1 - w on cross-entropy). [default: " \
           f"{_defaults(CLASSIFY)['kd_weight']}]" in _help("train-classifier")


def test_with_default_is_plain_text_without_rich(monkeypatch):
    import typer.core

    monkeypatch.setattr(typer.core, "DEFAULT_MARKUP_MODE", None)
    assert with_default("Batch.", 12) == "Batch. [default: 12]"
    assert with_default("", (96, 320)) == "[default: 96x320]"


def _invoke(args, monkeypatch, target, name):
    """Run ``donna-nas ARGS`` through typer's CliRunner with ``target.name`` replaced; its kwargs."""
    from typer.testing import CliRunner

    from donna_nas.cli import _register, app

    seen = {}
    monkeypatch.setattr(target, name, lambda *a, **kw: seen.update(kw, _args=a) or {"step": 0})
    _register()
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, (r.output, r.exception)
    return seen


def test_finetune_classify_passes_only_the_given_options(monkeypatch, tmp_path):
    seen = _invoke(["finetune", "--task", "classify", "--data", tmp_path, "--out", tmp_path / "run",
                    "--batch", "7", "--no-eval"], monkeypatch, classify_cli, "run_classify")
    options = {k: v for k, v in seen.items() if k not in ("_args", "data", "out", "resume", "evaluate", "export")}
    assert options == {"batch": 7}, options
    assert seen["evaluate"] is False and seen["resume"] is False and seen["export"] is False


def test_run_classify_takes_classify_config_defaults(monkeypatch, tmp_path):
    """Options left out take ClassifyConfig's defaults (not depth's); no teacher means no KD."""
    from donna_nas.tasks.classify import train

    cfgs = []
    monkeypatch.setattr(train, "train_classifier", lambda cfg, out, **kw: cfgs.append(cfg) or
                        {"step": 0, "seconds": 0})
    classify_cli.run_classify(data=tmp_path, out=tmp_path / "run", size="16x16", evaluate=False, lr=None,
                              epochs=3)
    (cfg,) = cfgs
    expect = train.ClassifyConfig(data=str(tmp_path), height=16, width=16, epochs=3, kd_weight=0.0)
    assert cfg == expect


def test_finetune_depth_builds_depth_config_from_the_given_options(monkeypatch, tmp_path):
    from donna_nas.tasks.depth import run, train

    cfgs = []
    monkeypatch.setattr(train, "train_depth", lambda cfg, out, **kw: cfgs.append(cfg) or {"step": 0})
    _invoke(["finetune", "--data", tmp_path, "--out", tmp_path / "run", "--lr", "0.5", "--size", "64x192",
             "--xdistill", "--seg-teacher", "labels", "--pose-per-pair", "--pose-downsample", "2", "--no-eval"], monkeypatch, depth_cli, "_finish")
    (cfg,) = cfgs
    assert cfg == run.DepthConfig(data=str(tmp_path), lr=0.5, height=64, width=192, xdistill=True,
                                  seg_teacher="labels", pose_batch_pairs=False, pose_downsample=2)


def test_build_supernet_builds_supernet_config_from_the_given_options(monkeypatch, tmp_path):
    from donna_nas.distill import pipeline

    seen = {}

    class Res:
        quality, evaluation, predictor = [], [], None

    monkeypatch.setattr(pipeline, "build_supernet", lambda sp, out, cfg, **kw: seen.update(cfg=cfg) or Res())
    from typer.testing import CliRunner

    from donna_nas.cli import _register, app

    _register()
    r = CliRunner().invoke(app, ["build-supernet", "--space", "tiny", "--out", str(tmp_path / "b"),
                                 "--bkd-steps", "3"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert seen["cfg"] == pipeline.SupernetConfig(bkd_steps=3)


def test_train_seg_teacher_passes_only_the_given_options(monkeypatch, tmp_path):
    from donna_nas.tasks.depth import seg_teacher

    seen = {}
    monkeypatch.setattr(seg_teacher, "train_seg_teacher",
                        lambda *a, **kw: seen.update(kw) or {"last_epoch_pixel_acc": 0.0, "seconds": 0})
    from typer.testing import CliRunner

    from donna_nas.cli import _register, app

    _register()
    r = CliRunner().invoke(app, ["train-seg-teacher", "--data", str(tmp_path), "--out", str(tmp_path / "t.safetensors"),
                                 "--size", "32x64", "--lr", "0.01"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert seen == {"size": (32, 64), "lr": 0.01}
