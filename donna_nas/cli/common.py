"""Small parsers shared by CLI commands, and the defaults of config fields shown in ``--help``."""

from __future__ import annotations

import functools
import re
from typing import Any

from donna_nas.errors import UserError


def parse_size(text: str, flag: str = "--size") -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``192x640``)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise UserError(f"{flag}: expected HEIGHTxWIDTH such as 192x640, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def check_out_dir(path, flag: str = "--out") -> None:
    """``path`` must be a folder or not exist yet (one line instead of a later NotADirectoryError)."""
    from pathlib import Path

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {p}: is a file, not a folder; pass a folder (new or existing) or move the file away")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {p}: {parent} is a file, not a folder; pass a path inside a folder")
            break


def check_out_file(path, flag: str = "--out") -> None:
    """``path`` must be a file or not exist yet, inside a folder."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise UserError(f"{flag} {p}: is a folder; pass a file name (e.g. {p / 'out'}{p.suffix or ''})")
    if p.parent.exists() and not p.parent.is_dir():
        raise UserError(f"{flag} {p}: {p.parent} is a file, not a folder; pass a path inside a folder")
    check_out_dir(p.parent, flag)


def check_writable(folder) -> None:
    """Create ``folder`` and a file in it, then remove the file: a read-only or full disk fails here,
    as one line (the CLI's OSError handler), before a long job computes what it could not save."""
    import os
    import tempfile
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
    os.close(fd)
    os.unlink(probe)


def same_path(a, b) -> bool:
    from pathlib import Path

    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return str(a) == str(b)


# --- defaults: options that mirror a config field default to None ("the config's default"), and
# their --help shows the config's value, read from the config's source so that building the CLI
# imports neither torch nor the training code.

@functools.lru_cache(maxsize=None)
def _source_defaults(ref: str) -> dict:
    """The default expressions of the dataclass fields, or of the function's parameters, that
    ``ref`` (``"donna_nas.module:Name"``) names, read from the module's source."""
    import ast
    from pathlib import Path

    module, _, name = ref.partition(":")
    path = Path(__file__).resolve().parents[1].joinpath(*module.split(".")[1:]).with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return {s.target.id: s.value for s in node.body
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.value is not None}
        if isinstance(node, ast.FunctionDef) and node.name == name:
            a = node.args
            pos = [p.arg for p in a.posonlyargs + a.args]
            out = dict(zip(pos[len(pos) - len(a.defaults):], a.defaults))
            out.update({p.arg: d for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None})
            return out
    raise LookupError(f"{ref}: no class or function {name} in {path}")


def default_of(ref: str, name: str) -> Any:
    """The default of field (or parameter) ``name`` of ``ref`` (``"donna_nas.tasks.depth.run:DepthConfig"``);
    KeyError when it has none, ValueError when it is not a literal."""
    import ast

    return ast.literal_eval(_source_defaults(ref)[name])


def has_default(ref: str, name: str) -> bool:
    return name in _source_defaults(ref)


def show_value(value: Any) -> str:
    """A default as the command line writes it (``(192, 640)`` → ``192x640``)."""
    if isinstance(value, tuple) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    return str(value)


def with_default(text: str, default: Any) -> str:
    """``text`` followed by ``[default: DEFAULT]``, as typer shows the default of an option whose
    default is not None."""
    import typer.core

    shown = f"[default: {default if isinstance(default, str) else show_value(default)}]"
    if getattr(typer.core, "DEFAULT_MARKUP_MODE", None) == "rich":
        shown = "\\" + shown  # a literal bracket, not rich markup
    return f"{text} {shown}" if text else shown


def config_help(ref: str, name: str, text: str = "") -> str:
    """Help of an option that mirrors field ``name`` of ``ref``: ``text`` and the field's default."""
    return with_default(text, default_of(ref, name))


def given(**values: Any) -> dict[str, Any]:
    """The options the user gave: those that are not None (None: the config's default)."""
    return {k: v for k, v in values.items() if v is not None}


def threads_option():
    """``--threads N`` for every command that trains or times (``runtime.threads.set_threads``)."""
    import typer

    from donna_nas.runtime.threads import THREADS_HELP

    return typer.Option(None, "--threads", help=THREADS_HELP, show_default=False)
