"""The shipped OFA Note10 table, its key translation and the matching OFA-MBv3-w1.2 space."""

from pathlib import Path

import pytest

from donna_nas.latency import LookupTable, shipped_tables_dir
from donna_nas.latency.ofa import (convert_ofa_luts, load_ofa_lut, net_config_keys, ofa_to_op,
                                   op_to_ofa, translate_key)
from donna_nas.space.ops import all_ops
from donna_nas.space import load_space

TABLE = shipped_tables_dir() / "note10_ofa_mbv3_w12.csv"
RESOLUTIONS = (160, 176, 192, 208, 224)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "latency" / "ofa_note10"

# OFA's published note10_lat-30ms_top1-78.4_finetune-75 network (net.config, 224 px):
# per layer (out_channels, stride, kernel, expand_ratio, act, se)
NOTE10_30MS = [(24, 1, 3, 1, "relu", False), (32, 2, 3, 3, "relu", False),
               (32, 1, 3, 3, "relu", False), (48, 2, 5, 4, "relu", True),
               (48, 1, 3, 3, "relu", True), (48, 1, 3, 4, "relu", True),
               (96, 2, 5, 4, "h_swish", False), (96, 1, 5, 4, "h_swish", False),
               (96, 1, 3, 3, "h_swish", False), (136, 1, 3, 6, "h_swish", True),
               (136, 1, 3, 4, "h_swish", True), (136, 1, 3, 4, "h_swish", True),
               (192, 2, 3, 6, "h_swish", True), (192, 1, 3, 6, "h_swish", True),
               (192, 1, 3, 4, "h_swish", True), (192, 1, 3, 3, "h_swish", True)]


def net_config(layers):
    blocks, cin = [], 24
    for cout, s, k, e, act, se in layers:
        blocks.append({"mobile_inverted_conv": {"in_channels": cin, "out_channels": cout,
                                                "kernel_size": k, "stride": s, "expand_ratio": e,
                                                "mid_channels": None, "act_func": act,
                                                "use_se": se}})
        cin = cout
    conv = {"kernel_size": 3, "stride": 2, "in_channels": 3, "out_channels": 24, "act_func": "h_swish"}
    return {"first_conv": conv, "blocks": blocks,
            "final_expand_layer": {"in_channels": 192, "out_channels": 1152},
            "feature_mix_layer": {"in_channels": 1152, "out_channels": 1536},
            "classifier": {"in_features": 1536, "out_features": 1000}}


@pytest.fixture(scope="module")
def table():
    return LookupTable.from_csv(TABLE)


def test_published_30ms_net_is_29_97(table):
    keys = net_config_keys(net_config(NOTE10_30MS), 224)
    assert len(keys) == 1 + 16 + 4
    assert table.latency_of(keys) == pytest.approx(29.97, abs=0.01)


@pytest.mark.skipif(not SHARED.exists(), reason="source data folder not present")
def test_published_net_config_file_gives_same_keys():
    path = next((SHARED / "specialized_nets").glob("note10_lat-30ms*")) / "net.config"
    assert net_config_keys(path, 224) == net_config_keys(net_config(NOTE10_30MS), 224)


def test_table_metadata(table):
    assert len(table) == 462
    assert table.device.startswith("Samsung Galaxy Note10") and "chip not stated" in table.device
    assert table.precision == "unknown"
    for res in RESOLUTIONS:
        assert len(table.fixed_keys((res, res))) == 4


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_space_keys_match_table_exactly(table, res):
    space = load_space("ofa_mbv3_w12")
    keys = {op.key for op in all_ops(space, (res, res))}
    assert len(keys) == 92  # stem + fixed first layer + 5 stages x 9 (k, e) x {first, rest}
    assert table.missing(keys) == []
    arch = space.sample(res)
    ops = space.ops(arch, (res, res))
    head = table.fixed_latency((res, res))
    assert head > 0
    assert table.arch_latency(space, arch, (res, res)) == pytest.approx(
        sum(table.lookup(op.key) for op in ops) + head)


def test_space_arch_equals_per_layer_net(table):
    """An arch of the per-block space sums like OFA's per-layer description of the same net."""
    space = load_space("ofa_mbv3_w12")
    arch = space.decode("b0:ir_d1_k3_e1_c24_relu|b1:ir_d2_k3_e3_c32_relu|"
                        "b2:ir_d3_k5_e4_c48_se_relu|b3:ir_d4_k7_e6_c96_hswish|"
                        "b4:ir_d2_k3_e4_c136_se_hswish|b5:ir_d3_k5_e3_c192_se_hswish")
    layers = [(24, 1, 3, 1, "relu", False)]
    for (cout, s, act, se), bc in zip([(32, 2, "relu", False), (48, 2, "relu", True),
                                       (96, 2, "h_swish", False), (136, 1, "h_swish", True),
                                       (192, 2, "h_swish", True)], arch.block_choices[1:]):
        layers += [(cout, s if i == 0 else 1, bc.kernel, int(bc.expand), act, se)
                   for i in range(bc.depth)]
    expected = table.latency_of(net_config_keys(net_config(layers), 224))
    assert table.arch_latency(space, arch, (224, 224)) == pytest.approx(expected)


def test_key_translation_round_trips(table):
    n = 0
    for key in table.keys():
        if key.startswith("ofa_head:"):
            continue
        op = _op_from_key(key)
        assert op.key == key
        assert ofa_to_op(op_to_ofa(op)).key == key
        n += 1
    assert n == 462 - 20


def _op_from_key(key):
    # our keys → OpInstance through the OFA string built from its fields
    kind, _, body = key.partition(":")
    f = dict(kv.split("=") for kv in body.split(","))
    h, w, cin, cout = int(f["h"]), int(f["w"]), int(f["cin"]), int(f["cout"])
    from donna_nas.space.ops import OpInstance

    if kind == "stem":
        return OpInstance("stem", cin, cout, int(f["k"]), int(f["s"]), h, w, f["act"])
    return OpInstance("ir", cin, cout, int(f["k"]), int(f["s"]), h, w, f["act"], int(f["e"]),
                      f["se"] == "1")


@pytest.mark.skipif(not SHARED.exists(), reason="source data folder not present")
def test_conversion_reproduces_shipped_table(tmp_path, table):
    for res in RESOLUTIONS:
        for key in load_ofa_lut(SHARED / "lut" / f"{res}_lookup_table.yaml"):
            canon, fixed = translate_key(key, res)
            assert canon in table
            if not fixed:
                assert op_to_ofa(ofa_to_op(key)) == key
    fresh = convert_ofa_luts(SHARED / "lut", tmp_path / "t.csv")
    again = LookupTable.from_csv(tmp_path / "t.csv")
    assert again.keys() == table.keys() and len(fresh) == len(table)
    assert all(again.lookup(k) == table.lookup(k) for k in table.keys())
