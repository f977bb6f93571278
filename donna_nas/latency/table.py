"""Latency tables: the CSV format, its validation, and ``LookupTable``.

A table row is one op instance (its canonical key, see ``OpInstance.key``) measured on one
device at one precision. Searches sum rows, so a silently wrong row (NaN, zero, a duplicate that
disagrees, rows from two devices) would corrupt every latency the search sees: loading therefore
validates everything and reports all bad rows in one error.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

from donna_nas.errors import UserError
from donna_nas.latency.base import LatencySource, MissingKeysError
from donna_nas.runtime.config_file import read_text
from donna_nas.runtime.io import atomic_path

COLUMNS = ("op", "latency_ms", "std_ms", "device", "precision", "runtime", "source")
OPTIONAL_COLUMNS = ("fixed_for",)
"""``fixed_for`` (optional): an input size ``HxW``; rows with it are ops every architecture at
that input size runs (e.g. a fixed classification head) and are added to each architecture's sum."""
PRECISIONS = ("fp32", "fp16", "int8", "unknown")
"""``unknown``: the source does not state it (e.g. the OFA Note10 table)."""
MAX_LISTED = 5


@dataclass(frozen=True)
class TableRow:
    op: str
    latency_ms: float
    std_ms: float
    device: str
    precision: str
    runtime: str
    source: str
    fixed_for: str = ""


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:MAX_LISTED])
    return shown + (f" (+{len(rows) - MAX_LISTED} more)" if len(rows) > MAX_LISTED else "")


def parse_rows(records: list[dict[str, str]], where: str, header: Iterable[str]) -> list[TableRow]:
    """Validate raw CSV records (row numbers count the header as line 1) into ``TableRow``s."""
    header = list(header)
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise UserError(f"{where}: missing column(s) {missing}; a latency table needs the columns "
                        f"{', '.join(COLUMNS)}")
    if not records:
        raise UserError(f"{where}: the table has no rows")
    problems: dict[str, list[int]] = {}
    rows: list[TableRow] = []
    for i, rec in enumerate(records, start=2):
        def bad(why: str) -> None:
            problems.setdefault(why, []).append(i)

        op = (rec.get("op") or "").strip()
        if not op:
            bad("empty op key")
        values = {}
        for col in ("latency_ms", "std_ms"):
            text = (rec.get(col) or "").strip()
            try:
                v = float(text)
            except ValueError:
                bad(f"{col} is not a number")
                v = math.nan
            else:
                if math.isnan(v) or math.isinf(v):
                    bad(f"{col} is NaN or infinite")
                elif v < 0:
                    bad(f"{col} is negative")
                elif v == 0 and col == "latency_ms":
                    bad("latency_ms is zero")
            values[col] = v
        prec = (rec.get("precision") or "").strip()
        if prec not in PRECISIONS:
            bad(f"precision must be one of {', '.join(PRECISIONS)}")
        if not (rec.get("device") or "").strip():
            bad("empty device")
        rows.append(TableRow(op, values["latency_ms"], values["std_ms"],
                             (rec.get("device") or "").strip(), prec,
                             (rec.get("runtime") or "").strip(), (rec.get("source") or "").strip(),
                             (rec.get("fixed_for") or "").strip()))
    if problems:
        parts = [f"{why} (rows {_rows_text(r)})" for why, r in problems.items()]
        raise UserError(f"{where}: invalid rows: " + "; ".join(parts))
    _check_consistency(rows, where)
    return rows


def _check_consistency(rows: list[TableRow], where: str) -> None:
    first: dict[str, tuple[int, TableRow]] = {}
    conflicts = []
    for i, row in enumerate(rows, start=2):
        if row.op in first:
            j, other = first[row.op]
            if (other.latency_ms, other.std_ms, other.fixed_for) != (row.latency_ms, row.std_ms,
                                                                     row.fixed_for):
                conflicts.append(f"{row.op!r} (rows {j} and {i})")
        else:
            first[row.op] = (i, row)
    if conflicts:
        more = f" (+{len(conflicts) - 3} more)" if len(conflicts) > 3 else ""
        raise UserError(f"{where}: duplicate op keys with different values: "
                        f"{'; '.join(conflicts[:3])}{more}; keep one row per key")
    for col in ("device", "precision"):
        seen: dict[str, int] = {}
        for i, row in enumerate(rows, start=2):
            seen.setdefault(getattr(row, col), i)
        if len(seen) > 1:
            desc = ", ".join(f"{v!r} (first at row {i})" for v, i in seen.items())
            raise UserError(f"{where}: mixed {col}s {desc}; a table holds one {col}, "
                            f"split it into one table per {col}")


