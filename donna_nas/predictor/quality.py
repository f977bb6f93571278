"""How well the selected predictor ranks architectures, and the warning when it does not.

``build-supernet`` stores the ridge predictor's Kendall τ in ``predictor.json``:
``test_kendall_tau`` (held-out architectures never used to fit) and ``cv_kendall_tau``
(out-of-fold on the training architectures). The held-out τ is used when it is a number, else the
cross-validated one; below ``TAU_WARN`` every report that shows search results and the CLI warn
that the ranking — and so the selected architecture — is unreliable.

Pure Python (no numpy, no torch): the search layer reads it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TAU_WARN", "PredictorQuality"]

TAU_WARN = 0.5


def _number(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class PredictorQuality:
    """Kendall τ of a predictor (``None``: the file stores none) and which τ it is."""

    tau: float | None
    kind: str | None = None          # "held-out" | "cross-validated"
    n: int | None = None             # architectures the τ was computed on
    source: str = "predictor"

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str = "predictor") -> "PredictorQuality":
        held, cv = _number(obj.get("test_kendall_tau")), _number(obj.get("cv_kendall_tau"))
        if held is not None:
            n = obj.get("n_test")
            return cls(held, "held-out", int(n) if isinstance(n, int) else None, source)
        if cv is not None:
            n = obj.get("n_train")
            return cls(cv, "cross-validated", int(n) if isinstance(n, int) else None, source)
        return cls(None, None, None, source)

    @classmethod
    def from_file(cls, path: str | Path) -> "PredictorQuality":
        try:
            obj = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return cls(None, source=str(path))
        return cls.from_json(obj if isinstance(obj, dict) else {}, str(path))

    @property
    def reliable(self) -> bool | None:
        """False below ``TAU_WARN``, True at or above it, None when unknown."""
        return None if self.tau is None else self.tau >= TAU_WARN

    def describe(self) -> str:
        """``Kendall τ 0.33 (held-out, 3 architectures)`` or ``Kendall τ unknown (...)``."""
        if self.tau is None:
            return "predictor Kendall τ unknown (the predictor file stores none)"
        n = f", {self.n} architectures" if self.n else ""
        return f"predictor Kendall τ {self.tau:.2f} ({self.kind}{n})"

    def warning(self) -> str | None:
        """The warning line when τ < ``TAU_WARN``; ``None`` otherwise."""
        if self.reliable is not False:
            return None
        return (f"warning: {self.describe()} is below {TAU_WARN}: the predictor's ranking of "
                f"architectures is unreliable, so the selected architecture may not be the best one")

    def to_json(self) -> dict[str, Any]:
        return {"kendall_tau": self.tau, "tau_kind": self.kind, "n": self.n,
                "reliable": self.reliable, "warning": self.warning()}
