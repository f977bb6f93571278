"""Phone tables: export every op instance as a standalone ONNX file, import the device's timings.

Measuring on a phone happens outside donna-nas (the vendor's profiler, ``benchmark_model``,
ONNX Runtime's perf test ...). ``export_blocks`` writes one ONNX file per op instance plus a
``manifest.csv`` mapping each file to its canonical op key; ``import_results`` joins the
device's ``file,latency_ms[,std_ms]`` results with the manifest into a validated table.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Sequence

import torch

from donna_nas.errors import UserError
from donna_nas.latency.ort import export_onnx, op_input_shape, quantize_int8, randomize_bn
from donna_nas.latency.table import LookupTable, parse_rows
from donna_nas.nn.ops import make_layer
from donna_nas.runtime.io import atomic_path
from donna_nas.space.ops import OpInstance, all_ops, unique_ops

MANIFEST_COLUMNS = ("op", "file", "input_shape", "precision")


def file_name(op: OpInstance) -> str:
    """Short, stable, filesystem-safe name: kind + 10 hex digits of the key's hash."""
    return f"{op.kind}_{hashlib.sha1(op.key.encode()).hexdigest()[:10]}.onnx"


def ops_for(space, input_size: tuple[int, int], archs: int | None = None, seed: int = 0
            ) -> list[OpInstance]:
    """Every op instance of the space, or only those of ``archs`` sampled architectures."""
    if archs is None:
        return all_ops(space, input_size)
    return unique_ops(space, [space.sample(seed + i) for i in range(archs)], input_size)


def export_blocks(ops: Sequence[OpInstance], out_dir: str | Path, precision: str = "fp32",
                  progress: bool = True) -> Path:
    """Write ``out_dir/<file>.onnx`` for each op and ``out_dir/manifest.csv``; existing files are
    kept (resumable). Returns the manifest path."""
    if precision not in ("fp32", "int8"):
        raise UserError(f"--precision must be fp32 or int8, got {precision!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeRemainingColumn)

    rows = []
    with Progress(TextColumn("exporting ops"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), disable=not progress) as bar:
        task = bar.add_task("export", total=len(ops))
        for op in ops:
            name = file_name(op)
            shape = op_input_shape(op)
            path = out_dir / name
            if not path.exists():
                torch.manual_seed(0)
                data = export_onnx(randomize_bn(make_layer(op)), shape)
                if precision == "int8":
                    data = quantize_int8(data, shape, image=op.kind == "stem")
                with atomic_path(path) as tmp:
                    tmp.write_bytes(data)
            rows.append((op.key, name, "x".join(map(str, shape)), precision))
            bar.advance(task)
    manifest = out_dir / "manifest.csv"
    with atomic_path(manifest) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(MANIFEST_COLUMNS)
        w.writerows(rows)
    return manifest


def read_manifest(path: str | Path) -> dict[str, dict[str, str]]:
    """file name -> manifest row."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: manifest not found (write it with donna-nas latency export-blocks)")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {missing}; expected {', '.join(MANIFEST_COLUMNS)}")
        return {r["file"]: r for r in reader}


def import_results(results: str | Path, manifest: str | Path, device: str,
                   out: str | Path | None = None, runtime: str = "device profiler") -> LookupTable:
    """Table from device timings. ``results`` is a CSV with ``file`` (an exported file name, a path
    to it, or its op key in an ``op`` column) and ``latency_ms`` (and optionally ``std_ms``)."""
    results = Path(results)
    if not results.exists():
        raise UserError(f"{results}: results file not found")
    if not device.strip():
        raise UserError("--device: give the device's name, e.g. 'Galaxy S23 (Snapdragon 8 Gen 2) CPU'")
    entries = read_manifest(manifest)
    by_key = {r["op"]: r for r in entries.values()}
    with results.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        recs = list(reader)
    if "latency_ms" not in header or not ({"file", "op"} & set(header)):
        raise UserError(f"{results}: needs a 'latency_ms' column and a 'file' (or 'op') column; "
                        f"has {header}")
    records, unknown = [], []
    for i, rec in enumerate(recs, start=2):
        if rec.get("file"):
            entry = entries.get(Path(rec["file"].strip()).name)
        else:
            entry = by_key.get((rec.get("op") or "").strip())
        if entry is None:
            unknown.append(str(i))
            continue
        records.append({"op": entry["op"], "latency_ms": rec["latency_ms"],
                        "std_ms": rec.get("std_ms") or "0", "device": device,
                        "precision": entry["precision"], "runtime": runtime,
                        "source": f"imported from {results.name}"})
    if unknown:
        more = f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise UserError(f"{results}: rows {', '.join(unknown[:5])}{more} name files/ops that are not "
                        f"in the manifest {manifest}")
    table = LookupTable(parse_rows(records, str(results), list(records[0]) if records else
                                   ["op", "latency_ms", "std_ms", "device", "precision", "runtime",
                                    "source"]), out)
    if out is not None:
        table.to_csv(out)
    return table


def missing_from_results(table: LookupTable, manifest: str | Path) -> list[str]:
    """Manifest keys the imported table does not cover."""
    return [r["op"] for r in read_manifest(manifest).values() if r["op"] not in table]