class LookupTable(LatencySource):
    """Latency of op instances from a measured table (one device, one precision)."""

    is_additive = True

    def __init__(self, rows: Iterable[TableRow], path: str | Path | None = None):
        rows = list(rows)
        self.path = Path(path) if path is not None else None
        if rows:
            _check_consistency(rows, self.name)
        self.rows: dict[str, TableRow] = {}
        for r in rows:
            self.rows.setdefault(r.op, r)

    # ------------------------------------------------------------------ io
    @classmethod
    def from_csv(cls, path: str | Path) -> "LookupTable":
        path = Path(path)
        if not path.exists():
            raise UserError(f"{path}: latency table not found")
        text = read_text(path, f"save the latency table as UTF-8 CSV with the columns {', '.join(COLUMNS)}")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        records = list(reader)
        return cls(parse_rows(records, str(path), header), path)

    def to_csv(self, path: str | Path) -> None:
        """Write atomically, sorted by key (stable diffs)."""
        with_fixed = any(r.fixed_for for r in self.rows.values())
        cols = list(COLUMNS) + (["fixed_for"] if with_fixed else [])
        with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for key in sorted(self.rows):
                d = asdict(self.rows[key])
                w.writerow([_fmt(d[c]) for c in cols])
        self.path = Path(path)

    # ------------------------------------------------------------------ queries
    @property
    def name(self) -> str:
        return str(self.path) if self.path else "latency table"

    @property
    def device(self) -> str:
        return next(iter(self.rows.values())).device if self.rows else ""

    @property
    def precision(self) -> str:
        return next(iter(self.rows.values())).precision if self.rows else ""

    def keys(self) -> list[str]:
        return list(self.rows)

    def __contains__(self, key: object) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def lookup(self, key: str) -> float:
        row = self.rows.get(key)
        if row is None:
            raise self.missing_error([key])
        return row.latency_ms

    def missing(self, keys: Iterable[str]) -> list[str]:
        return list(dict.fromkeys(k for k in keys if k not in self.rows))

    def recorded_latencies(self, keys: Iterable[str]) -> dict[str, float]:
        return {k: self.rows[k].latency_ms for k in keys if k in self.rows}

    def latency_of(self, keys: list[str], *, space: str = "SPACE", size: str = "HxW") -> float:
        """Sum of the rows of ``keys`` (repeats count every time)."""
        missing = self.missing(keys)
        if missing:
            raise self.missing_error(missing, space=space, size=size)
        return float(sum(self.rows[k].latency_ms for k in keys))

    def missing_error(self, missing: list[str], space: str = "SPACE",
                      size: str = "HxW", needed: int | None = None) -> MissingKeysError:
        out = self.path or "table.csv"
        if self.precision in ("", "fp32", "int8"):
            cmd = (f"donna-nas latency measure --space {space} --size {size} "
                   f"--precision {self.precision or 'fp32'} --out {out}")
        else:  # a device table (a phone's): this CPU cannot time its ops for it
            cmd = (f"the device that made {out} (precision {self.precision}): `donna-nas latency export-blocks "
                   f"--space {space} --size {size} --out DIR` writes the ops as ONNX files to time there; then add the rows")
        return MissingKeysError(missing, self.name, cmd)

    def op_latencies(self, ops, space=None, input_size=None) -> list[float]:
        keys = [op.key for op in ops]
        space_arg = (space.source or "SPACE") if space is not None else "SPACE"
        size = f"{input_size[0]}x{input_size[1]}" if input_size else "HxW"
        missing = self.missing(keys)
        if missing:
            raise self.missing_error(missing, space=space_arg, size=size)
        return [self.rows[k].latency_ms for k in keys]

    def fixed_keys(self, input_size: tuple[int, int]) -> list[str]:
        tag = f"{input_size[0]}x{input_size[1]}"
        return sorted(k for k, r in self.rows.items() if r.fixed_for == tag)

    def fixed_latency(self, input_size: tuple[int, int]) -> float:
        return float(sum(self.rows[k].latency_ms for k in self.fixed_keys(input_size)))

    # ------------------------------------------------------------------ edits
    def merged(self, rows: Iterable[TableRow]) -> "LookupTable":
        """A new table with ``rows`` added (existing keys are kept, as a resumed measurement does)."""
        out = LookupTable(list(self.rows.values()) + [r for r in rows if r.op not in self.rows],
                          self.path)
        return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.8g}"
    return str(v)


def row_fields() -> list[str]:
    return [f.name for f in fields(TableRow)]
