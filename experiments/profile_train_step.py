"""Where a depth training step spends its CPU time: ``torch.profiler`` over a few steps of
``bench_train.synthetic_step`` (depth net, pose net on two pairs, 4-scale Monodepth2 loss, fused
Adam; random frames), grouped into convolutions forward, convolutions backward, Adam and the rest,
and the convolution calls by input shape:

    python experiments/profile_train_step.py --steps 5

Writes ``experiments/results/profile_train_step.{md,csv}`` (``--record NAME`` for another name):
the groups, the 15 ops with the most self CPU time and the ``--shapes`` costliest convolution shapes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from donna_nas.runtime.io import write_text_atomic

from _provenance import results_header, write_csv  # experiments/ is on sys.path when a script here runs
from bench_train import synthetic_step

RESULTS = Path(__file__).resolve().parent / "results"
GROUPS = (("convolution backward", ("convolution_backward", "conv2d_backward", "slow_conv2d_backward")),
          ("convolution forward", ("mkldnn_convolution", "slow_conv2d_forward", "_convolution")),
          # nn/small_map_conv.py's path for the last stage's 2×6 maps (the only 2-d matrix products of a step)
          ("small-map convolutions (im2col + GEMM)", ("aten::mm", "aten::im2col", "aten::col2im")),
          ("Adam", ("_fused_adam",)))


def group_of(name: str) -> str:
    return next((g for g, keys in GROUPS if any(k in name for k in keys)), "everything else")


def _shapes(event) -> str:
    """The tensor shapes of a profiler event grouped by input shape, e.g. 4×512×2×6, 512×512×3×3."""
    return ", ".join("×".join(map(str, sh)) for sh in event.input_shapes if sh)


def main() -> None:
    from torch.profiler import ProfilerActivity, profile

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", default="64x192")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--record", default="profile_train_step")
    ap.add_argument("--shapes", type=int, default=10, help="convolution calls by input shape to list")
    ap.add_argument("--before", action="store_true",
                    help="the trainer before its three speed choices: oneDNN on the last stage's small maps "
                         "(SMALL_MAP_PIXELS = 0) and one pose call per frame pair on full-size frames")
    a = ap.parse_args()
    torch.set_num_threads(1)
    h, w = (int(v) for v in a.size.split("x"))
    if a.before:
        import donna_nas.nn.small_map_conv as smc

        smc.SMALL_MAP_PIXELS = 0  # looked up at call time: every convolution through ATen
    step = synthetic_step(a.backbone, h, w, a.batch, True, pose_batch_pairs=not a.before,
                          pose_downsample=1 if a.before else None)
    for _ in range(2):
        step()
    t0 = time.process_time()
    for _ in range(a.steps):
        step()
    ms_per_step = (time.process_time() - t0) / a.steps * 1e3
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(a.steps):
            step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    # the convolutions by input shapes: which layers the convolution time goes to
    conv_shapes = sorted((e for e in prof.key_averages(group_by_input_shape=True)
                          if e.self_cpu_time_total > 0 and group_of(e.key) != "everything else" and "conv" in e.key),
                         key=lambda e: -e.self_cpu_time_total)[:a.shapes]
    total = sum(e.self_cpu_time_total for e in events)
    groups: dict[str, float] = {}
    for e in events:
        groups[group_of(e.key)] = groups.get(group_of(e.key), 0.0) + e.self_cpu_time_total
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]

    RESULTS.mkdir(exist_ok=True)
    rows = [{"kind": "group", "name": g, "self_cpu_share": round(t / total, 4), "calls": ""}
            for g, t in sorted(groups.items(), key=lambda kv: -kv[1])]
    rows += [{"kind": "op", "name": e.key, "self_cpu_share": round(e.self_cpu_time_total / total, 4), "calls": e.count}
             for e in top]
    rows += [{"kind": "conv shape", "name": f"{e.key} {_shapes(e)}",
              "self_cpu_share": round(e.self_cpu_time_total / total, 4), "calls": e.count} for e in conv_shapes]
    write_csv(RESULTS / f"{a.record}.csv", rows)
    md = results_header("Where a depth training step spends its CPU time",
                        f", 1 torch thread; torch {torch.__version__}")
    trainer = ("the trainer before its small-map GEMM, batched pose call and half-size pose net (`--before`)" if a.before
               else "the current trainer")
    md += [f"Scale: {a.backbone}, {h}×{w}, batch {a.batch}; one step = depth net + pose net on 2 pairs + 4-scale "
           f"Monodepth2 loss + fused Adam on random frames, {trainer}; {a.steps} profiled steps after warm-up. "
           f"{ms_per_step:.0f} CPU-ms per step unprofiled.", "",
           "| group | share of self CPU time |", "|---|---:|"]
    md += [f"| {g} | {t / total:.1%} |" for g, t in sorted(groups.items(), key=lambda kv: -kv[1])]
    md += ["", "| op | share | calls |", "|---|---:|---:|"]
    md += [f"| `{e.key}` | {e.self_cpu_time_total / total:.1%} | {e.count} |" for e in top]
    md += ["", "Convolutions by shape (activation in the forward; the output gradient and the input in the "
               "backward; then the weight):", "",
           "| op | shapes | share | calls |", "|---|---|---:|---:|"]
    md += [f"| `{e.key}` | {_shapes(e)} | {e.self_cpu_time_total / total:.1%} | {e.count} |" for e in conv_shapes]
    write_text_atomic(RESULTS / f"{a.record}.md", "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
