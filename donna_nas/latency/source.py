"""Deprecated location: the latency interface is ``donna_nas.latency.base``, the caching measurer
``donna_nas.latency.cached`` and the op lists ``donna_nas.space.ops``. Kept so old imports work."""

from donna_nas.latency.base import LatencySource
from donna_nas.latency.cached import CachedMeasurer
from donna_nas.space.ops import all_ops, block_input_hw, block_layer_ops, stem_op, unique_ops

__all__ = ["CachedMeasurer", "LatencySource", "all_ops", "block_input_hw", "block_layer_ops",
           "stem_op", "unique_ops"]
