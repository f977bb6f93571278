"""Does this CPU's ONNX Runtime INT8 convolution saturate on a bright image? One 3×3 convolution
with equal weights reads a normalised image (as the encoders' stems do), quantised with the stem's
weights in 8 bits and in 7 bits (the export's default), and run on a white, a mid-grey and a
random image. On x86 CPUs with AVX2 but no VNNI, ONNX Runtime's U8S8 kernel adds u8 × s8 product
pairs in saturating 16-bit lanes, so the 8-bit stem clips on the white image:

    python experiments/bench_int8_saturation.py

Writes ``experiments/results/bench_int8_saturation.{md,csv}`` (``--record NAME`` for another name).
Takes a few seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from donna_nas.runtime.io import write_text_atomic

from _provenance import results_header, write_csv  # experiments/ is on sys.path when a script here runs

RESULTS = Path(__file__).resolve().parent / "results"
SIZE = 8


class NormalisedConv(nn.Module):
    """The encoders' input normalisation, then one 3×3 convolution whose weights are all equal:
    every u8 × s8 pair in the INT8 kernel is as large as the image allows."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.fill_(0.1)
            self.conv.bias.zero_()

    def forward(self, x):
        return self.conv((x - 0.45) / 0.225)


def main() -> None:
    import onnxruntime as ort

    from donna_nas.export.onnx import onnx_bytes, quantize_qdq_bytes

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record", default="bench_int8_saturation")
    a = ap.parse_args()

    model = NormalisedConv().eval()
    fp32 = onnx_bytes(model, (1, 3, SIZE, SIZE), output_names=("out",))
    rng = np.random.default_rng(0)
    images = {"white": np.ones((1, 3, SIZE, SIZE), np.float32),
              "mid-grey": np.full((1, 3, SIZE, SIZE), 0.5, np.float32),
              "random": rng.random((1, 3, SIZE, SIZE), dtype=np.float32)}
    # the calibration covers the whole [0, 1] range, so no output is clipped by its range
    calib = [rng.random((1, 3, SIZE, SIZE), dtype=np.float32) for _ in range(4)]
    calib += [images["white"], np.zeros((1, 3, SIZE, SIZE), np.float32)]
    sessions = {bits: ort.InferenceSession(quantize_qdq_bytes(fp32, calib, stem_weight_bits=bits),
                                           providers=["CPUExecutionProvider"]) for bits in (8, 7)}
    rows = []
    for name, img in images.items():
        ref = model(torch.from_numpy(img)).detach().numpy()
        row = {"image": name, "fp32_centre": float(ref[0, 0, SIZE // 2, SIZE // 2])}
        for bits, sess in sessions.items():
            out = sess.run(None, {"image": img})[0]
            row[f"int8_stem{bits}_centre"] = float(out[0, 0, SIZE // 2, SIZE // 2])
            row[f"stem{bits}_max_rel_err"] = float(np.abs(out - ref).max() / np.abs(ref).max())
        rows.append(row)
        print(row, flush=True)

    RESULTS.mkdir(exist_ok=True)
    write_csv(RESULTS / f"{a.record}.csv", rows)
    md = results_header("INT8 stem saturation on this CPU", f"; onnxruntime {ort.__version__}")
    md += [f"Scale: one 3×3 convolution, 3→4 channels, all weights 0.1, on a normalised 1×3×{SIZE}×{SIZE} image; "
           "static QDQ INT8 as `donna-nas export` quantises (U8 activations calibrated over [0, 1] images, "
           "per-channel S8 weights), with the stem's weights in 8 or 7 bits. Centre pixel of output channel 0, "
           "and the largest error over the output relative to its largest value.", "",
           "| image | fp32 | INT8, 8-bit stem | INT8, 7-bit stem (default) | max rel. error 8-bit | max rel. error 7-bit |",
           "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['image']} | {r['fp32_centre']:.3f} | {r['int8_stem8_centre']:.3f} | "
                  f"{r['int8_stem7_centre']:.3f} | {r['stem8_max_rel_err']:.1%} | {r['stem7_max_rel_err']:.1%} |")
    clipped = rows[0]["stem8_max_rel_err"] > 0.1
    md += ["", "The 8-bit stem **clips on the white image** on this CPU (ONNX Runtime's AVX2 U8S8 kernel "
           "without VNNI); the 7-bit stem does not." if clipped else
           "The 8-bit stem does not clip on this CPU (no saturating U8S8 kernel here); the 7-bit stem "
           "costs one bit of the stem's weights."]
    write_text_atomic(RESULTS / f"{a.record}.md", "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
