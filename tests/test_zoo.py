"""Shipped models: the registry, fp16 storage, sha256 checks, names as --teacher / --backbone /
--teacher-weights / --init-from / evaluate --model, and one-line errors for unknown names,
damaged files and wrong architectures. Uses a tiny model written into a temporary models folder."""

import json

import pytest
import torch

from donna_nas.errors import UserError
from donna_nas.tasks.depth import zoo
from donna_nas.tasks.depth.run import DepthConfig, load_model, load_model_weights
from donna_nas.tasks.depth.train import train_depth
from tests.test_cli_failures import assert_one_line, run_cli
from tests.test_depth_train import FakeFrames

H, W = 32, 96


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished two-step ResNet18 depth run (32x96) with a checkpoint (depth + pose nets)."""
    run = tmp_path_factory.mktemp("zoo") / "run"
    cfg = DepthConfig(data="fake", height=H, width=W, batch=2, epochs=1, checkpoint_every=2, seed=0, lr=1e-3,
                      max_steps=2)
    train_depth(cfg, run, dataset=FakeFrames(n=4), progress=False, log=None)
    return run


@pytest.fixture()
def shipped(tiny_run, tmp_path, monkeypatch):
    """A models folder holding the tiny run as ``tiny-r18`` (fp16), used by every resolver."""
    root = tmp_path / "models"
    monkeypatch.setattr(zoo, "models_dir", lambda: root)
    model = zoo.write_shipped_depth_model("tiny-r18", tiny_run, {"steps": 2, "command": "test", "world": {}}, root)
    return model


def test_shipped_model_is_fp16_and_reloads_close_to_fp32(tiny_run, shipped):
    from safetensors.torch import load_file

    assert all(v.dtype == torch.float16 for v in load_file(str(shipped.weights)).values() if v.is_floating_point())
    assert shipped.card["sha256"] == zoo.sha256_of(shipped.weights)
    assert shipped.card["params"] == json.loads((tiny_run / "model.json").read_text())["params"]
    ref, _ = load_model(tiny_run)
    net, info = load_model("tiny-r18")
    assert info["backbone"] == "resnet18"
    x = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ref(x), net(x)
    assert torch.allclose(a, b, rtol=0, atol=2e-3), (a - b).abs().max()
    assert not torch.equal(a, b)  # it really is the rounded copy


def test_list_agrees_with_folders(shipped, capsys):
    assert [m.name for m in zoo.list_models()] == ["tiny-r18"]
    (shipped.folder.parent / "not-a-model").mkdir()  # a folder without a card is not listed
    code, out, _ = run_cli(["models", "list", "--json"], capsys)
    assert code == 0 and [c["name"] for c in json.loads(out)] == ["tiny-r18"]


def test_unknown_name_lists_known_names(shipped, capsys):
    code, out, err = run_cli(["models", "show", "synth-resnet99"], capsys)
    assert_one_line(code, out, err, "synth-resnet99", "tiny-r18")
    with pytest.raises(UserError, match="tiny-r18"):
        load_model("nope")


def test_damaged_weights_are_refused_with_the_file_named(shipped, capsys):
    data = bytearray(shipped.weights.read_bytes())
    data[-3] ^= 0xFF
    shipped.weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match="sha256"):
        load_model("tiny-r18")
    code, out, err = run_cli(["models", "show", "tiny-r18"], capsys)
    assert_one_line(code, out, err, str(shipped.weights), "reinstall")


def test_wrong_architecture_is_one_line(shipped, capsys):
    mj = shipped.folder / "model.json"
    info = json.loads(mj.read_text())
    info["backbone"] = "resnet50"
    mj.write_text(json.dumps(info))
    with pytest.raises(UserError, match="does not match") as ei:
        load_model("tiny-r18")
    assert "\n" not in str(ei.value) and str(shipped.weights) in str(ei.value)


def test_name_as_backbone_warm_starts_the_whole_depth_net(shipped, tmp_path):
    run = tmp_path / "ft"
    cfg = DepthConfig(data="fake", backbone="tiny-r18", height=H, width=W, batch=2, epochs=1, seed=1, max_steps=0)
    res = train_depth(cfg, run, dataset=FakeFrames(n=4), progress=False, log=None)
    assert res["config"]["backbone"] == "resnet18" and res["config"]["init_from"] == "tiny-r18"
    start, _ = load_model_weights("tiny-r18")
    got = res["model"].depth.state_dict()
    assert all(torch.equal(got[k], v) for k, v in start.items())


def test_run_directory_warm_start_takes_depth_and_pose(tiny_run, tmp_path):
    from safetensors.torch import load_file

    cfg = DepthConfig(data="fake", height=H, width=W, batch=2, epochs=1, seed=1, max_steps=0, init_from=str(tiny_run))
    model = train_depth(cfg, tmp_path / "ft", dataset=FakeFrames(n=4), progress=False, log=None)["model"]
    ck = load_file(str(tiny_run / "checkpoints" / "last.safetensors"))
    for name, module in (("depth", model.depth), ("pose", model.pose)):
        for k, v in module.state_dict().items():
            assert torch.equal(v, ck[f"model.{name}.{k}"]), (name, k)


def test_run_directory_warm_start_falls_back_from_a_torn_checkpoint(tiny_run, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file

    run = tmp_path / "torn"
    shutil.copytree(tiny_run, run)
    ckdir = run / "checkpoints"
    shutil.copyfile(ckdir / "last.safetensors", ckdir / "prev.safetensors")
    prev = load_file(str(ckdir / "prev.safetensors"))
    data = (ckdir / "last.safetensors").read_bytes()
    (ckdir / "last.safetensors").write_bytes(data[: len(data) // 3])  # a kill mid-write
    cfg = DepthConfig(data="fake", height=H, width=W, batch=2, epochs=1, seed=1, max_steps=0, init_from=str(run))
    model = train_depth(cfg, tmp_path / "ft", dataset=FakeFrames(n=4), progress=False, log=None)["model"]
    assert all(torch.equal(v, prev[f"model.depth.{k}"]) for k, v in model.depth.state_dict().items())
    assert "prev.safetensors" in capsys.readouterr().err


def test_warm_start_of_another_architecture_is_refused(tiny_run, tmp_path):
    cfg = DepthConfig(data="fake", backbone="resnet50", height=H, width=W, batch=2, epochs=1, max_steps=0,
                      init_from=str(tiny_run))
    with pytest.raises(UserError, match="does not match this run's --backbone resnet50"):
        train_depth(cfg, tmp_path / "ft", dataset=FakeFrames(n=4), progress=False, log=None)


def test_name_as_teacher_and_as_teacher_weights(shipped):
    from donna_nas.distill.teacher import load_teacher

    ref, _ = load_model("tiny-r18")
    x = torch.rand(1, 3, 64, 64)
    want = ref.encoder(x)
    for spec, weights in (("tiny-r18", None), ("resnet18", "tiny-r18")):
        cut, desc = load_teacher(spec, weights)
        assert desc["shipped"] == "tiny-r18"
        assert all(torch.equal(a, b) for a, b in zip(cut(x), want))
    with pytest.raises(UserError, match="a resnet18 model, but --teacher is resnet50"):
        load_teacher("resnet50", "tiny-r18")
    with pytest.raises(UserError, match="tiny-r18"):
        load_teacher("synth-unknown")


def test_evaluate_model_prints_model_and_baselines(shipped, synth_world, capsys):
    code, out, err = run_cli(["evaluate", "--model", "tiny-r18", "--data", synth_world, "--json"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert set(rows) == {"model", "constant", "prior"}
    assert rows["constant"]["abs_rel"] > rows["prior"]["abs_rel"]  # the prior knows the layout
    assert not any((synth_world.parent / "models").glob("**/metrics.json"))
    code, out, err = run_cli(["evaluate", "--model", "tiny-r18"], capsys)
    assert_one_line(code, out, err, "--data is required")


def test_distillation_from_a_shipped_model_trains_towards_it_and_stays_out_of_checkpoints(shipped, tmp_path):
    from safetensors.torch import load_file

    from donna_nas.tasks.depth.train import DepthTrainer

    cfg = DepthConfig(data="fake", height=H, width=W, batch=2, epochs=1, seed=2, max_steps=2,
                      distill_from="tiny-r18", distill_weight=1.0, checkpoint_every=2)
    run = tmp_path / "kd"
    res = train_depth(cfg, run, dataset=FakeFrames(n=4), progress=False, log=None)
    keys = load_file(str(run / "checkpoints" / "last.safetensors")).keys()
    assert not any("kd_teacher" in k for k in keys) and any(k.startswith("model.depth.") for k in keys)
    # the distillation term is part of the loss: zero when the student is the teacher itself
    trainer = DepthTrainer(DepthConfig(data="fake", height=H, width=W, distill_from="tiny-r18"))
    sd, _ = load_model_weights("tiny-r18")
    trainer.depth.load_state_dict(sd)
    trainer.eval()  # batch norm as in the (eval-mode) teacher
    batch = {k: (v.unsqueeze(0) if torch.is_tensor(v) else v) for k, v in FakeFrames(n=1)[0].items()}
    _, info = trainer(batch)
    assert info["distill"].item() == 0.0
    assert res["step"] == 2
