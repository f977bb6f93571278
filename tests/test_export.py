"""Export: ONNX equals PyTorch, INT8 is really quantised (sigmoid kept float) and both are
evaluated through the same Eigen code as the PyTorch model."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from donna_nas import load_space
from donna_nas.errors import UserError
from donna_nas.tasks.depth.networks import DepthDecoder, DepthNet
from donna_nas.tasks.depth.run import DepthConfig, save_config, save_model

SIZE = (64, 192)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, synth_world):
    root = tmp_path_factory.mktemp("export")
    data = synth_world  # conftest: 3 drives x 8 frames at 64x192 (= SIZE), seed 0
    space = load_space("tiny")
    arch = space.sample(1)
    torch.manual_seed(0)
    enc = space.build(arch)
    net = DepthNet(enc, DepthDecoder(enc.channels, act="relu"))
    # non-trivial BN statistics so the exported graph is not a near-constant
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    cfg = DepthConfig(data=str(data), backbone=arch.encode(), space="tiny", height=SIZE[0],
                      width=SIZE[1], act="relu")
    run = root / "run"
    run.mkdir()
    save_config(run, cfg)
    save_model(run, net.eval(), cfg)
    return run


def test_export_matches_torch_and_shares_eigen_code(run_dir):
    from donna_nas.export.pipeline import export_run
    from donna_nas.tasks.depth.evaluate import evaluate_run

    result = export_run(run_dir, int8=True, calib=4, fps_repeats=3)
    assert result.max_abs_diff < 1e-4
    torch_metrics = evaluate_run(run_dir, report=False)
    for k, v in torch_metrics.items():
        assert result.fp32["metrics"][k] == pytest.approx(v, rel=1e-4, abs=1e-6)
    assert set(result.int8["metrics"]) == set(torch_metrics)
    assert all(np.isfinite(v) for v in result.int8["metrics"].values())
    assert result.fp32["fps"] > 0 and result.int8["fps"] > 0
    saved = json.loads((run_dir / "export" / "export.json").read_text())
    assert saved["int8"]["metrics"] == result.int8["metrics"]


def test_int8_graph_is_quantised_with_float_sigmoid(run_dir):
    from donna_nas.export.pipeline import export_run

    export_run(run_dir, int8=True, calib=4, evaluate=False, fps_repeats=2)
    graph = onnx.load(str(run_dir / "export" / "model_int8.onnx")).graph
    types = [n.op_type for n in graph.node]
    assert types.count("QuantizeLinear") > 10 and "Sigmoid" in types
    sig = next(n for n in graph.node if n.op_type == "Sigmoid")
    consumers = [n.op_type for n in graph.node if sig.output[0] in n.input]
    assert "QuantizeLinear" not in consumers
    # the opset is the promised one
    assert max(o.version for o in onnx.load(str(run_dir / "export" / "model.onnx")).opset_import
               if o.domain in ("", "ai.onnx")) >= 17


def test_float_first_conv_leaves_only_the_stem_in_float(run_dir):
    from donna_nas.export.pipeline import export_run

    result = export_run(run_dir, int8=True, calib=4, evaluate=False, fps_repeats=2, float_first_conv=True)
    graph = onnx.load(str(run_dir / "export" / "model_int8.onnx")).graph
    made_by = {o: n.op_type for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs[0].name in result.int8["kept_float"]
    # the stem reads float image and float weights; every later conv reads dequantised int8
    assert all(made_by.get(i) != "DequantizeLinear" for i in convs[0].input)
    assert all(made_by.get(c.input[1]) == "DequantizeLinear" for c in convs[1:]) and len(convs) > 3
    export_run(run_dir, int8=True, calib=4, evaluate=False, fps_repeats=2)  # the default quantises it
    graph = onnx.load(str(run_dir / "export" / "model_int8.onnx")).graph
    made_by = {o: n.op_type for n in graph.node for o in n.output}
    assert made_by.get(next(n for n in graph.node if n.op_type == "Conv").input[1]) == "DequantizeLinear"


class _NormalisedConv(torch.nn.Module):
    """Normalise the image like the encoders do, then one 3x3 convolution with equal weights: every
    pair of u8 x s8 products in the INT8 kernel is as large as it can be on a white image."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.fill_(0.1)
            self.conv.bias.zero_()

    def forward(self, x):
        return self.conv((x - 0.45) / 0.225)


def _int8_weights(model_bytes: bytes) -> list[np.ndarray]:
    from onnx import numpy_helper

    return [numpy_helper.to_array(t) for t in onnx.load_from_string(model_bytes).graph.initializer
            if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]


def test_int8_stem_is_exact_on_a_white_image():
    """A white image fills the top of the u8 range. On x86 AVX2 without VNNI, ONNX Runtime's U8S8
    convolution adds u8 x s8 pairs in saturating 16-bit lanes, so full-range 8-bit stem weights
    clip there (this CPU gave 0.89 for 6.6); the default 7-bit stem weights must not."""
    import onnxruntime as ort

    from donna_nas.export.onnx import onnx_bytes, quantize_qdq_bytes

    model = _NormalisedConv().eval()
    fp32 = onnx_bytes(model, (1, 3, 8, 8), output_names=("out",))
    white, black = np.ones((1, 3, 8, 8), np.float32), np.zeros((1, 3, 8, 8), np.float32)
    rng = np.random.default_rng(0)
    calib = [rng.random((1, 3, 8, 8), dtype=np.float32) for _ in range(4)] + [white, black]
    expected = model(torch.from_numpy(white)).detach().numpy()
    int8 = quantize_qdq_bytes(fp32, calib)
    got = ort.InferenceSession(int8, providers=["CPUExecutionProvider"]).run(None, {"image": white})[0]
    assert np.abs(got - expected).max() < 0.02 * np.abs(expected).max()
    (stem_w,) = _int8_weights(int8)
    assert stem_w.max() <= 64 and stem_w.min() >= -64
    (full_w,) = _int8_weights(quantize_qdq_bytes(fp32, calib, stem_weight_bits=8))
    assert full_w.max() == 127


def test_only_the_stem_gets_7_bit_weights(run_dir):
    from donna_nas.export.onnx import image_conv_weights
    from donna_nas.export.pipeline import export_run

    result = export_run(run_dir, int8=True, calib=4, evaluate=False, fps_repeats=2)
    fp32 = onnx.load(str(run_dir / "export" / "model.onnx"))
    convs = [n for n in fp32.graph.node if n.op_type == "Conv"]
    assert image_conv_weights(fp32) == [convs[0].input[1]]
    assert result.int8["stem_weight_bits"] == 7
    weights = _int8_weights((run_dir / "export" / "model_int8.onnx").read_bytes())
    reach = sorted(int(np.abs(w.astype(np.int16)).max()) for w in weights)
    assert reach[0] <= 64 and reach.count(127) == len(reach) - 1  # per-channel: each layer reaches 127
    with pytest.raises(UserError, match="--stem-weight-bits 6"):
        export_run(run_dir, int8=True, calib=4, evaluate=False, fps_repeats=2, stem_weight_bits=6)


def test_export_cli_missing_run_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "donna_nas", "export", str(tmp_path / "nope")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "model.json" in r.stderr
