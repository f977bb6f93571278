"""Depth training throughput on this CPU: images/s and peak RSS for ResNet18/50 at 192x640 and 96x320.

One full Monodepth2 training step (depth net on frame 0, pose net on 2 pairs, 4-scale loss, Adam)
on random frames with the dataset's dict contract; each configuration runs in its own process so
peak RSS (ru_maxrss) is per configuration.

    python experiments/bench_train.py [--batch 2] [--steps 3] [--threads 2]

``--compare REF`` measures the whole trainer (``train_depth`` on a rendered 64x192 world: data
loading, depth + pose nets, 4-scale loss, Adam) of git revision REF and of this checkout side by
side, alternating old and new subprocesses ``--rounds`` times so that load changes hit both, in
images per CPU-second (robust to other jobs sharing the cores) and wall images/s, with peak RSS:

    python experiments/bench_train.py --compare 0182fcb --steps 60 --short 15 --rounds 3 --batch 4 --precisions off bf16

``--photometric`` times the photometric error's analytic backward against autograd through the
composite, alone (forward + backward at the training size) and inside the whole training step
(ResNet18, batch 4), alternating the two in one process, medians of CPU time
(``experiments/results/bench_train_photometric.{md,csv}``):

    python experiments/bench_train.py --photometric --rounds 7 --batch 4

``--kernels`` times, on one thread and alternating in one process (medians of CPU time), the
kernel choices the trainer's docs quote: the 3x3 box mean (depthwise convolution, separable
shifted-slice sums, avg_pool2d) and its adjoint (hand-written against ATen's depthwise-convolution
backward), the reflection pad's backward (slice adjoint against ATen's), the last ResNet
stage's 512-channel 3x3 convolution as im2col + one GEMM (``nn/small_map_conv.py``) against
oneDNN, with GFLOP/s for the convolutions and a plain GEMM, and whole ResNet18 training steps with
each of the trainer's two speed choices (that GEMM; one pose call on both frame pairs) toggled
(``experiments/results/bench_train_kernels.{md,csv}``):

    python experiments/bench_train.py --kernels --rounds 7 --batch 4

``--short N`` adds the steady-state throughput (the marginal cost of steps N+1..steps, so that
construction, first-use imports and the final save cancel out); ``--precisions off bf16`` times
this checkout's trainer in float32 and with ``--mixed-precision bf16`` (bfloat16 autocast).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from donna_nas.runtime.io import write_text_atomic

from _provenance import cpu_model, results_header  # experiments/ is on sys.path when a script here runs

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = [("resnet18", 96, 320), ("resnet18", 192, 640), ("resnet50", 96, 320), ("resnet50", 192, 640)]


def synthetic_step(backbone: str, h: int, w: int, batch: int, fused_adam: bool, pose_batch_pairs: bool = True,
                   pose_downsample: int | None = None):
    """One full training step (depth net, pose net on 2 pairs, 4-scale loss, Adam) on random frames
    with the dataset's dict contract, as a closure; ``pose_downsample`` None is the trainer's default."""
    import torch

    from donna_nas.tasks.depth.run import DepthConfig
    from donna_nas.tasks.depth.train import DepthTrainer

    cfg = DepthConfig(backbone=backbone, height=h, width=w, batch=batch, pose_batch_pairs=pose_batch_pairs)
    if pose_downsample is not None:
        cfg.pose_downsample = pose_downsample
    m = DepthTrainer(cfg).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-4, fused=fused_adam)
    K = torch.tensor([[0.58 * w, 0, 0.5 * w, 0], [0, 1.92 * h, 0.5 * h, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    imgs = torch.rand(batch, 3, 3, h, w)
    b = {"images": imgs, "images_aug": imgs, "K": K.expand(batch, 4, 4), "inv_K": torch.linalg.inv(K).expand(batch, 4, 4)}

    def step():
        loss, _ = m(b)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def _cpu_ms(fn, n: int) -> float:
    """CPU milliseconds per call of ``fn`` over ``n`` calls, after one warm-up call."""
    fn()
    t = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t) / n * 1e3


def one(backbone: str, h: int, w: int, batch: int, steps: int, threads: int) -> dict:
    import resource

    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    step = synthetic_step(backbone, h, w, batch, fused_adam=False)
    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB → MiB on Linux
    return {"backbone": backbone, "size": f"{h}x{w}", "batch": batch, "steps": steps, "threads": threads,
            "images_per_s": round(steps * batch / dt, 3), "s_per_step": round(dt / steps, 3), "peak_rss_mib": round(rss)}


def trainer_run(data: str, h: int, w: int, batch: int, steps: int, mixed_precision: str | None = None) -> dict:
    """One whole-trainer measurement in this process (whichever donna_nas is on the path);
    ``mixed_precision`` is passed to DepthConfig only when given (older trainers lack it)."""
    import resource
    import tempfile

    import torch

    import donna_nas
    from donna_nas.tasks.depth.run import DepthConfig
    from donna_nas.tasks.depth.train import train_depth

    torch.set_num_threads(1)
    extra = {"mixed_precision": mixed_precision} if mixed_precision else {}
    cfg = DepthConfig(data=data, backbone="resnet18", height=h, width=w, batch=batch, epochs=1000,
                      max_steps=steps, checkpoint_every=10**6, seed=0, **extra)
    with tempfile.TemporaryDirectory() as tmp:
        c0, t0 = time.process_time(), time.perf_counter()
        train_depth(cfg, Path(tmp) / "run", progress=False, log=None)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"package": str(Path(donna_nas.__file__).parent), "cpu_s": cpu, "images_per_cpu_s": steps * batch / cpu,
            "images_per_s": steps * batch / wall, "peak_rss_mib": rss}


def compare(ref: str, steps: int, rounds: int, batch: int, size: str, short: int = 0,
            precisions: tuple[str, ...] = ("off",), record: str = "bench_train_compare",
            load: str = "other load not recorded") -> None:
    import os
    import statistics
    import tarfile
    import tempfile

    h, w = (int(v) for v in size.split("x"))
    repo = Path(__file__).resolve().parents[1]
    rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", ref], capture_output=True, text=True,
                         check=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    old_pkg = work / "old"
    old_pkg.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", rev, "donna_nas"],
                             capture_output=True, check=True).stdout
    (work / "old.tar").write_bytes(archive)
    with tarfile.open(work / "old.tar") as tf:
        tf.extractall(old_pkg, filter="data")
    from donna_nas.data.synth import synthesize

    data = synthesize(work / "world", drives=3, frames=30, size=(h, w), seed=0, progress=False)
    def measure(name: str, path: Path, n: int) -> dict:
        env = dict(os.environ, PYTHONPATH=str(path), OMP_NUM_THREADS="1")
        prec = ["--mixed-precision", variants[name][1]] if variants[name][1] else []
        out = subprocess.run([sys.executable, __file__, "--trainer-run", str(data), str(h), str(w),
                              "--batch", str(batch), "--steps", str(n), *prec],
                             capture_output=True, text=True, env=env, cwd=str(work))
        if out.returncode:
            raise SystemExit(f"{name} trainer failed: {out.stderr.strip().splitlines()[-1:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    # name -> (package, mixed_precision passed to the trainer, row label)
    variants = {"old": (old_pkg, None, f"{rev} (before)")}
    for p in precisions:
        variants["new" if p == "off" else f"new-{p}"] = (
            repo, None if p == "off" else p, f"{head} (this checkout)" + ("" if p == "off" else f", --mixed-precision {p}"))
    res: dict[str, list[dict]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, (path, _, _) in variants.items():
            long_run = measure(name, path, steps)
            entry = dict(long_run)
            if short:
                short_run = measure(name, path, short)
                # the marginal cost of (steps - short) more steps: model construction, the optimizer's
                # first-use imports, the first (allocating) step and the final save cancel out
                entry["marginal_images_per_cpu_s"] = (steps - short) * batch / (long_run["cpu_s"] - short_run["cpu_s"])
            res[name].append(entry)
            print(name, r, entry, flush=True)
    rows = []
    for name, (_, _, label) in variants.items():
        rr = res[name]
        row = {"trainer": label, "images_per_cpu_s": round(statistics.median(x["images_per_cpu_s"] for x in rr), 3),
               "images_per_s_wall": round(statistics.median(x["images_per_s"] for x in rr), 3)}
        if short:
            row["steady_images_per_cpu_s"] = round(statistics.median(x["marginal_images_per_cpu_s"] for x in rr), 3)
        row["peak_rss_mib"] = round(max(x["peak_rss_mib"] for x in rr))
        rows.append(row)
    import pandas as pd

    df = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS / f"{record}.csv", df.to_csv(index=False))
    cmd = "python experiments/bench_train.py " + " ".join(sys.argv[1:])
    lines = ["# Whole depth trainer, before and after, side by side (bench_train --compare)", "",
             f"Command: `{cmd.strip()}`. Date {datetime.date.today()}; machine: 2-core {cpu_model()} ({platform.machine()}), "
             f"{load}; 1 torch thread per process.",
             f"Scale: `train_depth` on a rendered world (3 drives x 30 frames, {h}x{w}), ResNet18, batch {batch}, "
             f"{steps} steps per measurement including data loading and model construction; the trainers alternate "
             f"{rounds} times; medians."]
    if short:
        lines += [f"Steady state: the marginal cost of steps {short + 1}-{steps}, from a second run of {short} steps "
                  "(construction, first-use imports, the first step and the final save cancel out)."]
    lines += ["", "| trainer | images / CPU-s (whole run) | images / s (wall) |"
              + (" steady-state images / CPU-s |" if short else "") + " peak RSS MiB |",
              "|---|---:|---:|" + ("---:|" if short else "") + "---:|"]
    lines += [f"| {r['trainer']} | {r['images_per_cpu_s']:.2f} | {r['images_per_s_wall']:.2f} |"
              + (f" {r['steady_images_per_cpu_s']:.2f} |" if short else "") + f" {r['peak_rss_mib']} |" for r in rows]
    lines.append("")
    for r in rows[1:]:  # each configuration of this checkout against the old trainer
        speed = r["images_per_cpu_s"] / rows[0]["images_per_cpu_s"]
        wall = r["images_per_s_wall"] / rows[0]["images_per_s_wall"]
        line = f"Speed-up of {r['trainer']} over {rows[0]['trainer']}: whole run **{speed:.2f}x** per CPU-second, {wall:.2f}x wall"
        if short:
            line += f"; steady-state step **{r['steady_images_per_cpu_s'] / rows[0]['steady_images_per_cpu_s']:.2f}x**"
        lines.append(line + " (target 1.5x).  ")
    write_text_atomic(RESULTS / f"{record}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def photometric(rounds: int, size: str, batch: int) -> None:
    """Analytic photometric-error backward vs autograd of the composite, side by side."""
    import statistics

    import torch

    import donna_nas.tasks.depth.losses as L

    torch.set_num_threads(1)
    torch.manual_seed(0)
    h, w = (int(v) for v in size.split("x"))
    fused = L.photometric_error

    def composite(pred, target, ssim_weight=0.85):
        return L._photometric_error_composite(pred, target, ssim_weight)

    variants = {"autograd (composite)": composite, "analytic backward": fused}
    p0, t0, g0 = torch.rand(batch, 3, h, w), torch.rand(batch, 3, h, w), torch.rand(batch, 1, h, w)

    def pe_call(fn):
        p = p0.clone().requires_grad_()
        fn(p, t0).backward(g0)

    train_step = synthetic_step("resnet18", h, w, batch, fused_adam=True)  # the trainer's optimizer

    times = {(k, part): [] for k in variants for part in ("pe", "step")}
    for _ in range(rounds):
        for name, fn in variants.items():
            L.photometric_error = fn  # min_reprojection looks the name up at call time
            times[(name, "pe")].append(_cpu_ms(lambda: pe_call(fn), 20))
            times[(name, "step")].append(_cpu_ms(train_step, 5))
    L.photometric_error = fused
    import pandas as pd

    rows = [{"variant": k, "pe_fwd_bwd_ms": statistics.median(times[(k, "pe")]),
             "train_step_ms": statistics.median(times[(k, "step")])} for k in variants]
    df = pd.DataFrame(rows)
    base = df.iloc[0]
    df["pe_speedup"] = base.pe_fwd_bwd_ms / df.pe_fwd_bwd_ms
    df["step_speedup"] = base.train_step_ms / df.train_step_ms
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS / "bench_train_photometric.csv", df.to_csv(index=False))
    table = df.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else df.to_string(index=False)
    cmd = "python experiments/bench_train.py " + " ".join(sys.argv[1:])
    md = f"""# Photometric error: analytic backward vs autograd (bench_train --photometric)

