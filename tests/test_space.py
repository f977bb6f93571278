"""Search-space API: round trips, sizes, sampling helpers and error messages."""

import random
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from donna_nas import Block, Choice, SearchSpace, load_space
from donna_nas.errors import UserError
from donna_nas.space import shipped_spaces_dir

SHIPPED = sorted(p.stem for p in shipped_spaces_dir().glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_decode_encode_roundtrip(name, seed):
    space = load_space(name)
    arch = space.sample(seed)
    text = arch.encode()
    assert space.decode(text) == arch
    assert space.decode(text).encode() == text
    assert type(arch).from_json(arch.to_json()) == arch


@pytest.mark.parametrize("name", SHIPPED)
def test_yaml_roundtrip_is_identity(name, tmp_path):
    space = load_space(name)
    out = tmp_path / "s.yaml"
    out.write_text(space.to_yaml())
    again = SearchSpace.from_yaml(out)
    assert again.to_dict() == space.to_dict()
    assert again.fingerprint() == space.fingerprint()
    # YAML -> space -> YAML is identical text
    assert again.to_yaml() == space.to_yaml()


def test_python_and_yaml_definitions_agree(tmp_path):
    space = SearchSpace(
        name="custom", input_size=(64, 128), stem=dict(channels=16, stride=2),
        blocks=[Block("s1", stride=2, out_channels=[24, 32],
                      choices=Choice(op=["ir", "fused_ir"], kernel=[3, 5, 7], expand=[2, 4],
                                     depth=[1, 2], se=[False, True], act=["relu", "swish"])),
                Block("s2", stride=2, out_channels=[48],
                      choices=Choice(op=["gconv"], kernel=[3], expand=[4], depth=[2]))])
    path = tmp_path / "custom.yaml"
    path.write_text(space.to_yaml())
    assert SearchSpace.from_yaml(path).to_dict() == space.to_dict()
    assert space.size() == 2 * 3 * 2 * 2 * 2 * 2 * 2 * 1


def test_size_is_exact_by_enumeration():
    space = load_space("tiny")
    archs = list(space.enumerate())
    assert len(archs) == space.size() == 8192
    assert len({a.encode() for a in archs}) == len(archs)
    assert len({a.stable_hash() for a in archs}) == len(archs)


def test_enumerate_refuses_huge_spaces():
    with pytest.raises(UserError, match="enumeration limit"):
        next(load_space("donna_depth").enumerate())


def test_sample_is_seeded_and_covers_choices():
    space = load_space("donna_depth")
    assert space.sample(3) == space.sample(3)
    rng = random.Random(0)
    ops = {space.sample(rng).block_choices[2].op for _ in range(200)}
    assert ops == {"ir", "fused_ir", "gconv"}


def test_mutate_and_crossover_stay_in_space():
    space = load_space("donna_depth")
    rng = random.Random(1)
    for _ in range(100):
        a, b = space.sample(rng), space.sample(rng)
        m = space.mutate(a, rng, prob=0.1)
        assert m != a
        space.check(m)
        c = space.crossover(a, b, rng)
        space.check(c)
        assert all(x in (y, z) for x, y, z in zip(c.block_choices, a.block_choices, b.block_choices))


def test_stable_hash_is_content_based():
    space = load_space("tiny")
    a = space.sample(5)
    assert a.stable_hash() == space.decode(a.encode()).stable_hash()
    assert len(a.stable_hash()) == 12


def test_strides_line_up_with_resnet_taps():
    assert load_space("donna_depth").strides() == [2, 4, 8, 16, 32]
    assert load_space("tiny").strides() == [2, 4, 8, 16, 32]


# ------------------------------------------------------------------ bad input
def _write(tmp_path, obj) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(obj if isinstance(obj, str) else yaml.safe_dump(obj))
    return p


def _block(**kw):
    b = {"name": "b1", "stride": 2, "out_channels": [16],
         "choices": {"op": ["ir"], "kernel": [3]}}
    b.update(kw)
    return b


@pytest.mark.parametrize("obj, message", [
    ("name: x\nblocks: [\n", "not valid YAML"),
    ({"name": "x", "blocks": [_block(choices={"op": ["conv9"]})]}, "field 'op' has 'conv9'"),
    ({"name": "x", "blocks": [_block(choices={"kernel": [4]})]}, r"field 'kernel' has 4; allowed: one of \[3, 5, 7\]"),
    ({"name": "x", "blocks": [_block(choices={"kernel": []})]}, "field 'kernel' is an empty list"),
    ({"name": "x", "blocks": [_block(), _block()]}, "duplicate block name 'b1'"),
    ({"name": "x", "blocks": [_block(stride=3)]}, "stride must be 1 or 2"),
    ({"name": "x", "blocks": [_block(out_channels=[15])]}, "multiples of 8"),
    ({"name": "x", "blocks": [_block(choices={"act": ["gelu"]})]}, "field 'act' has 'gelu'"),
    ({"name": "x", "blocks": [_block(colour="red")]}, "unknown field"),
    ({"name": "x"}, "missing field 'blocks'"),
    ({"name": "x", "blocks": []}, "'blocks' is empty"),
])
def test_bad_space_files_give_one_clear_error(tmp_path, obj, message):
    path = _write(tmp_path, obj)
    with pytest.raises(UserError, match=message) as info:
        SearchSpace.from_yaml(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("b1:ir_d1_k3_e2_c8_relu", "has 1 blocks"),
    ("b1:conv_d1_k3_e2_c8_relu|b2:ir_d1_k3_e2_c16_relu|b3:ir_d1_k3_e2_c16_relu|"
     "b4:ir_d1_k3_e2_c24_relu|b5:ir_d1_k3_e2_c32_relu", "block b1: unknown op"),
    ("b1:ir_d1_k3_e2_c8_relu|b2:ir_d1_k3_x2_c16_relu|b3:ir_d1_k3_e2_c16_relu|"
     "b4:ir_d1_k3_e2_c24_relu|b5:ir_d1_k3_e2_c32_relu", "block b2: bad token 'x2'"),
    ("b1:ir_d1_k7_e2_c8_relu|b2:ir_d1_k3_e2_c16_relu|b3:ir_d1_k3_e2_c16_relu|"
     "b4:ir_d1_k3_e2_c24_relu|b5:ir_d1_k3_e2_c32_relu", "block b1: kernel=7 is not in the space"),
    ("b1:ir_d1_k3_e2_c8_relu|bX:ir_d1_k3_e2_c16_relu|b3:ir_d1_k3_e2_c16_relu|"
     "b4:ir_d1_k3_e2_c24_relu|b5:ir_d1_k3_e2_c32_relu", "expected block 'b2'"),
    ("b1:ir_d1_k3_c8_relu|b2:ir_d1_k3_e2_c16_relu|b3:ir_d1_k3_e2_c16_relu|"
     "b4:ir_d1_k3_e2_c24_relu|b5:ir_d1_k3_e2_c32_relu", "lacks expand"),
])
def test_bad_arch_strings_name_block_and_token(text, message):
    with pytest.raises(UserError, match=message):
        load_space("tiny").decode(text)


def test_unknown_space_name_lists_shipped():
    with pytest.raises(UserError, match="shipped: .*donna_depth"):
        load_space("no_such_space")


def test_architecture_choices_is_a_deprecated_alias():
    space = load_space("tiny")
    arch = space.sample(0)
    assert len(arch.block_choices) == len(space.blocks)
    with pytest.warns(DeprecationWarning, match="block_choices"):
        assert arch.choices == arch.block_choices
    # Block.choices keeps its meaning: the options a block offers
    assert space.blocks[0].choices.op == tuple(space.blocks[0].options()["op"])
