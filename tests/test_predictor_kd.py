"""The predictor's distillation finetune: an architecture assembled from its distilled blocks
learns the teacher depth model's outputs (the objective falls), and ``auto`` picks it exactly when
the teacher has a depth decoder."""

import dataclasses
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


def test_a_stitched_finetune_starts_from_the_teacher_decoder_through_the_adapters(kd_run):
    """With no steps, the job's metrics are those of the stitched network itself, evaluated
    directly; a random decoder gives others (so the job really starts from the stitched one)."""
    from donna_nas.data.gt import load_gt_depths
    from donna_nas.data.kitti import KittiRawDataset
    from donna_nas.distill.assemble import assemble
    from donna_nas.tasks.depth.evaluate import predict_disparities
    from donna_nas.tasks.depth.metrics import evaluate_disparities
    from donna_nas.tasks.depth.networks import DepthNet
    from donna_nas.tasks.depth.run import load_model
    from donna_nas.tasks.depth.stitch import stitched_decoder

    run, data = kd_run
    arch = SPACE.sample(__import__("random").Random(1))
    job = dict(run_dir=str(run), arch=arch.encode(), task="depth", data=str(data), steps=0, batch=4, lr=1e-3,
               height=32, width=96, distill_weight=0.0, objective="kd")
    stitched = predictor_finetune(FinetuneJob(**job, decoder="stitched"))
    teacher, _ = load_model(json.loads((run / "teacher.json").read_text())["run"])
    net = DepthNet(assemble(run, arch, input_size=(32, 96)), stitched_decoder(run, arch, teacher.decoder))
    vds = KittiRawDataset(str(data), str(data / "splits" / "val_files.txt"), size=(32, 96), frame_ids=(0,), train=False)
    want, _ = evaluate_disparities(predict_disparities(net, vds, 0.1, 100.0)[0], load_gt_depths(run / "cache" / "val_gt.npz")[0])
    assert stitched["sq_rel"] == pytest.approx(want["sq_rel"], rel=1e-5)
    assert stitched["abs_rel"] == pytest.approx(want["abs_rel"], rel=1e-5)
    random_start = predictor_finetune(FinetuneJob(**job, decoder="random"))
    assert random_start["abs_rel"] != pytest.approx(want["abs_rel"], rel=1e-3)
    with pytest.raises(UserError, match="use random or stitched"):
        predictor_finetune(FinetuneJob(**job, decoder="teacher"))


def test_auto_decoder_is_stitched_exactly_when_the_teacher_has_a_decoder(kd_run):
    from donna_nas.distill.pipeline import resolve_ft_decoder

    run, _ = kd_run
    info = json.loads((run / "teacher.json").read_text())
    resnet = {"kind": "resnet", "name": "resnet18"}
    assert resolve_ft_decoder(SupernetConfig(task="depth"), info) == "stitched"
    assert resolve_ft_decoder(SupernetConfig(task="depth"), resnet) == "random"
    assert resolve_ft_decoder(SupernetConfig(task="depth", ft_decoder="random"), info) == "random"
    assert resolve_ft_decoder(SupernetConfig(task="classify"), info) == "random"
    with pytest.raises(UserError, match="no depth decoder to stitch"):
        resolve_ft_decoder(SupernetConfig(task="depth", ft_decoder="stitched"), resnet)
    with pytest.raises(UserError, match="for --task depth"):
        SupernetConfig(task="classify", ft_decoder="stitched").validate()
    with pytest.raises(UserError, match="use one of"):
        SupernetConfig(task="depth", ft_decoder="teacher").validate()


def test_eval_splits_score_the_same_model_beside_the_target(kd_run):
    """``eval_splits`` scores the finetuned model on further splits: on the target's own split it
    reproduces the target exactly, on another split it gives that split's figures, and a split the
    data lacks is a one-line error naming the missing file."""
    run, data = kd_run
    arch = SPACE.sample(__import__("random").Random(1)).encode()
    job = FinetuneJob(str(run), arch, "depth", str(data), steps=2, batch=4, lr=1e-3, height=32, width=96,
                      distill_weight=0.0, objective="kd", eval_splits=("val", "test"))
    rec = predictor_finetune(job)
    for key in ("sq_rel", "abs_rel", "a1"):
        assert rec[f"val/{key}"] == rec[key]
    assert rec["test/sq_rel"] > 0 and rec["test/sq_rel"] != rec["sq_rel"]
    assert (run / "cache" / "test_gt.npz").is_file()
    with pytest.raises(UserError, match="nosuch_files.txt"):
        predictor_finetune(FinetuneJob(str(run), arch, "depth", str(data), steps=0, batch=4, height=32, width=96,
                                       distill_weight=0.0, objective="kd", eval_splits=("nosuch",)))


def test_eval_splits_on_a_task_that_cannot_score_them_is_a_one_line_error(tmp_path):
    from donna_nas.predictor.finetune import run_finetune_job

    with pytest.raises(UserError, match="--task distill scores only its own validation split"):
        run_finetune_job(FinetuneJob(str(tmp_path), "b1:x", "distill", eval_splits=("test",)))
    assert not (tmp_path / "jobs").exists()  # refused before any work or record


def test_bn_recalibrate_scores_the_same_finetune_with_both_statistics(kd_run):
    """``bn_recalibrate`` changes only the statistics the model is scored with: its ``bn_running``
    figures are exactly those of the same finetune without recalibration (the finetune is
    deterministic), and the re-estimated statistics give other figures."""
    run, data = kd_run
    arch = SPACE.sample(__import__("random").Random(2)).encode()
    job = FinetuneJob(str(run), arch, "depth", str(data), steps=4, batch=4, lr=1e-3, height=32, width=96,
                      distill_weight=0.0, objective="kd")
    plain = predictor_finetune(job)
    recal = predictor_finetune(dataclasses.replace(job, bn_recalibrate=8))
    for key in ("sq_rel", "abs_rel", "a1"):
        assert recal[f"bn_running/{key}"] == plain[key]
    assert recal["sq_rel"] != plain["sq_rel"]
    assert not any(k.startswith("bn_running/") for k in plain)


def test_recalibration_on_the_cache_forgets_the_statistics_it_started_from(kd_run):
    """A cumulative average over the cached frames, not an EMA: perturbed running statistics come
    back to the same values, bit for bit."""
    from donna_nas.distill.assemble import assemble, recalibrate_on_cache

    run, _ = kd_run
    enc = assemble(run, SPACE.sample(__import__("random").Random(3)).encode(), recalibrate=False)
    assert recalibrate_on_cache(enc, run, 8)
    bns = [m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    first = [(b.running_mean.clone(), b.running_var.clone()) for b in bns]
    for b in bns:
        b.running_mean.add_(1.0)
        b.running_var.mul_(3.0)
    assert recalibrate_on_cache(enc, run, 8)
    for b, (m, v) in zip(bns, first):
        assert torch.equal(b.running_mean, m) and torch.equal(b.running_var, v)
        assert b.momentum == 0.1  # training after it is an ordinary EMA again
    assert not enc.training
    assert not recalibrate_on_cache(enc, run.parent / "nosuch", 8)


def test_bn_recalibrate_on_a_task_without_it_is_a_one_line_error(tmp_path):
    from donna_nas.predictor.finetune import run_finetune_job

    with pytest.raises(UserError, match="--task distill does not recalibrate batch norm"):
        run_finetune_job(FinetuneJob(str(tmp_path), "b1:x", "distill", bn_recalibrate=64))
    assert not (tmp_path / "jobs").exists()
