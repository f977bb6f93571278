"""OFA (Once-for-All) MobileNetV3 latency tables: key translation and conversion.

OFA's Note10 lookup tables key a block as
``expanded_conv-input:HxWxC-output:HoxWoxCo-expand:MID-kernel:K-stride:S-idskip:R-se:E-hs:A``
where ``expand`` is the hidden channel count (not the ratio), ``hs`` means h-swish (our
``act=hswish``; otherwise ReLU) and ``se`` squeeze-excite (our ``se=1``). Our canonical key holds
the ratio; it maps back through ``make_divisible(cin * ratio)`` exactly for this space's widths.
The stem (``Conv``) maps to our ``stem`` key; the classification head (``Conv_1``,
``AvgPool2D``, ``Conv_2``, ``Logits``) is fixed for every architecture and becomes rows marked
``fixed_for=HxW`` (their keys carry the image size, since ``Conv_2``/``Logits`` run at 1x1 at
every resolution and were measured separately per resolution).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from donna_nas.errors import UserError
from donna_nas.latency.table import LookupTable, TableRow
from donna_nas.space.ops import OpInstance, make_divisible

DEVICE = "Samsung Galaxy Note10 (chip not stated by the source)"
RUNTIME = "not stated by the source (OFA LUT)"
SOURCE = "OFA han-cai/files@a7c9bcd ofa/note10/{res}_lookup_table.yaml mean of {count} runs"
HEAD_NAMES = {"Conv_1": "conv_1", "AvgPool2D": "avgpool", "Conv_2": "conv_2", "Logits": "logits"}

_SHAPE = r"(\d+)x(\d+)x(\d+)"
_BLOCK_RE = re.compile(rf"^expanded_conv-input:{_SHAPE}-output:{_SHAPE}-expand:(\d+)-kernel:(\d+)"
                       r"-stride:(\d+)-idskip:([01])-se:([01])-hs:([01])$")
_STEM_RE = re.compile(rf"^Conv-input:{_SHAPE}-output:{_SHAPE}$")
_HEAD_RE = re.compile(r"^(Conv_1|AvgPool2D|Conv_2|Logits)-input:(\d+)x(\d+)x(\d+)-output:([\dx]+)$")


def ofa_to_op(key: str) -> OpInstance:
    """Our op instance of an OFA ``Conv``/``expanded_conv`` key (head keys are not op instances)."""
    m = _BLOCK_RE.match(key)
    if m:
        h, w, cin, ho, wo, cout, mid, k, s, skip, se, hs = map(int, m.groups())
        if mid % cin:
            raise UserError(f"OFA key {key!r}: expand {mid} is not a multiple of input width {cin}")
        ratio = mid // cin
        op = OpInstance("ir", cin, cout, k, s, h, w, "hswish" if hs else "relu", ratio, bool(se))
        if op.mid != mid or op.out_hw != (ho, wo) or op.residual != bool(skip):
            raise UserError(f"OFA key {key!r} does not round-trip to our op {op.key!r}")
        return op
    m = _STEM_RE.match(key)
    if m:
        h, w, cin, ho, wo, cout = map(int, m.groups())
        # OFA-MobileNetV3's first conv: 3x3, stride 2, h-swish (net.config: first_conv)
        op = OpInstance("stem", cin, cout, 3, 2, h, w, "hswish")
        if op.out_hw != (ho, wo):
            raise UserError(f"OFA key {key!r}: output {ho}x{wo} is not a stride-2 conv of {h}x{w}")
        return op
    raise UserError(f"OFA key {key!r} is not a Conv/expanded_conv key")


def op_to_ofa(op: OpInstance) -> str:
    """OFA's key string for one of our op instances (inverse of ``ofa_to_op``)."""
    ho, wo = op.out_hw
    if op.kind == "stem":
        return f"Conv-input:{op.h}x{op.w}x{op.cin}-output:{ho}x{wo}x{op.cout}"
    if op.kind != "ir":
        raise UserError(f"op {op.key!r}: OFA tables only hold inverted-residual (ir) blocks")
    mid = op.mid if op.has_expand_conv else op.cin
    return (f"expanded_conv-input:{op.h}x{op.w}x{op.cin}-output:{ho}x{wo}x{op.cout}-expand:{mid}"
            f"-kernel:{op.kernel}-stride:{op.stride}-idskip:{int(op.residual)}-se:{int(op.se)}"
            f"-hs:{int(op.act == 'hswish')}")


