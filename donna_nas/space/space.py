"""Search spaces: the typed description of what a search may choose, and architectures in it.

A space is a fixed stem followed by blocks. Each block has a fixed stride and a set of options
(operation type, kernel, expansion, depth, output width, squeeze-excite, activation); an
``Architecture`` picks one value of each option per block. Every layer of a block shares the
block's choice (as in DONNA), so a block choice is a small record and an architecture is a tuple
of them. The compact string form (``b1:ir_d2_k5_e4_c32_se_relu|b2:...``) is what people read,
edit, log and paste into the CLI.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

from donna_nas.errors import UserError
from donna_nas.runtime.config_file import read_text
from donna_nas.space.ops import OP_TYPES, OpInstance, arch_ops

OPS = tuple(OP_TYPES)
"""Operation types. ``ir``: inverted residual (MBConv: 1x1 expand, kxk depthwise, 1x1 project).
``fused_ir``: fused inverted residual (kxk full conv expand, 1x1 project).
``gconv``: grouped-conv bottleneck (1x1 expand, kxk grouped conv with 16 channels a group,
1x1 project), the ResNeXt-like macro choice."""
KERNELS = (3, 5, 7)
ACTS = ("relu", "swish", "hswish")
OPTION_NAMES = ("op", "kernel", "expand", "depth", "out_channels", "se", "act")


@dataclass(frozen=True)
class BlockChoice:
    """One concrete choice for a block; every layer of the block uses it."""

    op: str
    kernel: int
    expand: float
    depth: int
    out_channels: int
    se: bool
    act: str

    def token(self) -> str:
        """Compact, human-readable form, e.g. ``ir_d2_k5_e4_c32_se_relu``."""
        parts = [self.op, f"d{self.depth}", f"k{self.kernel}", f"e{_fmt_num(self.expand)}",
                 f"c{self.out_channels}"]
        if self.se:
            parts.append("se")
        parts.append(self.act)
        return "_".join(parts)


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@dataclass(frozen=True)
class Choice:
    """The options a block offers. Every list must be non-empty; values are validated."""

    op: tuple[str, ...] = ("ir",)
    kernel: tuple[int, ...] = (3,)
    expand: tuple[float, ...] = (4,)
    depth: tuple[int, ...] = (1,)
    se: tuple[bool, ...] = (False,)
    act: tuple[str, ...] = ("relu",)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (str, int, float, bool)):
                value = (value,)
            object.__setattr__(self, f.name, tuple(value))


@dataclass(frozen=True)
class Block:
    """A stage of the network: fixed stride, a few output widths, and the choice options."""

    name: str
    stride: int
    out_channels: tuple[int, ...]
    choices: Choice = field(default_factory=Choice)

    def __post_init__(self) -> None:
        oc = self.out_channels
        object.__setattr__(self, "out_channels", (oc,) if isinstance(oc, int) else tuple(oc))

    def options(self) -> dict[str, tuple]:
        """Option name -> allowed values, in the canonical option order."""
        c = self.choices
        return {"op": c.op, "kernel": c.kernel, "expand": c.expand, "depth": c.depth,
                "out_channels": self.out_channels, "se": c.se, "act": c.act}

    def size(self) -> int:
        return math.prod(len(v) for v in self.options().values())

    def all_choices(self) -> Iterator[BlockChoice]:
        opts = self.options()
        for values in itertools.product(*opts.values()):
            yield BlockChoice(**dict(zip(opts, values)))

    def contains(self, bc: BlockChoice) -> bool:
        return all(getattr(bc, k) in v for k, v in self.options().items())


@dataclass(frozen=True)
class Stem:
    """The fixed first convolution (kxk, stride s, BN, activation)."""

    channels: int = 32
    stride: int = 2
    kernel: int = 3
    act: str = "relu"


@dataclass(frozen=True)
class Architecture:
    """One choice per block of a space. Equality and hashing follow the choices."""

    names: tuple[str, ...]
    block_choices: tuple[BlockChoice, ...]

    @property
    def choices(self) -> tuple[BlockChoice, ...]:
        """Deprecated alias of ``block_choices`` (``Block.choices`` is the options a block offers)."""
        warnings.warn("Architecture.choices is deprecated; use Architecture.block_choices",
                      DeprecationWarning, stacklevel=2)
        return self.block_choices

    def encode(self) -> str:
        return "|".join(f"{n}:{c.token()}" for n, c in zip(self.names, self.block_choices))

    def __str__(self) -> str:
        return self.encode()

    def to_json(self) -> dict[str, Any]:
        return {"arch": self.encode(),
                "blocks": {n: asdict(c) for n, c in zip(self.names, self.block_choices)}}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Architecture":
        blocks = obj["blocks"]
        return cls(tuple(blocks), tuple(BlockChoice(**v) for v in blocks.values()))

    def stable_hash(self) -> str:
        """12 hex digits that identify the architecture across processes and machines."""
        return hashlib.sha1(self.encode().encode()).hexdigest()[:12]

    def replace(self, index: int, choice: BlockChoice) -> "Architecture":
        choices = list(self.block_choices)
        choices[index] = choice
        return Architecture(self.names, tuple(choices))


_TOKEN_RE = {
    "depth": re.compile(r"^d(\d+)$"),
    "kernel": re.compile(r"^k(\d+)$"),
    "expand": re.compile(r"^e(\d+(?:\.\d+)?)$"),
    "out_channels": re.compile(r"^c(\d+)$"),
}


@dataclass(frozen=True)
class SearchSpace:
    """A named search space: input size, stem and blocks. See the module docstring."""

    name: str
    blocks: tuple[Block, ...]
    input_size: tuple[int, int] = (192, 640)
    stem: Stem = field(default_factory=Stem)
    in_channels: int = 3
    source: str = "<python>"

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "input_size", tuple(self.input_size))
        if isinstance(self.stem, dict):
            object.__setattr__(self, "stem", Stem(**self.stem))
        validate_space(self)

    # ---------------------------------------------------------------- counting and sampling
    @property
    def block_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.blocks)

    def size(self) -> int:
        """Exact number of distinct architectures."""
        return math.prod(b.size() for b in self.blocks)

    def strides(self) -> list[int]:
        """Cumulative stride of each block's output (its tap) relative to the input."""
        out, s = [], self.stem.stride
        for b in self.blocks:
            s *= b.stride
            out.append(s)
        return out

    def sample(self, rng: random.Random | int | None = None) -> Architecture:
        rng = _as_rng(rng)
        return Architecture(self.block_names,
                            tuple(_sample_choice(b, rng) for b in self.blocks))

    def enumerate(self, limit: int = 1_000_000) -> Iterator[Architecture]:
        """Every architecture, in a fixed order. Refuses spaces larger than ``limit``."""
        if self.size() > limit:
            raise UserError(f"space {self.name!r} has {self.size():,} architectures, more than "
                            f"the enumeration limit {limit:,}; sample it instead")
        for combo in itertools.product(*(list(b.all_choices()) for b in self.blocks)):
            yield Architecture(self.block_names, tuple(combo))

    def mutate(self, arch: Architecture, rng: random.Random | int | None = None,
               prob: float = 0.2) -> Architecture:
        """Re-draw each option of each block with probability ``prob``; at least one changes
        whenever the space has more than one architecture."""
        rng = _as_rng(rng)
        self.check(arch)
        slots = [(i, k) for i, b in enumerate(self.blocks)
                 for k, v in b.options().items() if len(v) > 1]
        if not slots:
            return arch
        chosen = [s for s in slots if rng.random() < prob] or [rng.choice(slots)]
        choices = [asdict(c) for c in arch.block_choices]
        for i, key in chosen:
            current = choices[i][key]
            others = [v for v in self.blocks[i].options()[key] if v != current]
            choices[i][key] = rng.choice(others)
        return Architecture(arch.names, tuple(BlockChoice(**c) for c in choices))

    def crossover(self, a: Architecture, b: Architecture,
                  rng: random.Random | int | None = None) -> Architecture:
        """Uniform crossover at block granularity (a block's choice is inherited whole)."""
        rng = _as_rng(rng)
        self.check(a)
        self.check(b)
        return Architecture(a.names, tuple(x if rng.random() < 0.5 else y
                                           for x, y in zip(a.block_choices, b.block_choices)))

    def check(self, arch: Architecture) -> None:
        """Raise ``UserError`` if ``arch`` is not an architecture of this space."""
        if arch.names != self.block_names:
            raise UserError(f"architecture blocks {list(arch.names)} do not match space "
                            f"{self.name!r} blocks {list(self.block_names)}")
        for block, bc in zip(self.blocks, arch.block_choices):
            for key, allowed in block.options().items():
                if getattr(bc, key) not in allowed:
                    raise UserError(f"block {block.name}: {key}={getattr(bc, key)!r} is not "
                                    f"in the space {self.name!r} (allowed: {list(allowed)})")

    # ---------------------------------------------------------------- string form
    def decode(self, text: str) -> Architecture:
        """Parse ``b1:ir_d2_k5_e4_c32_se_relu|b2:...``; errors name the block and the token."""
        text = text.strip()
        parts = [p for p in text.split("|")]
        if len(parts) != len(self.blocks):
            raise UserError(f"architecture string has {len(parts)} blocks, space {self.name!r} "
                            f"has {len(self.blocks)} ({', '.join(self.block_names)})")
        choices = []
        for block, part in zip(self.blocks, parts):
            name, sep, body = part.partition(":")
            if not sep or name.strip() != block.name:
                raise UserError(f"architecture string: expected block {block.name!r} as "
                                f"'{block.name}:<op>_d.._k.._e.._c.._[se_]<act>', got {part!r}")
            choices.append(_parse_token(block, body.strip()))
        arch = Architecture(self.block_names, tuple(choices))
        self.check(arch)
        return arch

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_size": list(self.input_size),
            "in_channels": self.in_channels,
            "stem": asdict(self.stem),
            "blocks": [{"name": b.name, "stride": b.stride,
                        "out_channels": list(b.out_channels),
                        "choices": {k: list(v) for k, v in asdict(b.choices).items()}}
                       for b in self.blocks],
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_dict(cls, obj: Any, source: str = "<dict>") -> "SearchSpace":
        return _space_from_dict(obj, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SearchSpace":
        path = Path(path)
        if not path.exists():
            raise UserError(f"{path}: search space file not found")
        try:
            obj = yaml.safe_load(read_text(path, "save the space file as UTF-8 text"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise UserError(f"{path}:{where} is not valid YAML "
                            f"({getattr(exc, 'problem', exc)})") from None
        return _space_from_dict(obj, str(path))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def fingerprint(self) -> str:
        """Hash of the space's content (not its file name): runs record it to detect edits."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]

    # ---------------------------------------------------------------- models
    def build(self, arch: Architecture):
        """The encoder network of ``arch`` (see ``donna_nas.nn.builder``)."""
        from donna_nas.nn.builder import build_encoder

        self.check(arch)
        return build_encoder(self, arch)

    def ops(self, arch: Architecture, input_size: tuple[int, int] | None = None) -> list[OpInstance]:
        """The op instances (one per layer, with shapes) that make up ``arch`` (``space.ops``)."""
        self.check(arch)
        return arch_ops(self, arch, input_size or self.input_size)

    def params(self, arch: Architecture) -> int:
        return sum(op.params for op in self.ops(arch))

    def macs(self, arch: Architecture, input_size: tuple[int, int] | None = None) -> int:
        return sum(op.macs for op in self.ops(arch, input_size))


def _as_rng(rng: random.Random | int | None) -> random.Random:
    return rng if isinstance(rng, random.Random) else random.Random(rng)


def _sample_choice(block: Block, rng: random.Random) -> BlockChoice:
    return BlockChoice(**{k: rng.choice(v) for k, v in block.options().items()})


def _parse_token(block: Block, body: str) -> BlockChoice:
    tokens = body.split("_")
    # op names may contain "_" (fused_ir): take the longest known op prefix
    op = next((o for o in sorted(OPS, key=len, reverse=True)
               if body == o or body.startswith(o + "_")), None)
    if op is None:
        raise UserError(f"block {block.name}: unknown op in {body!r} (allowed ops: {', '.join(OPS)})")
    tokens = body[len(op) + 1:].split("_") if len(body) > len(op) else []
    values: dict[str, Any] = {"op": op, "se": False}
    for tok in tokens:
        if tok == "se":
            values["se"] = True
            continue
        if tok in ACTS:
            values["act"] = tok
            continue
        for key, rx in _TOKEN_RE.items():
            m = rx.match(tok)
            if m:
                values[key] = float(m.group(1)) if key == "expand" else int(m.group(1))
                break
        else:
            raise UserError(f"block {block.name}: bad token {tok!r} in {body!r} (expected dN, kN, "
                            f"eN, cN, se or an activation: {', '.join(ACTS)})")
    missing = [k for k in ("depth", "kernel", "expand", "out_channels", "act") if k not in values]
    if missing:
        raise UserError(f"block {block.name}: {body!r} lacks {', '.join(missing)} "
                        f"(form: <op>_dN_kN_eN_cN[_se]_<act>)")
    ex = values["expand"]
    values["expand"] = int(ex) if float(ex).is_integer() else ex
    return BlockChoice(**values)


# ------------------------------------------------------------------------ validation
def validate_space(space: SearchSpace) -> None:
    """Check a space's content; raises ``UserError`` naming the source, block and field."""
    src = space.source
    if not space.blocks:
        raise UserError(f"{src}: field 'blocks' is empty; a space needs at least one block")
    if len(space.input_size) != 2 or any(not isinstance(v, int) or v <= 0 for v in space.input_size):
        raise UserError(f"{src}: field 'input_size' must be two positive integers [H, W], "
                        f"got {list(space.input_size)}")
    if not _positive_int(space.in_channels):
        raise UserError(f"{src}: field 'in_channels' is {space.in_channels!r}; expected a whole number above 0")
    stem = space.stem
    for key, ok, allowed in (("channels", _positive_int(stem.channels), "a whole number above 0"),
                             ("kernel", stem.kernel in KERNELS, f"one of {list(KERNELS)}"),
                             ("stride", stem.stride in (1, 2), "1 or 2"),
                             ("act", stem.act in ACTS, f"one of {', '.join(ACTS)}")):
        if not ok:
            raise UserError(f"{src}: field 'stem.{key}' is {getattr(stem, key)!r}; allowed: {allowed}")
    seen: set[str] = set()
    for b in space.blocks:
        where = f"{src}: block {b.name!r}"
        if not b.name or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", b.name):
            raise UserError(f"{src}: block name {b.name!r} must be letters/digits, starting "
                            f"with a letter (it appears in architecture strings)")
        if b.name in seen:
            raise UserError(f"{src}: duplicate block name {b.name!r}; block names must be unique")
        seen.add(b.name)
        if b.stride not in (1, 2):
            raise UserError(f"{where}: stride must be 1 or 2, got {b.stride!r}")
        for key, values in b.options().items():
            if len(values) == 0:
                raise UserError(f"{where}: field '{key}' is an empty list; give at least one value")
            if len(set(values)) != len(values):
                raise UserError(f"{where}: field '{key}' lists a value twice: {list(values)}")
        c = b.choices
        _check_values(where, "op", c.op, lambda v: v in OPS, f"one of {', '.join(OPS)}")
        _check_values(where, "kernel", c.kernel, lambda v: v in KERNELS,
                      f"one of {list(KERNELS)}")
        _check_values(where, "expand", c.expand,
                      lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 1 <= v <= 8,
                      "numbers from 1 to 8")
        _check_values(where, "depth", c.depth,
                      lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8,
                      "integers from 1 to 8")
        _check_values(where, "se", c.se, lambda v: isinstance(v, bool), "true or false")
        _check_values(where, "act", c.act, lambda v: v in ACTS, f"one of {', '.join(ACTS)}")
        _check_values(where, "out_channels", b.out_channels,
                      lambda v: _positive_int(v) and v % 8 == 0,
                      "positive multiples of 8")


def _positive_int(value: Any) -> bool:
    """A whole number above 0 (``True``, ``3.0`` and ``"3"`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_values(where: str, key: str, values: Sequence, ok, allowed: str) -> None:
    bad = [v for v in values if not ok(v)]
    if bad:
        raise UserError(f"{where}: field '{key}' has {bad[0]!r}; allowed: {allowed}")


_SPACE_KEYS = {"name", "input_size", "in_channels", "stem", "blocks"}
_BLOCK_KEYS = {"name", "stride", "out_channels", "choices"}
_CHOICE_KEYS = {"op", "kernel", "expand", "depth", "se", "act"}


def _space_from_dict(obj: Any, src: str) -> SearchSpace:
    if not isinstance(obj, dict):
        raise UserError(f"{src}: a search space must be a mapping with 'name' and 'blocks'")
    unknown = set(obj) - _SPACE_KEYS
    if unknown:
        raise UserError(f"{src}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_SPACE_KEYS)}")
    for key in ("name", "blocks"):
        if key not in obj:
            raise UserError(f"{src}: missing field '{key}'")
    if not isinstance(obj["blocks"], list):
        raise UserError(f"{src}: field 'blocks' must be a list of blocks")
    blocks = []
    for i, b in enumerate(obj["blocks"]):
        if not isinstance(b, dict):
            raise UserError(f"{src}: blocks[{i}] must be a mapping")
        bname = b.get("name", f"#{i}")
        unknown = set(b) - _BLOCK_KEYS
        if unknown:
            raise UserError(f"{src}: block {bname!r}: unknown field(s) {sorted(unknown)}; "
                            f"allowed: {sorted(_BLOCK_KEYS)}")
        for key in ("name", "stride", "out_channels"):
            if key not in b:
                raise UserError(f"{src}: block {bname!r}: missing field '{key}'")
        ch = b.get("choices") or {}
        if not isinstance(ch, dict):
            raise UserError(f"{src}: block {bname!r}: 'choices' must be a mapping")
        unknown = set(ch) - _CHOICE_KEYS
        if unknown:
            raise UserError(f"{src}: block {bname!r}: unknown choice(s) {sorted(unknown)}; "
                            f"allowed: {sorted(_CHOICE_KEYS)}")
        choice_kwargs = {}
        for k, v in ch.items():
            choice_kwargs[k] = v if isinstance(v, list) else [v]
        oc = b["out_channels"]
        blocks.append(Block(name=str(b["name"]), stride=b["stride"],
                            out_channels=oc if isinstance(oc, list) else [oc],
                            choices=Choice(**choice_kwargs)))
    stem = obj.get("stem") or {}
    if not isinstance(stem, dict) or set(stem) - {"channels", "stride", "kernel", "act"}:
        raise UserError(f"{src}: field 'stem' must be a mapping of channels, stride, kernel, act")
    size = obj.get("input_size", (192, 640))
    if not isinstance(size, (list, tuple)):  # the values themselves: validate_space
        raise UserError(f"{src}: field 'input_size' is {size!r}; expected [height, width]")
    return SearchSpace(name=str(obj["name"]), blocks=tuple(blocks), input_size=tuple(size),
                       stem=Stem(**stem), in_channels=obj.get("in_channels", 3), source=src)
