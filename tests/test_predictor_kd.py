"""The predictor's distillation finetune: an architecture assembled from its distilled blocks
learns the teacher depth model's outputs (the objective falls), and ``auto`` picks it exactly when
the teacher has a depth decoder."""

import json

import pytest
import torch

from donna_nas.distill.pipeline import SupernetConfig, build_supernet, resolve_ft_objective
from donna_nas.errors import UserError
from donna_nas.predictor.finetune import FinetuneJob
from donna_nas.space import load_space
from donna_nas.tasks.depth.losses import output_kd_loss
from donna_nas.tasks.depth.predictor import export_val_gt, predictor_finetune
from donna_nas.tasks.depth.run import DepthConfig, save_model

SPACE = load_space("tiny")


@pytest.fixture(scope="module")
def kd_run(synth_world, tmp_path_factory):
    """A depth "teacher run" (ResNet18 depth net, seeded random weights) and a tiny build on it."""
    from donna_nas.tasks.depth.train import build_depth_net

    root = tmp_path_factory.mktemp("kd")
    teacher = root / "teacher"
    teacher.mkdir()
    cfg = DepthConfig(data=str(synth_world), height=64, width=192)
    torch.manual_seed(0)
    save_model(teacher, build_depth_net(cfg), cfg, {"steps": 0})
    run = root / "run"
    build_supernet(SPACE, run, SupernetConfig(teacher=str(teacher), data=str(synth_world), task="depth", height=32,
                                              width=96, bkd_steps=3, bkd_batch=4, calib_frames=4, train_frames=8,
                                              val_frames=4, predictor_archs=0, predictor_test=0),
                   progress=False)
    export_val_gt(run, str(synth_world))
    return run, synth_world


def test_distillation_finetune_lowers_the_distillation_loss(kd_run):
    run, data = kd_run
    arch = SPACE.sample(__import__("random").Random(0)).encode()
    rec = predictor_finetune(FinetuneJob(str(run), arch, "depth", str(data), steps=16, batch=4, lr=1e-3, height=32,
                                         width=96, distill_weight=0.0, objective="kd"))
    assert rec["loss_last"] < 0.7 * rec["loss_first"], rec
    assert rec["sq_rel"] > 0 and rec["abs_rel"] > 0


def test_output_kd_loss_is_zero_for_the_teacher_and_scale_free():
    t = [torch.rand(2, 1, 8 * 2 ** -i if i else 8, 24) for i in range(1)]
    assert output_kd_loss(t, t).item() == 0
    s = [torch.full((1, 1, 4, 4), 0.2)]
    far, near = output_kd_loss(s, [torch.full((1, 1, 4, 4), 0.1)]), output_kd_loss(s, [torch.full((1, 1, 4, 4), 0.3)])
    assert far.item() > 0 and near.item() > 0


def test_auto_objective_follows_the_teacher(kd_run):
    run, _ = kd_run
    info = json.loads((run / "teacher.json").read_text())
    assert resolve_ft_objective(SupernetConfig(task="depth"), info) == "kd"
    resnet = {"kind": "resnet", "name": "resnet18"}
    assert resolve_ft_objective(SupernetConfig(task="depth"), resnet) == "selfsup"
    assert resolve_ft_objective(SupernetConfig(task="classify"), info) == "selfsup"
    with pytest.raises(UserError, match="no depth decoder"):
        resolve_ft_objective(SupernetConfig(task="depth", ft_objective="kd"), resnet)
    with pytest.raises(UserError, match="for --task depth"):
        SupernetConfig(task="classify", ft_objective="kd").validate()
