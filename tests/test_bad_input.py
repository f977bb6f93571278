"""Hand-edited, damaged or mistyped inputs stop with one line naming the file, the field and the fix
(exit 2), before a wrong value reaches numpy or PyTorch as a traceback."""

import json
import zipfile

import numpy as np
import pytest
import yaml

from donna_nas.errors import UserError
from tests.conftest import TINY_ARCH as ARCH
from tests.test_cli_failures import assert_one_line, run_cli

BINARY = b"\xff\xfe\x00\x81garbage\x00"


def _each_refused(path, cases, call):
    """For each (file content, message pattern): write it to ``path``; ``call()`` must refuse it so."""
    for text, match in cases:
        path.write_text(text)
        with pytest.raises(UserError, match=match):
            call()


# ------------------------------------------------------------------ text that is not UTF-8
def test_binary_latency_table_is_one_line(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_bytes(BINARY)
    code, out, err = run_cli(["latency", "lookup", "--space", "tiny", "--table", table, "--arch", ARCH], capsys)
    assert_one_line(code, out, err, table, "not UTF-8", "CSV")


def test_binary_space_file_is_one_line(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_bytes(BINARY)
    code, out, err = run_cli(["space", "validate", f], capsys)
    assert_one_line(code, out, err, f, "not UTF-8")


def test_binary_predictor_and_model_json_name_their_file(tmp_path):
    from donna_nas.search.objectives import LinearBlockPredictor
    from donna_nas.tasks.depth.run import load_model

    p = tmp_path / "predictor.json"
    p.write_bytes(BINARY)
    with pytest.raises(UserError, match="predictor.json: not UTF-8"):
        LinearBlockPredictor.from_json(p)
    (tmp_path / "model.json").write_bytes(BINARY)
    with pytest.raises(UserError, match="model.json: not UTF-8"):
        load_model(tmp_path)


# ------------------------------------------------------------------ a run's config.yaml
def _run_with_config(tmp_path, **changes):
    from donna_nas.tasks.depth.run import DepthConfig, save_config

    run = tmp_path / "run"
    run.mkdir()
    save_config(run, DepthConfig(data="d", height=64, width=192))
    path = run / "config.yaml"
    obj = yaml.safe_load(path.read_text())
    obj.update(changes)
    path.write_text(yaml.safe_dump(obj))
    return run


@pytest.mark.parametrize("field, value, words", [
    ("batch", "two", "'batch' is 'two'; expected an integer"),
    ("epochs", 2.5, "'epochs' is 2.5; expected an integer"),
    ("scales", 5, "'scales' is 5; expected a list of an integer"),
    ("frame_ids", 7, "'frame_ids' is 7"),
    ("automask", "yes", "expected true or false"),
    ("lr", "fast", "'lr' is 'fast'; expected a finite number"),
    ("lr", float("nan"), "expected a finite number"),
    ("xdistill_weight", "x", "'xdistill_weight'"),
])
def test_config_yaml_field_of_the_wrong_type_names_file_and_field(tmp_path, field, value, words):
    from donna_nas.tasks.depth.run import load_config

    run = _run_with_config(tmp_path, **{field: value})
    with pytest.raises(UserError) as ei:
        load_config(run)
    msg = str(ei.value)
    assert str(run / "config.yaml") in msg and words in msg and "\n" not in msg


@pytest.mark.parametrize("field, value, words", [
    ("min_depth", -1.0, "min_depth -1.0"),
    ("lr", -1.0, "--lr -1.0"),
    ("workers", -1, "--workers -1"),
    ("checkpoint_every", 0, "checkpoint_every 0"),
    ("max_steps", -1, "--max-steps -1"),
])
def test_config_yaml_value_out_of_range_names_the_file(tmp_path, field, value, words):
    from donna_nas.tasks.depth.run import load_config

    run = _run_with_config(tmp_path, **{field: value})
    with pytest.raises(UserError) as ei:
        load_config(run)
    assert str(run / "config.yaml") in str(ei.value) and words in str(ei.value)


def test_config_yaml_numbers_yaml_reads_as_text_still_load(tmp_path):
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; a float field takes it as the number it reads."""
    from donna_nas.tasks.depth.run import load_config

    run = _run_with_config(tmp_path)
    path = run / "config.yaml"
    path.write_text(path.read_text().replace("lr: 0.0001", "lr: 1e-4"))
    assert yaml.safe_load(path.read_text())["lr"] == "1e-4"
    assert load_config(run).lr == 1e-4


def test_empty_or_non_mapping_config_yaml(tmp_path):
    from donna_nas.tasks.depth.run import load_config

    run = _run_with_config(tmp_path)
    _each_refused(run / "config.yaml", [("", "config.yaml: empty"),
                                        ("- 1\n- 2\n", "expected a mapping of settings, found list")],
                  lambda: load_config(run))


def test_cli_flags_out_of_range_refused_before_anything_is_written(tmp_path, synth_world, capsys):
    out = tmp_path / "ft"
    base = ["finetune", "--data", synth_world, "--out", out, "--size", "64x192", "--backbone", ARCH,
            "--space", "tiny", "--epochs", "1", "--batch", "2", "--no-eval"]
    for extra, words in ((["--lr", "nan"], "--lr nan"), (["--workers", "-1"], "--workers -1"),
                         (["--max-steps", "-1"], "--max-steps -1")):
        code, o, e = run_cli(base + extra, capsys)
        assert_one_line(code, o, e, words)
        assert not (out / "config.yaml").exists()


# ------------------------------------------------------------------ model.json, search space, predictor
@pytest.mark.parametrize("info, words", [
    ([1, 2], "expected a JSON object"),
    ({"backbone": ARCH, "space": "tiny", "act": "elu", "height": "abc", "width": 192}, "field 'height' is 'abc'"),
    ({"backbone": 7, "act": "elu", "height": 64, "width": 192}, "field 'backbone' is 7"),
    ({"backbone": "b1:nonsense", "space": "tiny", "act": "elu", "height": 64, "width": 192}, "field 'backbone'"),
])
def test_bad_model_json_names_the_field(tmp_path, info, words):
    from donna_nas.tasks.depth.run import load_model

    (tmp_path / "model.json").write_text(json.dumps(info))
    with pytest.raises(UserError) as ei:
        load_model(tmp_path)
    assert "model.json" in str(ei.value) and words in str(ei.value)


@pytest.mark.parametrize("patch, words", [
    ({"in_channels": "three"}, "field 'in_channels' is 'three'"),
    ({"in_channels": -3}, "field 'in_channels' is -3"),
    ({"stem": {"channels": "abc"}}, "field 'stem.channels' is 'abc'"),
    ({"stem": {"channels": 16, "kernel": 0}}, "field 'stem.kernel' is 0"),
    ({"input_size": [64]}, "field 'input_size'"),
])
def test_space_fields_of_the_wrong_type(tmp_path, patch, words):
    from donna_nas.space import load_space
    from donna_nas.space.space import SearchSpace

    obj = yaml.safe_load(load_space("tiny").to_yaml())
    obj.update(patch)
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(obj))
    with pytest.raises(UserError) as ei:
        SearchSpace.from_yaml(f)
    assert str(f) in str(ei.value) and words in str(ei.value)


def test_predictor_with_an_infinite_coefficient_is_refused(tmp_path):
    from donna_nas.search.objectives import LinearBlockPredictor

    p = tmp_path / "predictor.json"
    p.write_text('{"kind": "linear_block", "intercept": 1.0, "terms": {"b1": {"x": Infinity}}}')
    with pytest.raises(UserError, match="NaN or infinite coefficient .block b1"):
        LinearBlockPredictor.from_json(p)


# ------------------------------------------------------------------ ground truth and evaluate
@pytest.mark.parametrize("kind", ["npy", "text", "truncated"])
def test_gt_file_that_is_not_an_npz(tmp_path, kind):
    from donna_nas.data.gt import load_gt_depths

    f = tmp_path / "gt.npz"
    if kind == "npy":
        np.save(tmp_path / "a.npy", np.ones((2, 4, 4)))
        (tmp_path / "a.npy").rename(f)
    elif kind == "text":
        f.write_text("depth,1\n")
    else:
        with zipfile.ZipFile(f, "w") as z:
            z.writestr("depth_00000.npy", b"\x93NUMPY" + b"\x00" * 200)
        f.write_bytes(f.read_bytes()[:60])
    with pytest.raises(UserError) as ei:
        load_gt_depths(f)
    msg = str(ei.value)
    assert str(f) in msg and "export-gt" in msg and "allow-pickle" not in msg


def test_evaluate_pair_options_refused_with_a_run_and_ranges_checked(tmp_path, capsys):
    np.save(tmp_path / "p.npy", np.ones((1, 4, 4), np.float32))
    code, out, err = run_cli(["evaluate", tmp_path, "--crop", "none"], capsys)
    assert_one_line(code, out, err, "--crop apply to --pred/--gt only")
    for extra, words in ((["--min-depth", "-1"], "--min-depth -1.0"), (["--scale-factor", "0"], "--scale-factor 0.0")):
        code, out, err = run_cli(["evaluate", "--pred", tmp_path / "p.npy", "--gt", tmp_path / "gt.npz", *extra], capsys)
        assert_one_line(code, out, err, words)


# ------------------------------------------------------------------ OS errors and one-line messages
def test_a_short_write_without_errno_becomes_disk_full_naming_the_file(tmp_path):
    import errno

    from donna_nas.runtime.io import atomic_path

    target = tmp_path / "scan.bin"
    with pytest.raises(OSError) as ei:
        with atomic_path(target):
            raise OSError("140824 requested and 41984 written")  # numpy's tofile on a full disk
    assert ei.value.errno == errno.ENOSPC and ei.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone, nothing half-written


def test_unreadable_weights_file_is_one_line(tmp_path, capsys, synth_world):
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"PK\x03\x04 not a zip at all" * 10)
    code, out, err = run_cli(["finetune", "--data", synth_world, "--out", tmp_path / "ft", "--size", "64x192",
                              "--backbone", "resnet18", "--weights", bad, "--epochs", "1", "--batch", "2",
                              "--no-eval"], capsys)
    assert_one_line(code, out, err, bad, "cannot read as a torch state dict")


def test_latency_measure_checks_its_out_folder_before_timing(tmp_path, monkeypatch, capsys):
    import errno
    import os
    import tempfile

    import donna_nas.latency.ort as ort

    def read_only(prefix="", suffix="", dir=None, **kw):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))

    timed = []
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(ort.OrtMeasurer, "measure_ops", lambda *a, **k: timed.append(1))
    out = tmp_path / "ro" / "table.csv"
    code, o, e = run_cli(["latency", "measure", "--space", "tiny", "--size", "32x96", "--out", out], capsys)
    assert_one_line(code, o, e, out.parent, "read-only")
    assert timed == []


def test_export_of_a_file_is_not_a_run(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    code, out, err = run_cli(["export", f], capsys)
    assert_one_line(code, out, err, f, "a file, not a run directory")


def test_corrupt_teacher_json_is_named_not_reported_missing(tmp_path):
    from donna_nas.search.run import teacher_of_run

    assert teacher_of_run(tmp_path) is None  # no file: the teacher is unknown, callers ask for --teacher
    _each_refused(tmp_path / "teacher.json", [("{broken", "teacher.json: not valid JSON"),
                                              ("{}", "no 'backbone' field")], lambda: teacher_of_run(tmp_path))


def test_build_supernet_resume_of_a_missing_folder(tmp_path, capsys):
    code, out, err = run_cli(["build-supernet", "--space", "tiny", "--out", tmp_path / "nope", "--resume"], capsys)
    assert_one_line(code, out, err, tmp_path / "nope", "does not exist")


def test_a_model_with_nan_weights_is_refused_before_export(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from donna_nas.tasks.depth.run import load_model

    shipped_like = tmp_path / "run"
    shipped_like.mkdir()
    info = {"backbone": ARCH, "space": "tiny", "act": "elu", "height": 64, "width": 192}
    (shipped_like / "model.json").write_text(json.dumps(info))
    from donna_nas.tasks.depth.backbones import make_encoder
    from donna_nas.tasks.depth.networks import DepthDecoder, DepthNet

    enc = make_encoder(ARCH, "tiny", init=False)
    sd = DepthNet(enc, DepthDecoder(enc.channels, act="elu")).state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(shipped_like / "model.safetensors"))
    load_model(shipped_like)  # finite: loads
    sd = load_file(str(shipped_like / "model.safetensors"))
    first = next(k for k, v in sd.items() if v.is_floating_point())
    sd[first] = torch.full_like(sd[first], float("nan"))
    save_file(sd, str(shipped_like / "model.safetensors"))
    with pytest.raises(UserError, match="NaN or infinite values .first: " + first.replace(".", r"\.")):
        load_model(shipped_like)


@pytest.mark.parametrize("text, ok", [("mobilenet=3.5", True), ("r50=20:0.83", True), ("foo=-3", False),
                                      ("foo=0", False), ("foo=nan", False), ("foo=3:inf", False), ("foo", False)])
def test_search_reference_needs_a_positive_latency(text, ok):
    from donna_nas.cli.search import parse_reference

    if ok:
        assert parse_reference(text).latency_ms > 0
    else:
        with pytest.raises(UserError, match="--reference: expected NAME=LATENCY_MS"):
            parse_reference(text)
