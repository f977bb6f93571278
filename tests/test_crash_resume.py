"""Kill-and-resume: a run SIGKILLed at a chosen point (DONNA_NAS_KILL_AT) and resumed ends with
exactly the files of an uninterrupted run with the same seed."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_ARCH as ARCH

# 3 steps of batch 2 at 64x192, a checkpoint after each
STEPS = ["--max-steps", "3"]
FINETUNE = ["finetune", "--size", "64x192", "--backbone", ARCH, "--space", "tiny", "--epochs", "1",
            "--batch", "2", "--checkpoint-every", "1", "--no-eval", "--seed", "1", *STEPS]


def donna(args, kill_at=None, cwd=None, check=True):
    """Run ``donna-nas ARGS`` in a fresh process (one torch thread), optionally killed at a point."""
    env = dict(os.environ, OMP_NUM_THREADS="1", DONNA_NAS_LOG_EVERY="0")
    env.pop("DONNA_NAS_KILL_AT", None)
    if kill_at:
        env["DONNA_NAS_KILL_AT"] = kill_at
    p = subprocess.run([sys.executable, "-m", "donna_nas", *map(str, args)], env=env, cwd=cwd,
                       capture_output=True, text=True, timeout=600)
    if kill_at:
        assert p.returncode == -9, f"expected a SIGKILL at {kill_at}, got rc {p.returncode}: {p.stderr[-2000:]}"
    elif check:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.fixture(scope="module")
def world(synth_world):
    return synth_world  # conftest: 3 drives x 8 frames at 64x192, seed 0


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    """An uninterrupted finetune run (the result every resumed run must reproduce)."""
    run = tmp_path_factory.mktemp("ref") / "run"
    donna([*FINETUNE, "--data", world, "--out", run])
    return run


def _same_model(a: Path, b: Path) -> None:
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    la, lb = (json.loads((r / "checkpoints" / "last.json").read_text()) for r in (a, b))
    assert la["step"] == lb["step"] and la["losses"] == lb["losses"] and len(la["losses"]) == la["step"]


@pytest.mark.parametrize("kill_at, left", [
    # during the first checkpoint's write (temp file complete, not yet renamed): no checkpoint yet,
    # --resume restarts from step 0 instead of failing with "no checkpoint to resume from"
    ("write:run/checkpoints/last.safetensors", "config only"),
    # during the second checkpoint's write: resumes from the first one
    pytest.param("write:run/checkpoints/last.safetensors#2", "first checkpoint", marks=pytest.mark.slow),
    # between moving last -> prev and the new file -> last: only prev.safetensors is there
    pytest.param("rotate:run/checkpoints/last.safetensors", "prev only", marks=pytest.mark.slow),
])
def test_finetune_killed_then_resumed_equals_uninterrupted(world, reference, tmp_path, kill_at, left):
    run = tmp_path / "run"
    donna([*FINETUNE, "--data", world, "--out", run], kill_at=kill_at)
    ck = run / "checkpoints"
    temps = list(ck.glob(".last.safetensors.*.tmp"))
    assert temps, "the kill should leave the temp file of the interrupted write"
    if left == "config only":
        assert not (ck / "last.safetensors").exists() and not (ck / "prev.safetensors").exists()
    elif left == "prev only":
        assert not (ck / "last.safetensors").exists() and (ck / "prev.safetensors").is_file()
    # resume from another working directory: config.yaml holds absolute paths
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    donna(["finetune", "--resume", "--out", run.resolve(), "--no-eval", *STEPS], cwd=elsewhere)
    _same_model(run, reference)
    assert not list(ck.glob(".*.tmp")), "stale temp files are removed when the run is reopened"
    assert (ck / "prev.safetensors").is_file()


@pytest.mark.slow
def test_quickstart_killed_early_in_depth_stage_resumes_identically(tmp_path):
    """Killed right after the teacher stage wrote config.yaml (no checkpoint yet): the next run
    starts that stage over and gives the teacher of an uninterrupted run. Both runs stop when the
    supernet stage starts (a second kill point) to keep the test short."""
    stop = "write:supernet/space.yaml"
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    donna(["quickstart", "--tiny", "--train-teacher", "--out", ref], kill_at=stop)
    donna(["quickstart", "--tiny", "--train-teacher", "--out", killed], kill_at="depth-start:teacher")
    assert (killed / "teacher" / "config.yaml").is_file()
    assert not (killed / "teacher" / "checkpoints").exists()
    donna(["quickstart", "--tiny", "--train-teacher", "--out", killed], kill_at=stop)
    from safetensors.torch import load_file

    for rel in ("teacher/model.safetensors", "teacher/checkpoints/last.safetensors", "seg_teacher.safetensors"):
        a, b = load_file(ref / rel), load_file(killed / rel)  # (seg teacher metadata holds its seconds)
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), rel
    m_ref = json.loads((ref / "teacher" / "metrics.json").read_text())["metrics"]
    m_killed = json.loads((killed / "teacher" / "metrics.json").read_text())["metrics"]
    assert m_ref == m_killed


def test_truncated_last_checkpoint_falls_back_to_previous(world, reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    ck = run / "checkpoints"
    # prev holds step 2 (the reference's checkpoint before its last); tear last (step 3)
    data = (ck / "last.safetensors").read_bytes()
    (ck / "last.safetensors").write_bytes(data[: len(data) // 3])
    (run / "model.safetensors").unlink()
    p = donna(["finetune", "--resume", "--out", run, "--no-eval", *STEPS])
    assert "resuming from the previous checkpoint" in p.stderr and "prev.safetensors" in p.stderr
    _same_model(run, reference)
