"""How well the selected predictor ranks architectures, and the warning when it does not.

``build-supernet`` stores the ridge predictor's Kendall τ in ``predictor.json``:
``test_kendall_tau`` (held-out architectures never used to fit) and ``cv_kendall_tau``
(out-of-fold on the training architectures). The held-out τ is used when it was taken over at
least ``MIN_TAU_ARCHS`` architectures, else the cross-validated one if that was, else whichever is
a number. Below ``TAU_WARN`` every report that shows search results and the CLI warn that the
ranking — and so the selected architecture — is unreliable. They warn too when τ comes from fewer
than ``MIN_TAU_ARCHS`` architectures: τ over 2 architectures is ±1 whatever the predictor, over 3
it is ±1 or ±1/3, so it measures nothing.

A *constant* predictor (``constant`` in ``predictor.json``: its predictions over the training
architectures spread less than ``predictor.fit.CONSTANT_SPREAD`` of the targets', as when ridge
shrinks every coefficient to nothing) ranks nothing, whatever τ says: leaving one architecture out
of a mean moves the mean away from it, so the leave-one-out τ of a constant predictor is −1 by
construction. Its warning says so instead of quoting that τ as a ranking.

Pure Python (no numpy, no torch): the search layer reads it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TAU_WARN", "MIN_TAU_ARCHS", "PredictorQuality"]

TAU_WARN = 0.5
#: Fewest architectures a Kendall τ must be taken over to say anything about a ranking.
MIN_TAU_ARCHS = 5


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
    constant: bool = False           # every architecture gets the same prediction (module docstring)

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str = "predictor") -> "PredictorQuality":
        def count(key: str) -> int | None:
            n = obj.get(key)
            return int(n) if isinstance(n, int) else None

        constant = obj.get("constant") is True
        found = [cls(tau, kind, count(n_key), source, constant)
                 for tau, kind, n_key in ((_number(obj.get("test_kendall_tau")), "held-out", "n_test"),
                                          (_number(obj.get("cv_kendall_tau")), "cross-validated", "n_train"))
                 if tau is not None]
        for q in found:  # held-out first, if it was taken over enough architectures
            if q.measured:
                return q
        return found[0] if found else cls(None, None, None, source, constant)

    @classmethod
    def from_file(cls, path: str | Path) -> "PredictorQuality":
        try:
            obj = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return cls(None, source=str(path))
        return cls.from_json(obj if isinstance(obj, dict) else {}, str(path))

    @property
    def measured(self) -> bool:
        """Whether τ was taken over at least ``MIN_TAU_ARCHS`` architectures (an unknown count passes)."""
        return self.tau is not None and (self.n is None or self.n >= MIN_TAU_ARCHS)

    @property
    def reliable(self) -> bool | None:
        """False when constant, below ``TAU_WARN`` or over too few architectures, True otherwise,
        None when unknown."""
        if self.constant:
            return False
        if self.tau is None:
            return None
        # τ is a ratio of pair counts: 14/28 arrives as 0.4999999999999999, and is 0.5
        return self.measured and self.tau >= TAU_WARN - 1e-9

    def describe(self) -> str:
        """``Kendall τ 0.33 (held-out, 3 architectures)`` or ``Kendall τ unknown (...)``."""
        if self.tau is None:
            return "predictor Kendall τ unknown (the predictor file stores none)"
        n = f", {self.n} architectures" if self.n else ""
        return f"predictor Kendall τ {self.tau:.2f} ({self.kind}{n})"

    def verdict(self) -> str:
        """A few words for a plot title: why the ranking cannot be trusted, or ``""``."""
        if self.reliable is not False:
            return ""
        if self.constant:
            return "constant: ranks nothing"
        if not self.measured:
            return f"over < {MIN_TAU_ARCHS} architectures: ranking unmeasured"
        return f"< {TAU_WARN}: ranking unreliable"

    def warning(self) -> str | None:
        """The warning line when τ < ``TAU_WARN`` or over fewer than ``MIN_TAU_ARCHS`` architectures;
        ``None`` otherwise."""
        if self.reliable is not False:
            return None
        if self.constant:
            why = ("what leaving one out of a constant gives" if self.kind == "cross-validated"
                   else "an order of rounding-level differences")
            tau = f" (its {self.kind} τ {self.tau:.2f} is {why})" if self.tau is not None else ""
            return ("warning: the predictor gives every architecture the same prediction: it ranks nothing"
                    f"{tau}, so the selected architecture is not chosen for accuracy")
        if not self.measured:
            return (f"warning: {self.describe()} is taken over fewer than {MIN_TAU_ARCHS} architectures, "
                    f"too few to show a ranking: the predictor's ranking of architectures is unmeasured, "
                    f"so the selected architecture may not be the best one")
        return (f"warning: {self.describe()} is below {TAU_WARN}: the predictor's ranking of "
                f"architectures is unreliable, so the selected architecture may not be the best one")

    def to_json(self) -> dict[str, Any]:
        return {"kendall_tau": self.tau, "tau_kind": self.kind, "n": self.n,
                "reliable": self.reliable, "constant": self.constant, "warning": self.warning()}
