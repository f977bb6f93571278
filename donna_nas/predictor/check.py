"""Is a predictor file meant for this space? (stored fingerprint, every block covered)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from donna_nas.errors import UserError

__all__ = ["check_predictor_space"]


def check_predictor_space(path_or_obj: str | Path | dict[str, Any], space) -> None:
    """Refuse a predictor fitted on another space, or a strict one with a block that has no terms.

    ``build-supernet`` stores ``space`` and ``space_fingerprint`` in ``predictor.json``; a file
    without them (hand-written) is only checked for its blocks.
    """
    if isinstance(path_or_obj, dict):
        obj, src = path_or_obj, "<predictor>"
    else:
        src = str(path_or_obj)
        try:
            obj = json.loads(Path(path_or_obj).read_text())
        except FileNotFoundError:
            raise UserError(f"{src}: predictor file not found (written by `donna-nas build-supernet`)") from None
        except json.JSONDecodeError as exc:
            raise UserError(f"{src}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{src}: a predictor must be a JSON object with 'kind', 'intercept', 'terms'")
    stored = obj.get("space_fingerprint")
    if stored and stored != space.fingerprint():
        raise UserError(f"{src}: fitted on space {obj.get('space', '?')!r} (fingerprint {stored}), not on "
                        f"{space.name!r} ({space.fingerprint()}); use the predictor.json of a build-supernet "
                        "run of this space")
    terms = obj.get("terms")
    if not isinstance(terms, dict):
        return  # the loader reports the malformed field
    if bool(obj.get("strict", True)):
        empty = [b.name for b in space.blocks if not terms.get(b.name)]
        if empty:
            raise UserError(f"{src}: terms.{empty[0]} is empty or missing ({len(empty)} block(s) without terms); "
                            "a strict predictor needs terms for every block of the space (or set \"strict\": false)")
