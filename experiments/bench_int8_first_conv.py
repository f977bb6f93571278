"""What the INT8 model loses in its stem convolution, for the teacher and the searched model of a
finished quickstart: the stem's weights in 8 bits (as every other layer), in 7 bits (the default:
no saturation in ONNX Runtime's AVX2 kernel) or the stem left in float
(``donna-nas export --float-first-conv``). In Sq Rel (Eigen protocol on the test split, through ONNX
Runtime) and in latency (the six INT8 models timed side by side, one thread, ``--rounds`` rounds):

    python experiments/bench_int8_first_conv.py runs/quickstart --rounds 2

Writes ``experiments/results/bench_int8_first_conv.{md,csv}`` (``--record NAME`` for another name).
The models are written to a temporary folder: the runs' own exports stay as they are.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
from pathlib import Path

from donna_nas.runtime.io import write_text_atomic

from _provenance import results_header, write_csv  # experiments/ is on sys.path when a script here runs

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("teacher", "searched")
# (label, stem weight bits, stem left in float)
VARIANTS = (("stem weights 8-bit", 8, False), ("stem weights 7-bit (default)", 7, False),
            ("stem conv float", 7, True))


def main() -> None:
    from donna_nas.export.onnx import image_conv_nodes, quantize_qdq_bytes, sigmoid_nodes
    from donna_nas.export.pipeline import _eigen, _frames, measure_fps_side_by_side
    from donna_nas.tasks.depth.evaluate import load_gt
    from donna_nas.tasks.depth.run import load_config, load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="a finished quickstart folder (OUT of `donna-nas quickstart`)")
    ap.add_argument("--calib", type=int, default=16, help="calibration frames (the quickstart's)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--record", default="bench_int8_first_conv")
    a = ap.parse_args()
    out = Path(a.out)
    for name in MODELS:
        if not (out / name / "export" / "model.onnx").is_file():
            sys.exit(f"error: {out / name / 'export' / 'model.onnx'}: not exported; finish `donna-nas quickstart --out {out}`")

    rows, paths = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            run = out / name
            _, info = load_model(run)
            data = load_config(run).data
            size = (int(info["height"]), int(info["width"]))
            fp32 = run / "export" / "model.onnx"
            test = _frames(data, str(Path(data) / "splits" / "test_files.txt"), size)
            gts = load_gt(data)
            calib = _frames(data, str(Path(data) / "splits" / "train_files.txt"), size, limit=a.calib)
            base = _eigen(fp32, test, gts, info)["sq_rel"]
            for k, (variant, bits, float_stem) in enumerate(VARIANTS):
                extra = image_conv_nodes(fp32) if float_stem else []
                p = Path(tmp) / f"{name}_{k}.onnx"
                p.write_bytes(quantize_qdq_bytes(fp32.read_bytes(), [c[None] for c in calib],
                                                 keep_float=sigmoid_nodes(fp32) + extra, stem_weight_bits=bits))
                sq = _eigen(p, test, gts, info)["sq_rel"]
                paths[(name, variant)] = p
                rows.append({"model": name, "variant": variant, "sq_rel_fp32": base, "sq_rel_int8": sq,
                             "int8_cost_pct": 100 * (sq / base - 1), "ms": []})
                print(f"{name}, {variant}: Sq Rel {sq:.4f} (fp32 {base:.4f})", flush=True)
        for r in range(a.rounds):
            fps = measure_fps_side_by_side({f"{k[0]}/{k[1]}": v for k, v in paths.items()}, size, repeats=30, rounds=5)
            for row in rows:
                row["ms"].append(fps[f"{row['model']}/{row['variant']}"].median_ms)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v.median_ms:.2f} ms" for k, v in fps.items()), flush=True)
    for row in rows:
        row["ms_median"] = statistics.median(row.pop("ms"))
    by = {(r["model"], r["variant"]): r for r in rows}
    for row in rows:
        row["latency_vs_8bit"] = row["ms_median"] / by[(row["model"], VARIANTS[0][0])]["ms_median"]
        row["teacher_over_searched"] = by[("teacher", row["variant"])]["ms_median"] / by[("searched", row["variant"])]["ms_median"]

    RESULTS.mkdir(exist_ok=True)
    write_csv(RESULTS / f"{a.record}.csv", rows)
    md = results_header("INT8 with the stem convolution's weights in 8 or 7 bits, or the stem left in float")
    md += [f"Scale: the quickstart's teacher and searched model ({out}), {a.calib} calibration frames, Sq Rel on "
           f"the test split through ONNX Runtime; latency: the six INT8 models timed side by side, one thread, "
           f"batch 1, medians over {a.rounds} rounds.", "",
           "| model | INT8 variant | Sq Rel fp32 | Sq Rel int8 | INT8 cost | latency ms | latency vs 8-bit stem | "
           "teacher / searched latency |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['model']} | {r['variant']} | {r['sq_rel_fp32']:.4f} | {r['sq_rel_int8']:.4f} | "
                  f"{r['int8_cost_pct']:+.1f}% | {r['ms_median']:.2f} | {r['latency_vs_8bit']:.2f}× | "
                  f"{r['teacher_over_searched']:.2f}× |")
    with (out / "quickstart_table.csv").open() as f:  # the run's own no-image baselines
        base = {r["model"]: float(r["sq_rel_fp32"]) for r in csv.DictReader(f) if r["model"] in ("constant", "prior")}
    for name, label in (("constant", "constant depth (no image)"), ("prior", "per-pixel prior (no image)")):
        md.append(f"| {label} | – | {base[name]:.4f} | – | – | – | – | – |")
    worst = max(r["sq_rel_int8"] for r in rows)
    md += ["", f"Every model and variant above beats both baselines on Sq Rel (worst INT8 {worst:.4f} against the "
           f"prior's {base['prior']:.4f})" if worst < min(base.values()) else
           f"**Not every model beats the baselines on Sq Rel**: worst INT8 {worst:.4f}, prior {base['prior']:.4f}."]
    write_text_atomic(RESULTS / f"{a.record}.md", "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
