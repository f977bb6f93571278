"""The models shipped in the package: what `models list` shows is what is on disk, every file
matches its card's sha256 and architecture, and (slow) every depth model reproduces its card's
metrics on its own world's test split."""

import json

import pytest
import torch

from donna_nas.tasks.depth import zoo

SHIPPED = {"synth-resnet18-monodepth2", "synth-resnet18-xdistill", "synth-resnet50-monodepth2",
           "synth-resnet50-xdistill", "synth-segnet"}


def test_models_list_agrees_with_the_files_on_disk(capsys):
    from tests.test_cli_failures import run_cli

    on_disk = {d.name for d in zoo.models_dir().iterdir() if (d / "model.safetensors").is_file()}
    assert on_disk == {m.name for m in zoo.list_models()} == SHIPPED
    code, out, _ = run_cli(["models", "list", "--json"], capsys)
    assert code == 0 and {c["name"] for c in json.loads(out)} == SHIPPED


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_weights_match_sha256_and_architecture(name):
    m = zoo.resolve_model(name)  # verifies the sha256
    assert m.card["sha256"] == zoo.sha256_of(m.weights) and m.card["bytes"] == m.weights.stat().st_size
    for key in ("world", "command", "params"):
        assert key in m.card, key
    if m.kind == "segmentation":
        from donna_nas.tasks.depth.seg_teacher import load_seg_teacher

        net = load_seg_teacher(m.weights)
        assert net(torch.rand(1, 3, 64, 192)).shape == (1, net.num_classes, 64, 192)
        return
    from donna_nas.tasks.depth.run import load_model

    net, info = load_model(name)  # strict load: every tensor has the architecture's shape
    assert sum(p.numel() for p in net.parameters()) == m.card["params"] == info["params"]
    assert info["backbone"] == m.card["backbone"] and name.split("-")[1] == info["backbone"]
    assert m.card["fp16_max_rel_change"] < 0.01  # fp16 storage moved no metric by 1% or more
    for world in ("own", "unseen"):
        assert m.card["metrics_fp16"][world]["beats"]["prior"], (name, world)


@pytest.mark.slow
def test_shipped_depth_models_reproduce_their_cards(tmp_path_factory):
    """Re-render each card's world from its seed and evaluate: metrics within 1% of the card."""
    from donna_nas.data.synth import synthesize
    from donna_nas.tasks.depth.evaluate import evaluate_model
    from donna_nas.tasks.depth.run import load_model

    worlds = {}
    for m in zoo.list_models():
        if m.kind != "depth":
            continue
        w = m.card["world"]
        key = (w["drives"], w["frames"], tuple(w["size"]), w["seed"], w["version"])
        if key not in worlds:
            worlds[key] = synthesize(tmp_path_factory.mktemp("world") / "w", drives=w["drives"], frames=w["frames"],
                                     size=tuple(w["size"]), seed=w["seed"], world_version=w["version"], progress=False)
        net, info = load_model(m.name)
        res, *_ = evaluate_model(net, info, str(worlds[key]))
        card = m.card["metrics_fp16"]["own"]["metrics"]
        for k, v in card.items():
            assert res["metrics"][k] == pytest.approx(v, rel=0.01), (m.name, k)
