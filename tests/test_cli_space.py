"""`donna-nas space ...` prints what it promises; bad input gives one line, exit 2, no traceback."""

import subprocess
import sys

from donna_nas import load_space


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "donna_nas", *args], capture_output=True, text=True)


def test_help_lists_space_group():
    r = run_cli("--help")
    assert r.returncode == 0
    assert "space" in r.stdout


def test_space_show_prints_blocks_and_exact_size():
    r = run_cli("space", "show", "donna_depth")
    assert r.returncode == 0, r.stderr
    for name in ("b1", "b2", "b3", "b4", "b5", "1/32", "gconv"):
        assert name in r.stdout
    assert f"{load_space('donna_depth').size():,}" in r.stdout


def test_space_sample_prints_decodable_archs_with_params():
    space = load_space("tiny")
    r = run_cli("space", "sample", "tiny", "-n", "4", "--seed", "3")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if "b1:" in ln]
    assert len(lines) == 4
    for ln in lines:
        params_m, macs_g, text = ln.split()
        arch = space.decode(text)
        assert float(params_m) == round(space.params(arch) / 1e6, 3)
        assert float(macs_g) == round(space.macs(arch) / 1e9, 3)


def test_space_validate_ok_and_bad(tmp_path):
    r = run_cli("space", "validate", "search_spaces/tiny.yaml")
    assert r.returncode == 0 and "8,192 architectures" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nblocks:\n  - {name: b1, stride: 2, out_channels: [16], choices: {kernel: [4]}}\n")
    r = run_cli("space", "validate", str(bad))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert str(bad) in r.stderr and "kernel" in r.stderr and "[3, 5, 7]" in r.stderr


def test_bad_size_flag_is_a_one_line_error():
    r = run_cli("space", "sample", "tiny", "--size", "192by640")
    assert r.returncode == 2
    assert "HEIGHTxWIDTH" in r.stderr and "Traceback" not in r.stderr
