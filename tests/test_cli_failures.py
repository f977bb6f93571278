"""Failures of the machine around a command (a file in the way, a read-only or full disk, a torn
checkpoint, a truncated image, out of memory) are one line naming the file and the fix, exit 2,
no traceback; what was written before the failure is kept."""

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY_ARCH as ARCH



def run_cli(args, capsys):
    """(exit code, stdout, stderr) of ``donna-nas ARGS`` run in this process."""
    from donna_nas.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as ei:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return ei.value.code or 0, out, err


def assert_one_line(code, out, err, *needles):
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def world(synth_world):
    return synth_world  # conftest: 3 drives x 8 frames at 64x192, seed 0


def finetune_args(world, out, *extra):
    return ["finetune", "--data", world, "--out", out, "--size", "64x192", "--backbone", ARCH, "--space", "tiny",
            "--epochs", "1", "--batch", "2", "--checkpoint-every", "1", "--no-eval", *extra]


@pytest.fixture(scope="module")
def one_step_run(world, tmp_path_factory):
    """A finished one-step run: one checkpoint (no prev.safetensors) and a model."""
    from donna_nas.cli import main

    run = tmp_path_factory.mktemp("r") / "run"
    with pytest.raises(SystemExit) as ei:
        main([str(a) for a in finetune_args(world, run, "--max-steps", "1")])
    assert (ei.value.code or 0) == 0
    assert not (run / "checkpoints" / "prev.safetensors").exists()
    return run


@pytest.mark.parametrize("args", [
    ["data", "synth", "--drives", "3", "--frames", "3", "--size", "64x192"],
    ["data", "digits"],
    ["finetune", "--data", "WORLD"],
    ["build-supernet", "--space", "tiny"],
    ["quickstart", "--tiny"],
    ["latency", "export-blocks", "--space", "tiny"],
    ["train-classifier", "--data", "WORLD"],
], ids=lambda a: " ".join(a[:2]))
def test_out_is_a_file(args, world, tmp_path, capsys):
    f = tmp_path / "a_file"
    f.write_text("keep me")
    args = [world if a == "WORLD" else a for a in args]
    code, out, err = run_cli([*args, "--out", f], capsys)
    assert_one_line(code, out, err, f, "--out", "is a file")
    assert f.read_text() == "keep me"


def test_out_below_a_file(world, tmp_path, capsys):
    f = tmp_path / "a_file"
    f.write_text("")
    code, out, err = run_cli(finetune_args(world, f / "run"), capsys)
    assert_one_line(code, out, err, f, "is a file")


