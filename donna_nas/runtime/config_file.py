"""Reading the files a user may have edited by hand: text, and a run's ``config.yaml``.

Every run stores its settings as ``config.yaml`` (a dataclass written with ``yaml.safe_dump``), and
``--resume`` continues from what that file says. A hand-edited or damaged file must stop with one
line naming the file and the field, before any of its values reaches PyTorch as a wrong type
(``batch: two`` would otherwise surface as a ``TypeError`` deep in a data loader).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

from donna_nas.errors import UserError

__all__ = ["read_text", "read_config_mapping", "check_field_types"]


def read_text(path: str | Path, fix: str = "restore or replace the file") -> str:
    """``path``'s text as UTF-8; a file that is not (binary, another encoding) is a one-line error."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); "
                        f"{fix}") from None


def read_config_mapping(path: Path, cls: type, fix: str = "restore or delete the file") -> dict[str, Any]:
    """The settings mapping of ``path`` (a YAML file written from dataclass ``cls``), checked: valid
    UTF-8 and YAML, a mapping, only ``cls``'s fields, each of its field's type (``check_field_types``)."""
    import yaml

    text = read_text(path, fix)
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); {fix}") from None
    if obj is None:
        raise UserError(f"{path}: empty; {fix}")
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a mapping of settings, found {type(obj).__name__}; {fix}")
    known = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(str(k) for k in set(obj) - known)
    if bad:
        raise UserError(f"{path}: unknown field(s) {', '.join(bad)}; {fix}")
    return check_field_types(obj, cls, str(path), fix)


def check_field_types(obj: dict[str, Any], cls: type, source: str, fix: str) -> dict[str, Any]:
    """``obj`` with every value checked against ``cls``'s annotation for it. A float field also takes
    an int and a numeric string (YAML reads ``1e-4`` without a dot as a string); NaN and infinities
    are refused for floats, since no setting means them. Returns a new dict with those converted."""
    hints = typing.get_type_hints(cls)
    out = dict(obj)
    for name, value in obj.items():
        tp = hints.get(name)
        if tp is None:
            continue
        ok, converted = _conform(value, tp)
        if not ok:
            raise UserError(f"{source}: field {name!r} is {value!r}; expected {_describe(tp)}; {fix}")
        out[name] = converted
    return out


def _conform(value: Any, tp: Any) -> tuple[bool, Any]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            ok, v = _conform(value, a)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        item = args[0] if args else Any
        items = [_conform(v, item) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return False, value
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    return True, value  # Any and other annotations: not checked here


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if tp is type(None):
        return "null"
    if origin in (list, tuple):
        return f"a list of {_describe(args[0]) if args else 'values'}"
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "text"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))