Command: `{cmd.strip()}`. Date {datetime.date.today()}; machine: 2-core {cpu_model()} ({platform.machine()}), 1 torch thread.
Scale: {h}x{w}, batch {batch}. `pe_fwd_bwd_ms`: one photometric error (SSIM + L1 of a warped source
against the target) forward and backward; `train_step_ms`: the whole training step (ResNet18 depth
net, pose net on 2 pairs, 4-scale loss = 8 such calls, Adam). The two variants alternate {rounds} times
in one process; medians of CPU time.

{table}
"""
    write_text_atomic(RESULTS / "bench_train_photometric.md", md)
    print(table)


def _box3_slices(t):
    """The separable shifted-slice 3x3 box mean the trainer used before bc6e048 (columns, then rows,
    then the 1/9 scale), for comparison."""
    r = t[..., :, :-2] + t[..., :, 1:-1] + t[..., :, 2:]
    return (r[..., :-2, :] + r[..., 1:-1, :] + r[..., 2:, :]) * (1.0 / 9.0)


STEP = "training step, ResNet18"


def kernels(rounds: int, batch: int, size: str, record: str = "bench_train_kernels") -> None:
    """The per-kernel timings quoted in docs/depth.md and the trainer's docstrings, side by side."""
    import statistics

    import torch
    import torch.nn.functional as F

    import donna_nas.nn.small_map_conv as smc
    import donna_nas.tasks.depth.losses as L
    from donna_nas.nn.pad import reflect_pad1, reflect_pad1_adjoint
    from donna_nas.nn.small_map_conv import conv2d_gemm

    default_small_map = smc.SMALL_MAP_PIXELS

    torch.set_num_threads(1)
    torch.manual_seed(0)
    h, w = (int(v) for v in size.split("x"))
    # SSIM's box stack: 5 statistics x 3 channels of the reflection-padded image, batch images
    stack = torch.rand(batch, 15, h + 2, w + 2)
    box_grad = torch.rand(batch, 15, h, w)
    kernel9 = torch.full((15, 1, 3, 3), 1 / 9)
    # a decoder activation at full resolution, padded by one (16 channels: the last decoder stage)
    act = torch.rand(batch, 16, h, w)
    pad_grad = torch.rand(batch, 16, h + 2, w + 2)
    # the last ResNet stage at this size: 512 -> 512 channels, 3x3, output (h/32) x (w/32)
    oh, ow = max(h // 32, 1), max(w // 32, 1)
    x5 = torch.rand(batch, 512, oh, ow)
    w5 = torch.rand(512, 512, 3, 3) * 0.01
    g5 = torch.rand(batch, 512, oh, ow)
    # a mid-network conv: 128 channels, 3x3, at h/8 x w/8
    x3 = torch.rand(batch, 128, h // 8, w // 8)
    w3 = torch.rand(128, 128, 3, 3) * 0.01
    g3 = torch.rand(batch, 128, h // 8, w // 8)
    a_mm, b_mm = torch.rand(1024, 1024), torch.rand(1024, 1024)

    def conv_fb(x, wt, g):
        xi, wi = x.clone().requires_grad_(), wt.clone().requires_grad_()
        F.conv2d(xi, wi, padding=1).backward(g)

    def per_image_im2col_fb(x, wt, g):  # n thin products, col2im through autograd
        xi, wi = x.clone().requires_grad_(), wt.clone().requires_grad_()
        n, c, hh, ww = xi.shape
        cols = F.unfold(xi, 3, padding=1)  # (n, c*9, hh*ww)
        out = (wi.view(wt.shape[0], -1) @ cols).view(n, -1, hh, ww)
        out.backward(g)

    def one_gemm_fb(x, wt, g):  # the trainer's path on maps of <= SMALL_MAP_PIXELS pixels
        xi, wi = x.clone().requires_grad_(), wt.clone().requires_grad_()
        conv2d_gemm(xi, wi, 1, 1).backward(g)

    # whole training steps (ResNet18 at this size), the two choices of the trainer toggled one at a time
    steps = {(pairs, ds): synthetic_step("resnet18", h, w, batch, True, pose_batch_pairs=pairs, pose_downsample=ds)
             for pairs, ds in ((True, 1), (False, 1), (True, 2))}

    def training_step(gemm: bool, batched_pose: bool, pose_downsample: int = 1):
        def run():
            smc.SMALL_MAP_PIXELS = default_small_map if gemm else 0  # looked up at call time
            try:
                steps[(batched_pose, pose_downsample)]()
            finally:
                smc.SMALL_MAP_PIXELS = default_small_map
        return run

    def ate_depthwise_bwd():  # the input gradient ATen's autograd computes for the depthwise box
        return torch.ops.aten.convolution_backward(box_grad, stack, kernel9, None, [1, 1], [0, 0], [1, 1], False,
                                                   [0, 0], 15, [True, False, False])[0]

    def ate_pad_bwd():
        return torch.ops.aten.reflection_pad2d_backward(pad_grad, act, [1, 1, 1, 1])

    def autograd_pad(pad):  # forward + backward through autograd, as a training step sees it
        def run():
            xi = act.clone().requires_grad_()
            pad(xi).backward(pad_grad)
        return run

    # the photometric error (SSIM + L1 of a warped source against the target, analytic backward), with
    # its box means as the depthwise convolution or as the slice sums: the choice inside its real use
    p0, t0, g0 = torch.rand(batch, 3, h, w), torch.rand(batch, 3, h, w), torch.rand(batch, 1, h, w)
    conv_box = L._box3_mean

    def slice_box(t, pad=0):
        return _box3_slices(F.pad(t, (pad,) * 4) if pad else t)

    def photometric_with(box):
        def run():
            L._box3_mean = box  # looked up at call time by SSIM and the analytic photometric error
            try:
                p = p0.clone().requires_grad_()
                L.photometric_error(p, t0).backward(g0)
            finally:
                L._box3_mean = conv_box
        return run

    flops5 = 2 * batch * 512 * 512 * 9 * oh * ow * 3  # forward + two backward GEMMs
    flops3 = 2 * batch * 128 * 128 * 9 * (h // 8) * (w // 8) * 3
    # (group, variant, callable, GFLOP per call or 0)
    cases = [
        ("box mean", "depthwise conv, 1/9 kernel (used)", lambda: L._box3_mean(stack), 0),
        ("box mean", "separable shifted slices (before)", lambda: _box3_slices(stack), 0),
        ("box mean", "avg_pool2d(3, 1)", lambda: F.avg_pool2d(stack, 3, 1), 0),
        ("photometric error fwd+bwd", "box means by depthwise conv (used)", photometric_with(conv_box), 0),
        ("photometric error fwd+bwd", "box means by slice sums", photometric_with(slice_box), 0),
        ("box adjoint", "box mean of the gradient padded by 2 (used)", lambda: L._box3_mean(box_grad, pad=2), 0),
        ("box adjoint", "ATen depthwise-conv input backward", ate_depthwise_bwd, 0),
        ("reflect pad backward", "slice adjoint (used)", lambda: reflect_pad1_adjoint(pad_grad), 0),
        ("reflect pad backward", "ATen reflection_pad2d_backward", ate_pad_bwd, 0),
        ("reflect pad fwd+bwd (autograd)", "reflect_pad1 (used)", autograd_pad(reflect_pad1), 0),
        ("reflect pad fwd+bwd (autograd)", "F.pad reflect", autograd_pad(lambda t: F.pad(t, (1, 1, 1, 1), mode="reflect")),
         0),
        (f"512-ch 3x3 conv at {oh}x{ow}, fwd+bwd", "im2col + one GEMM over the batch (used)",
         lambda: one_gemm_fb(x5, w5, g5), flops5 / 1e9),
        (f"512-ch 3x3 conv at {oh}x{ow}, fwd+bwd", "oneDNN (ATen)", lambda: conv_fb(x5, w5, g5), flops5 / 1e9),
        (f"512-ch 3x3 conv at {oh}x{ow}, fwd+bwd", "im2col + one GEMM per image, autograd col2im",
         lambda: per_image_im2col_fb(x5, w5, g5), flops5 / 1e9),
        (f"128-ch 3x3 conv at {h // 8}x{w // 8}, fwd+bwd", "oneDNN (used)", lambda: conv_fb(x3, w3, g3),
         flops3 / 1e9),
        ("1024x1024 GEMM", "torch.mm", lambda: a_mm @ b_mm, 2 * 1024**3 / 1e9),
        (STEP, "GEMM on small maps, pose pairs batched, pose net at half size (used)", training_step(True, True, 2), 0),
        (STEP, "GEMM on small maps, pose pairs batched, pose net at full size (--pose-downsample 1)",
         training_step(True, True), 0),
        (STEP, "oneDNN on small maps, pose pairs batched, full size", training_step(False, True), 0),
        (STEP, "GEMM on small maps, one pose call per pair, full size", training_step(True, False), 0),
        (STEP, "oneDNN on small maps, one pose call per pair, full size (before)", training_step(False, False), 0),
    ]

    times: list[list[float]] = [[] for _ in cases]
    for _ in range(rounds):
        for i, (group, _, fn, _) in enumerate(cases):
            times[i].append(_cpu_ms(fn, 2 if group == STEP else 10))
    import pandas as pd

    rows = []
    for (group, variant, _, gflop), tt in zip(cases, times):
        ms = statistics.median(tt)
        rows.append({"kernel": group, "variant": variant, "cpu_ms": round(ms, 3),
                     "min_ms": round(min(tt), 3), "max_ms": round(max(tt), 3),
                     "gflop_per_s": round(gflop / (ms / 1e3), 1) if gflop else None})
    df = pd.DataFrame(rows)
    # speed-up of the used variant over each alternative in its group
    used = {r["kernel"]: r["cpu_ms"] for r in rows if r["variant"].endswith("(used)")}
    df["used_speedup"] = [round(r["cpu_ms"] / used[r["kernel"]], 2) if r["kernel"] in used else None for r in rows]
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS / f"{record}.csv", df.to_csv(index=False))
    table = df.to_markdown(index=False) if _has_tabulate() else df.to_string(index=False)
    header = "\n".join(results_header("Trainer kernels side by side (bench_train --kernels)", ", 1 torch thread"))
    md = f"""{header}
Scale: training size {h}x{w}, batch {batch}. Box mean: SSIM's stack of 15 planes, {batch}x15x{h + 2}x{w + 2};
pad: a {batch}x16x{h}x{w} activation padded by one; convolutions with random weights, forward and both
backward products. Each variant runs 10 calls per round, all variants alternate {rounds} times in one
process; medians (and extremes) of CPU time per call. `used_speedup`: this variant's time over the
variant the trainer uses in the same group (above 1: the trainer's choice is faster). GFLOP/s counts
2 multiply-adds per MAC, forward plus the two backward GEMMs of a convolution. Training steps:
random frames, fused Adam, 2 steps per round.

{table}
"""
    write_text_atomic(RESULTS / f"{record}.md", md)
    print(md)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compare", metavar="REF", help="compare the whole trainer of git revision REF with this checkout")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--load", default="other load not recorded",
                    help="--compare: what else ran on the machine meanwhile (written with the figures)")
    ap.add_argument("--record", default=None,
                    help="results name: experiments/results/NAME.{md,csv} (default bench_train_compare with "
                         "--compare, bench_train_kernels with --kernels)")
    ap.add_argument("--precisions", nargs="+", default=["off"], choices=("off", "bf16"),
                    help="with --compare: this checkout's trainer in each --mixed-precision setting")
    ap.add_argument("--mixed-precision", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--short", type=int, default=0,
                    help="with --compare: also run SHORT steps and report the steady-state (marginal) throughput")
    ap.add_argument("--size", default="64x192")
    ap.add_argument("--trainer-run", nargs=3, metavar=("DATA", "H", "W"), help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", nargs=3, metavar=("BACKBONE", "H", "W"))
    ap.add_argument("--photometric", action="store_true",
                    help="the photometric error's analytic backward against autograd, side by side")
    ap.add_argument("--kernels", action="store_true",
                    help="the trainer's kernel choices (box mean, pad adjoint, convolution paths) side by side")
    a = ap.parse_args()
    if a.kernels:
        kernels(a.rounds, a.batch, a.size, a.record or "bench_train_kernels")
        return
    if a.photometric:
        photometric(a.rounds, a.size, a.batch)
        return
    if a.trainer_run:
        print(json.dumps(trainer_run(a.trainer_run[0], int(a.trainer_run[1]), int(a.trainer_run[2]), a.batch, a.steps,
                                     a.mixed_precision)))
        return
    if a.compare:
        if a.short and a.short >= a.steps:
            raise SystemExit(f"--short {a.short} must be fewer than --steps {a.steps}")
        compare(a.compare, a.steps, a.rounds, a.batch, a.size, a.short, tuple(a.precisions),
                a.record or "bench_train_compare", a.load)
        return
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]), int(a.one[2]), a.batch, a.steps, a.threads)))
        return
    rows = []
    for bb, h, w in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--one", bb, str(h), str(w), "--batch", str(a.batch),
                              "--steps", str(a.steps), "--threads", str(a.threads)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    import pandas as pd

    df = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS / "bench_train.csv", df.to_csv(index=False))
    table = df.to_markdown(index=False) if _has_tabulate() else df.to_string(index=False)
    cmd = "python experiments/bench_train.py " + " ".join(sys.argv[1:])
    md = f"""# Depth training throughput (bench_train)

Command: `{cmd.strip()}`
Date: {datetime.date.today()}; machine: 2-core CPU ({platform.processor() or platform.machine()}), torch threads {a.threads},
shared with other engineers' jobs at the time (numbers are lower bounds of what an idle machine gives).
One step = depth net on frame 0 + pose net on 2 frame pairs + 4-scale Monodepth2 loss at full resolution + Adam;
random frames, batch {a.batch}, {a.steps} timed steps after 1 warm-up; peak RSS per configuration (own process).

{table}
"""
    write_text_atomic(RESULTS / "bench_train.md", md)
    print(table)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401

        return True
    except ImportError:
        return False


if __name__ == "__main__":
    main()