@pytest.mark.parametrize("err_no, words", [
    (errno.EROFS, "read-only"),
    (errno.EACCES, "fix its permissions"),
    (errno.ENOSPC, "free space"),
])
def test_os_errors_on_write_are_one_line(err_no, words, world, tmp_path, monkeypatch, capsys):
    """A read-only folder (simulated: tests run as root, where chmod does not stop writes) or a
    full disk when the run's first file is written."""
    import donna_nas.runtime.io as rio

    def refuse(prefix="", suffix="", dir=None, **kw):
        raise OSError(err_no, os.strerror(err_no), str(Path(dir) / f"{prefix}XXXX{suffix}"))

    monkeypatch.setattr(rio.tempfile, "mkstemp", refuse)
    code, out, err = run_cli(finetune_args(world, tmp_path / "run"), capsys)
    line = assert_one_line(code, out, err, tmp_path / "run", os.strerror(err_no), words)
    assert "config.yaml" in line


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(world, tmp_path, monkeypatch, capsys):
    import donna_nas.tasks.depth.run as run_mod

    real, calls = run_mod.save_file, []

    def save_file(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # what safetensors raises on a full disk, after a partial write
            from safetensors import SafetensorError

            with open(path, "wb") as f:
                f.write(b"\0" * 100)
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(run_mod, "save_file", save_file)
    run = tmp_path / "run"
    code, out, err = run_cli(finetune_args(world, run, "--max-steps", "3"), capsys)
    assert_one_line(code, out, err, "checkpoints/last.safetensors", "No space left on device", "--resume")
    ck = run / "checkpoints"
    assert json.loads((ck / "last.json").read_text())["step"] == 1  # step 1 is kept, intact
    assert not list(ck.glob(".*.tmp"))  # the torn temp file is gone
    monkeypatch.setattr(run_mod, "save_file", real)
    code, out, err = run_cli(["finetune", "--resume", "--out", run, "--no-eval", "--max-steps", "3"], capsys)
    assert code == 0, err
    assert json.loads((ck / "last.json").read_text())["step"] == 3


def test_truncated_checkpoint_without_previous(one_step_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(one_step_run, run)
    ck = run / "checkpoints" / "last.safetensors"
    ck.write_bytes(ck.read_bytes()[:1000])
    code, out, err = run_cli(["finetune", "--resume", "--out", run, "--no-eval"], capsys)
    assert_one_line(code, out, err, ck, "truncated", "no older checkpoint")


def test_truncated_model_given_to_export(one_step_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(one_step_run, run)
    m = run / "model.safetensors"
    m.write_bytes(m.read_bytes()[:5000])
    code, out, err = run_cli(["export", run], capsys)
    assert_one_line(code, out, err, m, "truncated", "finetune --resume")
    assert not (run / "export").exists()


def test_export_at_an_untrained_size_needs_force(one_step_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(one_step_run, run)
    code, out, err = run_cli(["export", run, "--size", "96x320"], capsys)
    assert_one_line(code, out, err, "--size 96x320", "64x192", "--force")


def test_truncated_png(world, tmp_path, capsys):
    data = tmp_path / "world"
    shutil.copytree(world, data)
    pngs = sorted(data.glob("*/*/image_0[23]/data/*.png"))
    assert pngs
    for p in pngs:
        p.write_bytes(p.read_bytes()[:300])
    code, out, err = run_cli(finetune_args(data, tmp_path / "run"), capsys)
    line = assert_one_line(code, out, err, ".png", "cannot read the image")
    assert any(str(p) in line for p in pngs)


def test_out_of_memory_hints_at_batch(world, tmp_path, monkeypatch, capsys):
    import donna_nas.tasks.depth.train as train

    def oom(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                           "you tried to allocate 98304000000 bytes.")

    monkeypatch.setattr(train, "train_depth", oom)
    code, out, err = run_cli(finetune_args(world, tmp_path / "run"), capsys)
    assert_one_line(code, out, err, "out of memory", "lower --batch")


def test_resume_with_other_data_is_refused(one_step_run, world, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(one_step_run, run)
    other = tmp_path / "other"
    other.mkdir()
    code, out, err = run_cli(["finetune", "--resume", "--out", run, "--data", other, "--no-eval"], capsys)
    assert_one_line(code, out, err, other, str(world.resolve()), "drop --data")
    # the same data given with --resume (even as a relative path) is accepted
    monkeypatch.chdir(world.parent)
    code, out, err = run_cli(["finetune", "--resume", "--out", run, "--data", world.name, "--no-eval"], capsys)
    assert code == 0, err


def test_build_supernet_resume_with_other_teacher_weights_is_refused(tmp_path, capsys):
    import yaml

    out = tmp_path / "sn"
    out.mkdir()
    w = tmp_path / "teacher.pth"
    w.write_bytes(b"")
    (out / "config.yaml").write_text(yaml.safe_dump({"teacher": "resnet18", "teacher_weights": str(w)}))
    other = tmp_path / "other.pth"
    other.write_bytes(b"")
    code, out_, err = run_cli(["build-supernet", "--space", "tiny", "--out", out, "--resume",
                               "--teacher-weights", other], capsys)
    assert_one_line(code, out_, err, "--teacher-weights", other, str(w))


@pytest.mark.parametrize("value, message", [("a", "comma-separated integers"), ("0,7", "trained scales 0,1,2,3")])
def test_bad_xdistill_scales_is_one_line(world, tmp_path, capsys, value, message):
    code, out, err = run_cli(finetune_args(world, tmp_path / "run", "--xdistill", "--seg-teacher", "labels",
                                           "--xdistill-scales", value), capsys)
    assert_one_line(code, out, err, f"--xdistill-scales {value}", message)
    assert not (tmp_path / "run" / "checkpoints").exists()
