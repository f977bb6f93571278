"""Runtime plumbing: file modes under umask, stale temp files, kill points, plain progress lines
off a terminal, torch threads, --version / help rendering, predictor-space checks, seeded
random teacher."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from donna_nas.errors import UserError
from donna_nas.runtime.io import atomic_path, remove_stale_temp, write_json_atomic, write_text_atomic


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def test_atomic_files_get_the_umask_mode(tmp_path, umask):
    umask(0o022)
    write_text_atomic(tmp_path / "a.txt", "x")
    write_json_atomic(tmp_path / "sub" / "b.json", {"k": 1})
    with atomic_path(tmp_path / "c.bin") as tmp:
        tmp.write_bytes(b"\0")
    for name in ("a.txt", "sub/b.json", "c.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    umask(0o077)
    write_text_atomic(tmp_path / "d.txt", "x")
    assert (tmp_path / "d.txt").stat().st_mode & 0o777 == 0o600
    umask(0o002)
    write_text_atomic(tmp_path / "a.txt", "y")  # overwriting gets the mode too
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o664


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert (tmp_path / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_stale_temp_files_are_removed(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    stale = [tmp_path / "checkpoints" / ".last.safetensors.k2j3_x9.tmp", tmp_path / ".config.yaml.abcd1234.tmp"]
    for p in stale:
        p.write_bytes(b"partial")
    keep = [tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / "checkpoints" / "last.json"]
    for p in keep:
        p.write_text("keep")
    removed = remove_stale_temp(tmp_path)
    assert sorted(removed) == sorted(stale)
    assert all(not p.exists() for p in stale) and all(p.exists() for p in keep)
    young = tmp_path / ".x.json.abcdef.tmp"
    young.write_text("")
    assert remove_stale_temp(tmp_path, min_age_s=3600) == [] and young.exists()


def test_opening_a_depth_run_removes_its_stale_temp_files(tmp_path):
    from donna_nas.tasks.depth.run import DepthConfig, load_config, save_config

    run = tmp_path / "run"
    save_config(run, DepthConfig(data=str(tmp_path)))
    (run / "checkpoints").mkdir()
    stale = run / "checkpoints" / ".last.safetensors.q1w2e3.tmp"
    stale.write_bytes(b"torn")
    cfg = load_config(run)
    assert not stale.exists()
    assert cfg.data == str(tmp_path.resolve())


def test_config_paths_are_stored_absolute(tmp_path, monkeypatch):
    from donna_nas.tasks.depth.run import DepthConfig, load_config, save_config

    (tmp_path / "data").mkdir()
    (tmp_path / "groups.yaml").write_text("{}")
    monkeypatch.chdir(tmp_path)
    save_config(tmp_path / "run", DepthConfig(data="data", groups="groups.yaml", seg_teacher="labels"))
    cfg = load_config(tmp_path / "run")
    assert cfg.data == str(tmp_path.resolve() / "data")
    assert cfg.groups == str(tmp_path.resolve() / "groups.yaml")
    assert cfg.seg_teacher == "labels" and cfg.backbone == "resnet18"  # names stay names


def test_kill_point_kills_only_at_the_named_write(tmp_path):
    code = ("from donna_nas.runtime.io import write_text_atomic as w\n"
            "import sys\n"
            "w(sys.argv[1] + '/a/x.txt', '1'); w(sys.argv[1] + '/b/x.txt', '2'); w(sys.argv[1] + '/b/x.txt', '3')\n")
    env = dict(os.environ, DONNA_NAS_KILL_AT="write:b/x.txt#2")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env)
    assert p.returncode == -9
    assert (tmp_path / "a" / "x.txt").read_text() == "1" and (tmp_path / "b" / "x.txt").read_text() == "2"
    assert len(list((tmp_path / "b").glob(".x.txt.*.tmp"))) == 1  # the interrupted write's temp file


def test_progress_logs_plain_lines_when_not_a_terminal(monkeypatch):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

    from donna_nas.runtime.progress import LoggingProgress

    monkeypatch.setenv("DONNA_NAS_LOG_EVERY", "0")
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=120)
    with LoggingProgress(TextColumn("[bold]depth[/] ep {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                         console=console, transient=True) as bar:
        t = bar.add_task("train", total=4, epoch=0)
        for i in range(4):
            bar.update(t, completed=i + 1, epoch=i // 2)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert "] depth ep 0: 1/4 (25%), 0s elapsed" in lines[0]
    assert "depth ep 1: 4/4 (100%)" in lines[-1]
    assert all("[bold]" not in ln and "━" not in ln for ln in lines)
    # with the default interval only the finished line shows in a short job
    monkeypatch.setenv("DONNA_NAS_LOG_EVERY", "30")
    buf.truncate(0), buf.seek(0)
    with LoggingProgress(console=console) as bar:
        t = bar.add_task("bkd", total=3)
        for _ in range(3):
            bar.advance(t)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1 and "bkd: 3/3 (100%)" in lines[0], lines


def test_progress_on_a_terminal_is_the_rich_bar():
    from rich.console import Console

    from donna_nas.runtime.progress import LoggingProgress

    bar = LoggingProgress(console=Console(file=io.StringIO(), force_terminal=True))
    assert not bar.disable and not bar._plain


def test_cli_log_of_a_long_job_has_progress_lines(tmp_path):
    """`donna-nas data synth > log`: the bar becomes plain lines in the log."""
    env = dict(os.environ, DONNA_NAS_LOG_EVERY="0", OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "donna_nas", "data", "synth", "--out", str(tmp_path / "w"),
                        "--drives", "3", "--frames", "3", "--size", "64x192"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    progress = [ln for ln in p.stdout.splitlines() if ln.startswith("[") and "synth" in ln]
    assert len(progress) >= 2, p.stdout
    assert "(100%)" in progress[-1]


def test_threads_default_to_one_or_omp_num_threads(monkeypatch):
    from donna_nas.runtime.threads import default_threads, set_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert default_threads() == 1 and set_threads(None) == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert default_threads() == 2 and set_threads(None) == 2
        assert set_threads(1) == 1
        assert set_threads(0) == (os.cpu_count() or 1)
        with pytest.raises(UserError, match="--threads -1"):
            set_threads(-1)
    finally:
        torch.set_num_threads(before)


def test_torch_threads_sets_then_restores_even_on_error():
    from donna_nas.runtime.threads import torch_threads

    before = torch.get_num_threads()
    with torch_threads(before + 1) as n:
        assert n == torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"):
        with torch_threads(before + 1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_cores_busy_elsewhere_reads_the_machine_from_proc_stat(tmp_path, monkeypatch):
    """Two readings of a fake /proc/stat 100 ticks apart on 2 cores, 50 of them busy (user,
    system; iowait counts as idle): one core busy, none of it this process's (it only sleeps).
    An unreadable or foreign file is None, not an error."""
    from donna_nas.runtime import threads

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 0 900 0 0 0 0 0 0\ncpu0 1 2 3 4 5\n")

    real_sleep = threads.time.sleep

    def sleep(s):  # the second reading appears while the sampler waits
        real_sleep(s)
        stat.write_text("cpu  140 0 10 945 5 0 0 0 0 0\ncpu0 1 2 3 4 5\n")

    monkeypatch.setattr(threads.time, "sleep", sleep)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert threads.cpu_times(str(stat)) == (100.0, 1000.0)
    assert threads.cores_busy_elsewhere(0.3, stat=str(stat)) == pytest.approx(1.0, abs=0.05)
    assert threads.cpu_times(str(tmp_path / "missing")) is None
    assert threads.cores_busy_elsewhere(0.01, stat=str(tmp_path / "missing")) is None
    (tmp_path / "junk").write_text("intr 1 2 3\n")
    assert threads.cpu_times(str(tmp_path / "junk")) is None


def test_threads_if_free_never_asks_for_more_threads_than_free_cores():
    from donna_nas.runtime.threads import threads_if_free

    assert threads_if_free(2, 0.1, cores=2) == 2  # idle machine: both cores
    assert threads_if_free(2, 1.0, cores=2) == 1  # one core busy elsewhere: one thread
    assert threads_if_free(2, 0.6, cores=2) == 1
    assert threads_if_free(2, 2.0, cores=2) == 1  # never below one
    assert threads_if_free(4, 1.0, cores=8) == 4
    assert threads_if_free(2, None, cores=2) == 2  # load unknown (no /proc/stat): as asked
    assert threads_if_free(1, 0.0, cores=2) == 1


def _help(args, capsys, monkeypatch):
    from donna_nas.cli import main

    monkeypatch.setenv("COLUMNS", "120")
    capsys.readouterr()
    with pytest.raises(SystemExit) as ei:
        main(list(args))
    assert (ei.value.code or 0) == 0
    return capsys.readouterr().out


def test_version_and_help_rendering(capsys, monkeypatch):
    from importlib.metadata import version

    assert _help(["--version"], capsys, monkeypatch).strip() == f"donna-nas {version('donna-nas')}"
    for cmd in (["quickstart"], ["finetune"], ["export"], ["build-supernet"], ["data", "synth"]):
        h = _help([*cmd, "--help"], capsys, monkeypatch)
        assert "--help" in h and "<bool>" not in h, h
        assert "--threads" in h or cmd in (["export"], ["data", "synth"])
    ev = _help(["evaluate", "--help"], capsys, monkeypatch)
    assert "evaluate [OPTIONS] [RUN]" in ev and "`evaluate RUN`" in ev


def test_main_registers_each_command_once(capsys, monkeypatch):
    """In-process callers run ``main`` many times: the commands are registered once, so help and
    parsing do not slow down with every call (they did, linearly, when each call re-registered)."""
    from donna_nas.cli import app

    for _ in range(3):
        _help(["--help"], capsys, monkeypatch)
    commands = [c.name or c.callback.__name__ for c in app.registered_commands]
    groups = [g.name for g in app.registered_groups]
    assert commands and len(commands) == len(set(commands)), commands
    assert groups and len(groups) == len(set(groups)), groups


def test_predictor_from_another_space_or_with_an_empty_block_is_refused():
    from donna_nas.predictor.check import check_predictor_space
    from donna_nas.space import load_space

    tiny, other = load_space("tiny"), load_space("donna_depth_lite")
    terms = {b.name: {"kernel=3": 0.1} for b in tiny.blocks}
    good = {"kind": "linear_block", "intercept": 0.0, "terms": terms, "space": "tiny",
            "space_fingerprint": tiny.fingerprint()}
    check_predictor_space(good, tiny)
    with pytest.raises(UserError, match="fitted on space 'tiny'"):
        check_predictor_space(good, other)
    empty = dict(good, terms=dict(terms, **{tiny.blocks[2].name: {}}))
    with pytest.raises(UserError, match=f"terms.{tiny.blocks[2].name} is empty"):
        check_predictor_space(empty, tiny)
    check_predictor_space(dict(empty, strict=False), tiny)


def test_random_teacher_is_seeded_from_the_config_seed(tmp_path):
    """Two builds with a random-init ResNet teacher and the same --seed cache the same teacher
    features, whatever the global RNG did before; another seed gives another teacher."""
    from donna_nas.distill.pipeline import SupernetConfig, build_supernet
    from donna_nas.space import load_space

    space = load_space("tiny")
    g = torch.Generator().manual_seed(0)
    frames = {"train": torch.rand(4, 3, 32, 64, generator=g), "val": torch.rand(2, 3, 32, 64, generator=g)}

    def taps(seed, name, disturb):
        torch.manual_seed(disturb)
        cfg = SupernetConfig(teacher="resnet18", height=32, width=64, bkd_steps=1, bkd_batch=2,
                             calib_frames=2, predictor_archs=0, predictor_test=0, task="distill", seed=seed)
        try:
            build_supernet(space, tmp_path / name, cfg, frames=frames, progress=False)
        except Exception:
            pass  # only the teacher cache (written first) matters here
        files = sorted((tmp_path / name / "cache").rglob("tap*.npy"))
        assert files
        return [np.load(f) for f in files]

    a, b, c = taps(0, "a", disturb=1), taps(0, "b", disturb=2), taps(1, "c", disturb=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
