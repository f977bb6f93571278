"""Latency of architectures from on-device measurements: lookup tables, ONNX Runtime
measurement, a measure-once cache, validation of additivity, phone-table export/import and the
shipped OFA Note10 table."""

from donna_nas.latency.source import CachedMeasurer, LatencySource
from donna_nas.latency.table import LookupTable, MissingKeysError, TableRow
from donna_nas.latency.ort import OrtMeasurer

__all__ = ["CachedMeasurer", "LatencySource", "LookupTable", "MissingKeysError", "OrtMeasurer",
           "TableRow", "shipped_tables_dir"]


def shipped_tables_dir():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "resources" / "latency_tables"
