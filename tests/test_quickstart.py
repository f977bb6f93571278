"""The quickstart runs end to end at toy scale, writes every artifact it promises, and resumes."""

import csv
import json
import time

import pytest

from donna_nas.quickstart import QuickstartConfig, run_quickstart


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs")
    result = run_quickstart(out, QuickstartConfig.tiny(), progress=False)
    return out, result


def test_quickstart_writes_every_artifact(quickstart):
    out, result = quickstart
    for rel in ("report.md", "table.csv", "plots/pareto.png", "plots/depth_searched.png",
                "plots/depth_teacher.png", "supernet/selected.json", "supernet/predictor.json",
                "supernet/tables/block_quality.csv", "supernet/tables/latency_ort_int8.csv",
                "teacher/export/model.onnx", "teacher/export/model_int8.onnx",
                "searched/export/model.onnx", "searched/export/model_int8.onnx"):
        assert (out / rel).is_file(), rel
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [r["model"] for r in rows] == ["X-Distill (resnet18)", "X-Distill (searched encoder)",
                                          "constant depth (no image)", "per-pixel prior (no image)"]
    teacher, searched, constant, prior = rows
    assert float(searched["params_M"]) < float(teacher["params_M"])
    assert 0 < float(prior["abs_rel_fp32"]) and 0 < float(constant["abs_rel_fp32"]) and prior["fps_int8"] == ""
    for r in (teacher, searched):
        for k in ("sq_rel_fp32", "sq_rel_int8", "fps_int8"):
            assert float(r[k]) > 0
    # the finetuned model is the architecture the search selected
    selected = json.loads((out / "supernet" / "selected.json").read_text())
    model = json.loads((out / "searched" / "model.json").read_text())
    assert model["backbone"] == selected["arch"]
    report = (out / "report.md").read_text()
    assert selected["arch"] in report and "plots/pareto.png" in report


def test_quickstart_resumes_without_redoing_work(quickstart):
    out, result = quickstart
    t0 = time.time()
    again = run_quickstart(out, QuickstartConfig.tiny(), progress=False)
    assert time.time() - t0 < 30
    assert again["rows"] == result["rows"]


def test_quickstart_refuses_other_settings_in_same_folder(quickstart):
    from donna_nas.errors import UserError

    out, _ = quickstart
    with pytest.raises(UserError, match="other settings"):
        run_quickstart(out, QuickstartConfig.small(), progress=False)
