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
