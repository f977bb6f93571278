"""Small parsers shared by CLI commands."""

from __future__ import annotations

import re

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


def same_path(a, b) -> bool:
    from pathlib import Path

    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return str(a) == str(b)
