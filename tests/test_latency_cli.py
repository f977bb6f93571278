"""The `donna-nas latency` commands on the shipped OFA table (no measuring)."""

import pytest

from donna_nas.cli import main
from donna_nas.latency import LookupTable, shipped_tables_dir
from donna_nas.space import load_space

TABLE = str(shipped_tables_dir() / "note10_ofa_mbv3_w12.csv")


def test_lookup_prints_table_sum(capsys):
    space = load_space("ofa_mbv3_w12")
    arch = space.sample(4)
    expected = LookupTable.from_csv(TABLE).arch_latency(space, arch, (192, 192))
    with pytest.raises(SystemExit) as e:
        main(["latency", "lookup", "--space", "ofa_mbv3_w12", "--table", TABLE, "--arch",
              arch.encode(), "--size", "192x192"])
    assert e.value.code == 0
    assert f"{expected:.3f} ms" in capsys.readouterr().out


def test_missing_keys_exit_2_with_command(capsys, tmp_path):
    space = load_space("ofa_mbv3_w12")
    with pytest.raises(SystemExit) as e:
        main(["latency", "lookup", "--space", "ofa_mbv3_w12", "--table", TABLE, "--arch",
              space.sample(0).encode(), "--size", "256x256"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "missing from the latency table" in err and "--size 256x256" in err
    assert "Traceback" not in err
