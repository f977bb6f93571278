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


def test_export_cli_missing_run_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "donna_nas", "export", str(tmp_path / "nope")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "model.json" in r.stderr