def head_key(name: str, cin: int, h: int, w: int, out: str, image: int) -> str:
    return f"ofa_head:layer={HEAD_NAMES[name]},cin={cin},h={h},w={w},out={out},img={image}x{image}"


def translate_key(key: str, image: int) -> tuple[str, str]:
    """(canonical key, fixed_for) of an OFA key from the ``image``-px table."""
    m = _HEAD_RE.match(key)
    if m:
        name, h, w, c, out = m.groups()
        return head_key(name, int(c), int(h), int(w), out, image), f"{image}x{image}"
    return ofa_to_op(key).key, ""


def load_ofa_lut(path: str | Path) -> dict[str, dict]:
    path = Path(path)
    try:
        obj = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read OFA lookup table ({exc})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a mapping of OFA keys to {{count, mean, std}}")
    return obj


def convert_ofa_luts(lut_dir: str | Path, out: str | Path | None = None,
                     resolutions=(160, 176, 192, 208, 224)) -> LookupTable:
    """One table from OFA's per-resolution ``{res}_lookup_table.yaml`` files."""
    rows: dict[str, TableRow] = {}
    also: dict[str, list[str]] = {}
    # highest resolution first: an op instance that two tables both hold (the last stage's
    # 6x6 / 7x7 layers appear at 176 and 192, 208 and 224 px) keeps the larger table's row,
    # so a net at that resolution sums exactly what OFA summed; the other value is noted.
    for res in sorted(resolutions, reverse=True):
        lut = load_ofa_lut(Path(lut_dir) / f"{res}_lookup_table.yaml")
        for key, v in lut.items():
            canon, fixed = translate_key(key, res)
            if canon in rows:
                also.setdefault(canon, []).append(f"{res}px table: {float(v['mean']):.6g} ms")
                continue
            rows[canon] = TableRow(canon, float(v["mean"]), float(v["std"]), DEVICE, "unknown",
                                   RUNTIME, SOURCE.format(res=res, count=v["count"]), fixed)
    for canon, notes in also.items():
        r = rows[canon]
        rows[canon] = TableRow(r.op, r.latency_ms, r.std_ms, r.device, r.precision, r.runtime,
                               f"{r.source}; also in {', '.join(notes)}", r.fixed_for)
    table = LookupTable(rows.values())
    if out is not None:
        table.to_csv(out)
    return table


# ---------------------------------------------------------------------- published nets
def net_config_keys(net_config: str | Path | dict, image: int) -> list[str]:
    """Canonical keys of every op of an OFA ``net.config`` (per-layer choices) at ``image`` px,
    head included: what the table sums for that network."""
    cfg = json.loads(Path(net_config).read_text()) if not isinstance(net_config, dict) else net_config
    fc = cfg["first_conv"]
    h = w = image
    stem = OpInstance("stem", fc["in_channels"], fc["out_channels"], fc["kernel_size"],
                      fc["stride"], h, w, _act(fc["act_func"]))
    keys = [stem.key]
    h, w = stem.out_hw
    for blk in cfg["blocks"]:
        c = blk["mobile_inverted_conv"]
        cin, ratio = c["in_channels"], c["expand_ratio"]
        mid = c.get("mid_channels") or make_divisible(cin * ratio, 8)
        if mid % cin:
            raise UserError(f"net.config block {c}: mid channels {mid} is not a multiple of {cin}")
        op = OpInstance("ir", cin, c["out_channels"], c["kernel_size"], c["stride"], h, w,
                        _act(c["act_func"]), mid // cin if ratio != 1 else 1, bool(c["use_se"]))
        keys.append(op.key)
        h, w = op.out_hw
    fe, fm, cl = cfg["final_expand_layer"], cfg["feature_mix_layer"], cfg["classifier"]
    keys += [
        head_key("Conv_1", fe["in_channels"], h, w, f"{h}x{w}x{fe['out_channels']}", image),
        head_key("AvgPool2D", fe["out_channels"], h, w, f"1x1x{fe['out_channels']}", image),
        head_key("Conv_2", fm["in_channels"], 1, 1, f"1x1x{fm['out_channels']}", image),
        head_key("Logits", cl["in_features"], 1, 1, str(cl["out_features"]), image),
    ]
    return keys


def _act(name: str) -> str:
    return {"h_swish": "hswish", "relu": "relu", "swish": "swish"}.get(name) or _bad_act(name)


def _bad_act(name: str) -> str:
    raise UserError(f"OFA activation {name!r} has no counterpart (known: relu, h_swish, swish)")
