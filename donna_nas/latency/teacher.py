"""The teacher's latency on this CPU, timed the way search candidates are.

A candidate's ONNX Runtime latency is the sum of its op instances (the stem and every layer of
every block), each exported alone, optionally INT8-quantised, and timed in its own session
(``OrtMeasurer``). ``measure_resnet_encoder`` times a ResNet teacher's *encoder* the same way: its
stem (conv + BN + ReLU) and each residual block (the max-pool joins the first one) are exported
alone at their input shapes for the search's input size, quantised at the same precision, timed
round-robin with the same measurer settings, and summed. The decoder is not counted, as it is
not for candidates.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from donna_nas.errors import UserError
from donna_nas.nn.resnet import ResNetEncoder

__all__ = ["resnet_units", "measure_resnet_encoder"]


def resnet_units(encoder: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of a ``ResNetEncoder``'s stem and residual blocks, in order."""
    if not isinstance(encoder, ResNetEncoder):
        raise UserError(f"teacher encoder {type(encoder).__name__}: not a ResNet encoder, so it cannot be timed "
                        "unit by unit; pass --teacher-latency-ms MS or --max-latency-ms MS")
    units: list[tuple[str, nn.Module]] = [("stem", nn.Sequential(encoder.conv1, encoder.bn1, encoder.relu))]
    for li in range(1, 5):
        for bi, block in enumerate(getattr(encoder, f"layer{li}")):
            mod = nn.Sequential(encoder.maxpool, block) if (li, bi) == (1, 0) else block
            units.append((f"layer{li}.{bi}", mod))
    return units


def measure_resnet_encoder(backbone: str, input_size: tuple[int, int], precision: str = "int8",
                           threads: int = 1, seed: int = 0) -> dict[str, Any]:
    """ONNX Runtime latency of ``backbone``'s encoder (``resnet18`` / ``resnet50``, random
    weights: latency does not depend on them) at ``input_size``: the sum of its units' timings."""
    from donna_nas.latency.ort import OrtMeasurer, sample_input
    from donna_nas.nn.encoders import RESNETS, create_encoder

    if backbone.lower() not in RESNETS:
        raise UserError(f"teacher {backbone!r}: its latency is measured for {', '.join(RESNETS)} only; "
                        "pass --teacher-latency-ms MS or --max-latency-ms MS")
    torch.manual_seed(seed)
    enc = create_encoder(backbone.lower()).eval()
    units = resnet_units(enc)
    h, w = input_size
    x = torch.zeros(1, 3, h, w)
    shapes = []
    with torch.no_grad():
        for _, mod in units:
            shapes.append(tuple(x.shape))
            x = mod(x)
    measurer = OrtMeasurer(precision=precision, threads=threads)
    sessions, inputs = [], []
    for i, ((_, mod), shape) in enumerate(zip(units, shapes)):
        sessions.append(measurer.session(measurer.prepare(mod, shape, image=i == 0)))
        inputs.append(sample_input(shape, i == 0, 0))
    timings = []
    for i in range(0, len(sessions), 8):  # batches of 8, round-robin, as measure_ops does
        timings += measurer.time_interleaved(sessions[i:i + 8], inputs[i:i + 8])
    return {
        "teacher": backbone.lower(), "input_size": [h, w], "precision": precision,
        "device": measurer.device, "runtime": measurer.runtime,
        "latency_ms": float(sum(t.median_ms for t in timings)),
        "what": "encoder, sum of per-unit ONNX Runtime timings (stem + residual blocks), as candidates",
        "units": [{"name": n, "input_shape": list(s), "latency_ms": t.median_ms}
                  for (n, _), s, t in zip(units, shapes, timings)],
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
