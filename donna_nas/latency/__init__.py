"""Latency of architectures from on-device measurements: the ``LatencySource`` interface, lookup
tables, ONNX Runtime measurement, a measure-once cache, validation of additivity, phone-table
export/import and the shipped OFA Note10 table.

Importing this package does not import torch: ``OrtMeasurer`` (which exports op modules to ONNX)
is loaded on first use."""

from donna_nas.latency.base import LatencySource, MappingLatency, MissingKeysError
from donna_nas.latency.cached import CachedMeasurer
from donna_nas.latency.table import LookupTable, TableRow

__all__ = ["CachedMeasurer", "LatencySource", "LookupTable", "MappingLatency", "MissingKeysError",
           "OrtMeasurer", "TableRow", "shipped_tables_dir"]


def __getattr__(name: str):
    if name == "OrtMeasurer":
        from donna_nas.latency.ort import OrtMeasurer

        return OrtMeasurer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def shipped_tables_dir():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "resources" / "latency_tables"
