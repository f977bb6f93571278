"""Multi-objective architecture search: predicted metric vs latency (and params/MACs).

``search(space, predictor, latency, constraints, method)`` is the entry point; ``exact`` computes
the exact Pareto front for additive objectives, ``nsga`` runs optuna's NSGA-II, ``pareto`` holds
dominance and hypervolume, ``report`` writes tables, plot and ``selected.json``.
"""

import sys as _sys
import types as _types

from donna_nas.search.api import METHODS, SearchResult, search
from donna_nas.search.objectives import (
    AdditivePredictor,
    Constraints,
    Evaluation,
    Evaluator,
    LinearBlockPredictor,
    Predictor,
    SyntheticLatency,
    TableLatency,
    synthetic_predictor,
)

__all__ = ["METHODS", "AdditivePredictor", "Constraints", "Evaluation", "Evaluator", "LinearBlockPredictor", "Predictor",
           "SearchResult", "SyntheticLatency", "TableLatency", "search", "synthetic_predictor"]


class _SearchPackage(_types.ModuleType):
    """The package is also the entry point, so ``from donna_nas import search`` gives one object
    whichever was imported first: ``search(space, predictor, latency, ...)`` calls
    ``donna_nas.search.api.search``, and ``search.Constraints`` etc. are the package's names."""

    def __call__(self, *args, **kwargs) -> SearchResult:
        return search(*args, **kwargs)


_sys.modules[__name__].__class__ = _SearchPackage
