"""Multi-objective architecture search: predicted metric vs latency (and params/MACs).

``search(space, predictor, latency, constraints, method)`` is the entry point; ``exact`` computes
the exact Pareto front for additive objectives, ``nsga`` runs optuna's NSGA-II, ``pareto`` holds
dominance and hypervolume, ``report`` writes tables, plot and ``selected.json``.
"""

from donna_nas.search.api import METHODS, SearchResult, search
from donna_nas.search.objectives import (
    Constraints,
    Evaluation,
    Evaluator,
    LinearBlockPredictor,
    Predictor,
    SyntheticLatency,
    TableLatency,
    synthetic_predictor,
)

__all__ = ["METHODS", "Constraints", "Evaluation", "Evaluator", "LinearBlockPredictor", "Predictor",
           "SearchResult", "SyntheticLatency", "TableLatency", "search", "synthetic_predictor"]
