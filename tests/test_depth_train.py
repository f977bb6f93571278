import inspect
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import TINY_ARCH as ARCH
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from donna_nas.data.epochs import EpochDataset
from donna_nas.errors import UserError
from donna_nas.tasks.depth.run import DepthConfig, load_model
from donna_nas.tasks.depth.train import TrainingDiverged, epoch_batches, train_depth

H, W = 32, 96


class FakeFrames(EpochDataset):
    """Same dict contract as KittiRawDataset: a textured scene panning sideways, random labels."""

    def __init__(self, n=6, h=32, w=96, nan_from_epoch=None, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.n, self.h, self.w = n, h, w
        base = torch.nn.functional.interpolate(torch.rand(n, 3, h // 4, w // 4 + 4, generator=g), size=(h, w + 16), mode="bilinear")
        self.frames = torch.stack([base[:, :, :, 8 + s : 8 + s + w] for s in (0, -2, 2)], 1)  # n,F,3,h,w
        self.sem = torch.randint(0, 19, (n, h, w), generator=g)
        K = torch.tensor([[0.58 * w, 0, 0.5 * w, 0], [0, 1.92 * h, 0.5 * h, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
        self.K, self.inv_K = K, torch.linalg.inv(K)
        self.nan_from_epoch, self.epoch = nan_from_epoch, 0

    def set_epoch(self, e):
        self.epoch = e

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        img = self.frames[i].clone()
        if self.nan_from_epoch is not None and self.epoch >= self.nan_from_epoch:
            img = img * float("nan")
        return {"images": img, "images_aug": img, "K": self.K, "inv_K": self.inv_K, "semantics": self.sem[i], "index": i}


def _cfg(**kw):
    """A small encoder (conftest.TINY_ARCH): the trainer's logic (resume, NaN guard, DDP, X-Distill)
    does not depend on the depth encoder; the pose net stays a ResNet18."""
    base = dict(data="fake", height=H, width=W, batch=2, epochs=2, checkpoint_every=2, seed=3, lr=1e-3,
                backbone=ARCH, space="tiny")
    base.update(kw)
    return DepthConfig(**base)


def test_epoch_batches_partition_over_ranks():
    a = epoch_batches(10, 2, 0, 1, 0, 2)
    b = epoch_batches(10, 2, 0, 1, 1, 2)
    flat = sum(a, []) + sum(b, [])
    assert len(a) == len(b) == 2 and len(set(flat)) == 8
    assert epoch_batches(10, 2, 0, 1) != epoch_batches(10, 2, 0, 2)  # reshuffled per epoch
    assert epoch_batches(10, 2, 0, 1) == epoch_batches(10, 2, 0, 1)


@pytest.mark.parametrize("precision", ["off", "bf16"])
def test_resume_gives_identical_weights(tmp_path, precision):
    ds = FakeFrames()
    train_depth(_cfg(max_steps=4, mixed_precision=precision), tmp_path / "a", dataset=ds, progress=False, log=None)
    train_depth(_cfg(max_steps=2, mixed_precision=precision), tmp_path / "b", dataset=ds, progress=False, log=None)
    st = json.loads((tmp_path / "b/checkpoints/last.json").read_text())
    assert st["step"] == 2
    train_depth(_cfg(max_steps=4), tmp_path / "b", resume=True, dataset=ds, progress=False, log=None)
    if precision == "bf16":  # the stored config keeps the precision of the run
        assert "mixed_precision: bf16" in (tmp_path / "b/config.yaml").read_text()
    a = load_file(str(tmp_path / "a/checkpoints/last.safetensors"))
    b = load_file(str(tmp_path / "b/checkpoints/last.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # training actually moved the weights
    c = train_depth(_cfg(max_steps=1), tmp_path / "c", dataset=ds, progress=False, log=None)
    assert not torch.equal(a["model.depth.decoder.dispconv.0.conv.weight"], c["model"].state_dict()["depth.decoder.dispconv.0.conv.weight"])


def test_bf16_nets_feed_a_float32_loss_close_to_the_float32_one():
    """bfloat16 autocast changes the networks' arithmetic, not the geometry or the loss: the poses
    and disparities reach the loss in float32, the loss stays within a few percent of the float32
    step's, and the parameters and their gradients stay float32."""
    from donna_nas.tasks.depth.train import DepthTrainer

    b = {k: torch.stack([FakeFrames()[i][k] for i in range(2)]) for k in ("images", "images_aug", "K", "inv_K")}
    losses = {}
    for precision in ("off", "bf16"):
        torch.manual_seed(0)
        m = DepthTrainer(_cfg(mixed_precision=precision)).train()
        poses = m.poses(b["images_aug"])
        assert all(p.dtype == torch.float32 for p in poses.values())
        loss, _ = m(b)
        loss.backward()
        assert loss.dtype == torch.float32
        assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in m.parameters() if p.grad is not None)
        losses[precision] = loss.item()
    assert losses["bf16"] != losses["off"]  # autocast took effect
    assert abs(losses["bf16"] - losses["off"]) < 0.05 * losses["off"]
    with pytest.raises(UserError, match="mixed-precision"):
        _cfg(mixed_precision="fp16").validate()


def _pose_batch():
    return {k: torch.stack([FakeFrames()[i][k] for i in range(2)]) for k in ("images", "images_aug", "K", "inv_K")}


def test_batched_pose_pairs_equal_separate_calls_outside_batch_norm_training():
    """One pose-net call on both pairs stacked gives each pair the pose that its own call gives, when
    batch norm uses its running statistics; in training mode each call's statistics differ."""
    from donna_nas.tasks.depth.train import DepthTrainer

    aug = _pose_batch()["images_aug"]
    torch.manual_seed(0)
    m = DepthTrainer(_cfg(pose_batch_pairs=True)).eval()
    separate = DepthTrainer(_cfg(pose_batch_pairs=False)).eval()
    separate.load_state_dict(m.state_dict())
    with torch.no_grad():
        got, want = m.pose_parameters(aug), separate.pose_parameters(aug)
        assert list(got) == list(want) == [-1, 1]
        for f in want:
            for g, w in zip(got[f], want[f]):
                assert g.shape == w.shape
                torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
        m.train(), separate.train()
        got, want = m.pose_parameters(aug), separate.pose_parameters(aug)
    assert not torch.allclose(got[1][1], want[1][1])  # batch statistics over 4 samples, not 2


def test_runs_written_before_pose_batching_resume_with_separate_calls(tmp_path):
    from donna_nas.tasks.depth.run import load_config, save_config

    save_config(tmp_path, _cfg())
    assert load_config(tmp_path).pose_batch_pairs is True
    text = (tmp_path / "config.yaml").read_text()
    (tmp_path / "config.yaml").write_text("\n".join(ln for ln in text.splitlines() if "pose_batch_pairs" not in ln))
    assert load_config(tmp_path).pose_batch_pairs is False


def test_pose_downsample_gives_the_pose_net_average_pooled_frames():
    """--pose-downsample 2 at 64x192 gives exactly the poses that the same pose net computes on the
    frames average-pooled to 32x96, and the pose encoder sees 32x96 inputs."""
    from donna_nas.tasks.depth.train import DepthTrainer

    frames = torch.rand(2, 3, 3, 64, 192, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    pooled_net = DepthTrainer(_cfg(height=64, width=192, pose_downsample=2)).eval()
    plain_net = DepthTrainer(_cfg(pose_downsample=1)).eval()  # the training size H x W = 32 x 96
    plain_net.load_state_dict(pooled_net.state_dict())
    seen = []
    pooled_net.pose.encoder.register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape[-2:])))
    pooled = torch.nn.functional.avg_pool2d(frames.flatten(0, 1), 2).unflatten(0, (2, 3))
    with torch.no_grad():
        got, want = pooled_net.pose_parameters(frames), plain_net.pose_parameters(pooled)
    assert seen == [(32, 96)]
    for f in want:
        for g, w in zip(got[f], want[f]):
            torch.testing.assert_close(g, w)


@pytest.mark.parametrize("factor", [0, 3, 8])
def test_pose_downsample_must_divide_the_size_and_leave_16_pixels(factor):
    with pytest.raises(UserError, match="--pose-downsample"):
        _cfg(height=64, width=192, pose_downsample=factor).validate()


def test_runs_written_before_pose_downsample_resume_at_full_size(tmp_path):
    from donna_nas.tasks.depth.run import load_config, save_config

    save_config(tmp_path, _cfg(height=64, width=192, pose_downsample=2))
    assert load_config(tmp_path).pose_downsample == 2
    text = (tmp_path / "config.yaml").read_text()
    (tmp_path / "config.yaml").write_text("\n".join(ln for ln in text.splitlines() if "pose_downsample" not in ln))
    assert load_config(tmp_path).pose_downsample == 1


class EpochLog(FakeFrames):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.epochs = []

    def set_epoch(self, e):
        super().set_epoch(e)
        self.epochs.append(e)


class NoEpochs(Dataset):
    """A plain dataset with a ``set_epoch`` it never declared: the trainer must not call it."""

    def __init__(self):
        self.frames, self.calls = FakeFrames(), []

    def set_epoch(self, e):
        self.calls.append(e)

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, i):
        return self.frames[i]


def test_trainer_tells_an_epoch_dataset_each_epoch_and_resume_continues_the_count(tmp_path):
    # 6 samples, batch 2: 3 steps per epoch; 7 steps touch epochs 0, 1, 2
    ds = EpochLog()
    train_depth(_cfg(max_steps=7, epochs=3), tmp_path / "a", dataset=ds, progress=False, log=None)
    assert ds.epochs == [0, 1, 2]
    ds = EpochLog()
    train_depth(_cfg(max_steps=4, epochs=3), tmp_path / "b", dataset=ds, progress=False, log=None)
    assert ds.epochs == [0, 1]
    ds = EpochLog()  # resumed at step 4: inside epoch 1, so it draws epoch 1's augmentations again
    train_depth(_cfg(max_steps=7, epochs=3), tmp_path / "b", resume=True, dataset=ds, progress=False, log=None)
    assert ds.epochs == [1, 2]
    plain = NoEpochs()
    train_depth(_cfg(max_steps=4), tmp_path / "c", dataset=plain, progress=False, log=None)
    assert plain.calls == []


def test_existing_run_needs_resume(tmp_path):
    ds = FakeFrames()
    train_depth(_cfg(max_steps=2), tmp_path / "r", dataset=ds, progress=False, log=None)
    with pytest.raises(UserError, match="--resume"):
        train_depth(_cfg(max_steps=2), tmp_path / "r", dataset=ds, progress=False, log=None)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    ds = FakeFrames(nan_from_epoch=1)  # 3 batches per epoch: steps 0-2 fine, step 3 NaN
    with pytest.raises(TrainingDiverged) as ei:
        train_depth(_cfg(epochs=3), tmp_path / "n", dataset=ds, progress=False, log=None)
    msg = str(ei.value)
    assert "nan" in msg.lower() and "step 3" in msg and "step 2" in msg
    st = json.loads((tmp_path / "n/checkpoints/last.json").read_text())
    assert st["step"] == 2
    w = load_file(str(tmp_path / "n/checkpoints/last.safetensors"))
    assert all(torch.isfinite(v.float()).all() for v in w.values())


def _graph_signature(net):
    ep = torch.export.export(net.eval(), (torch.rand(1, 3, H, W),))
    return [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]


def test_xdistill_changes_training_only(tmp_path):
    ds = FakeFrames()
    train_depth(_cfg(max_steps=2), tmp_path / "plain", dataset=ds, progress=False, log=None)
    res = train_depth(_cfg(max_steps=2, xdistill=True, seg_teacher="labels"), tmp_path / "xd", dataset=ds, progress=False, log=None)
    assert res["model"].transfer is not None
    n0, info0 = load_model(tmp_path / "plain")
    n1, info1 = load_model(tmp_path / "xd")
    assert info0["params"] == info1["params"] == sum(p.numel() for p in n1.parameters())
    assert {k: v.shape for k, v in n0.state_dict().items()} == {k: v.shape for k, v in n1.state_dict().items()}
    assert _graph_signature(n0) == _graph_signature(n1)
    # the transfer network is in the training checkpoint but not in the exported model
    ck = load_file(str(tmp_path / "xd/checkpoints/last.safetensors"))
    assert any(k.startswith("model.transfer.") for k in ck)
    assert not any("transfer" in k for k in load_file(str(tmp_path / "xd/model.safetensors")))


def test_xdistill_loss_reaches_depth_encoder():
    from donna_nas.tasks.depth.train import DepthTrainer
    from donna_nas.tasks.depth.xdistill import LabelTeacher, load_groups, xdistill_loss

    torch.manual_seed(0)
    teacher = LabelTeacher(load_groups())
    m = DepthTrainer(_cfg(xdistill=True, seg_teacher="labels"), teacher)
    ds = FakeFrames(n=2)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    groups = teacher(batch)
    disps = m.depth.multiscale(batch["images_aug"][:, 0])
    xdistill_loss(m.transfer, disps, groups).backward()
    g = next(m.depth.encoder.parameters()).grad  # the stem's first convolution: the far end of the encoder
    assert g is not None and g.abs().sum() > 0


def test_xdistill_scales_choose_the_disparities_the_transfer_net_reads():
    from donna_nas.errors import UserError
    from donna_nas.tasks.depth.train import DepthTrainer
    from donna_nas.tasks.depth.xdistill import LabelTeacher, load_groups, xdistill_loss

    teacher = LabelTeacher(load_groups())
    ds = FakeFrames(n=2)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    batch["groups"] = teacher(batch)
    got = {}
    for read in (None, [0], [1, 3]):
        torch.manual_seed(0)
        m = DepthTrainer(_cfg(xdistill=True, seg_teacher="labels", xdistill_scales=read), teacher)
        with torch.no_grad():
            _, info = m(batch)
            disps = m.depth.multiscale(batch["images_aug"][:, 0])
            want = xdistill_loss(m.transfer, [disps[s] for s in (read or [0, 1, 2, 3])], batch["groups"])
        assert torch.allclose(info["xdistill"], want), read
        got[str(read)] = float(want)
    assert len(set(got.values())) == 3  # three different losses: the option changes what is read
    for bad in ([], [4]):
        with pytest.raises(UserError, match="--xdistill-scales"):
            _cfg(xdistill=True, seg_teacher="labels", xdistill_scales=bad).validate()


def test_group_mapping(tmp_path):
    from donna_nas.tasks.depth.xdistill import load_groups

    g = load_groups()
    assert g.names[g(torch.tensor([0]))[0]] == "flat"  # road
    assert g.names[g(torch.tensor([13]))[0]] == "vehicle"  # car
    assert g.names[g(torch.tensor([10]))[0]] == "sky"
    assert g(torch.tensor([255]))[0] == 255
    bad = tmp_path / "g.yaml"
    bad.write_text("groups:\n  a: [road, pixie]\n")
    with pytest.raises(UserError, match="pixie"):
        load_groups(bad)
    bad.write_text("groups:\n  a: [road]\n  b: [road]\n")
    with pytest.raises(UserError, match="both groups"):
        load_groups(bad)


_DDP_SCRIPT = """
import sys, json, hashlib, os
import torch
from torch.utils.data import Dataset
sys.path.insert(0, {root!r})
from donna_nas.data.epochs import EpochDataset
from donna_nas.tasks.depth.run import DepthConfig
from donna_nas.tasks.depth.train import train_depth
{fake}
cfg = DepthConfig(data="fake", height={H}, width={W}, batch=1, epochs=1, checkpoint_every=2, seed=3, max_steps=3,
                  backbone={arch!r}, space="tiny")
res = train_depth(cfg, {run!r}, dataset=FakeFrames(n=6), progress=False, log=None)
h = hashlib.sha1(b"".join(p.detach().numpy().tobytes() for p in res["model"].parameters())).hexdigest()
json.dump({{"hash": h, "losses": res["losses"]}}, open({run!r} + "/rank" + os.environ["RANK"] + ".json", "w"))
"""


def test_ddp_two_processes_keep_identical_weights(tmp_path):
    run = tmp_path / "ddp"
    run.mkdir()
    script = tmp_path / "ddp_train.py"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script.write_text(_DDP_SCRIPT.format(root=root, fake=textwrap.dedent(inspect.getsource(FakeFrames)), H=H, W=W, arch=ARCH, run=str(run)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29571", str(script)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    r0 = json.loads((run / "rank0.json").read_text())
    r1 = json.loads((run / "rank1.json").read_text())
    assert r0["hash"] == r1["hash"]
    assert len(r0["losses"]) == 3 and r0["losses"] != r1["losses"]  # different data, same weights
    assert json.loads((run / "checkpoints/last.json").read_text())["step"] == 3


@pytest.fixture(scope="module")
def world(synth_world):
    return synth_world  # conftest: 3 drives x 8 frames at 64x192, seed 0


def test_label_folder_matches_dataset_semantics_incl_flips(world):
    from donna_nas.data.kitti import KittiRawDataset
    from donna_nas.tasks.depth.xdistill import LabelFolder

    split = world / "splits" / "train_files.txt"
    ref = KittiRawDataset(world, split, size=(64, 192), train=True, semantics=True, seed=5)
    wrapped = LabelFolder(KittiRawDataset(world, split, size=(64, 192), train=True, semantics=False, seed=5), world / "semantics")
    for epoch in (0, 1):
        ref.set_epoch(epoch)
        wrapped.set_epoch(epoch)
        for i in range(len(ref)):
            assert torch.equal(ref[i]["semantics"], wrapped[i]["semantics"])
    with pytest.raises(UserError, match="label PNGs missing"):
        LabelFolder(ref, world / "nowhere")


def _cli(args):
    from donna_nas.cli import main

    with pytest.raises(SystemExit) as ei:
        main(args)
    return ei.value.code or 0


def test_cli_finetune_resume_then_evaluate_run_on_synthetic_world(tmp_path, world):
    from donna_nas.cli import main

    data = world
    run = tmp_path / "run"
    assert _cli(["finetune", "--task", "depth", "--data", str(data), "--size", "64x192", "--epochs", "1", "--batch", "4",
                 "--max-steps", "1", "--out", str(run), "--no-eval"]) == 0
    assert json.loads((run / "checkpoints/last.json").read_text())["step"] == 1
    assert _cli(["finetune", "--out", str(run), "--resume", "--no-eval"]) == 0  # resume: stored config, epoch 1 complete
    assert json.loads((run / "checkpoints/last.json").read_text())["step"] == 2
    assert json.loads((run / "model.json").read_text())["complete"] is True
    assert (run / "model.safetensors").is_file() and (run / "config.yaml").is_file()
    with pytest.raises(SystemExit) as ei:
        main(["evaluate", str(run)])
    assert ei.value.code in (0, None)
    m = json.loads((run / "metrics.json").read_text())
    assert set(m["metrics"]) == {"abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"}
    assert m["frames"] == len((data / "splits" / "test_files.txt").read_text().split("\n")) - 1
    report = (run / "report.md").read_text()
    assert "| model | abs_rel | sq_rel |" in report and (run / "plots" / "depth_grid.png").stat().st_size > 1000
    with pytest.raises(SystemExit) as ei:
        main(["evaluate", str(tmp_path / "nothing")])
    assert ei.value.code == 2


def test_make_encoder_resnets_and_searched_arch():
    from donna_nas.space import load_space
    from donna_nas.tasks.depth.backbones import make_encoder
    from donna_nas.tasks.depth.networks import DepthDecoder, DepthNet

    assert make_encoder("resnet50").channels == [64, 256, 512, 1024, 2048]
    arch = load_space("tiny").sample(0).encode()
    enc = make_encoder(arch, "tiny")
    net = DepthNet(enc, DepthDecoder(enc.channels, act="relu")).eval()
    with torch.no_grad():
        d = net(torch.rand(1, 3, 64, 192))
        ms = net.multiscale(torch.rand(1, 3, 64, 192))
    assert d.shape == (1, 1, 64, 192) and [m.shape[-1] for m in ms] == [192, 96, 48, 24]
    assert 0 <= d.min() and d.max() <= 1
    with pytest.raises(UserError, match="--space"):
        make_encoder(arch)


def test_resnet18_depth_decoder_param_count():
    from donna_nas.tasks.depth.networks import DepthDecoder

    # the Monodepth2 ResNet18 decoder layout (channels 16..256, 4 disparity heads)
    assert sum(p.numel() for p in DepthDecoder([64, 64, 128, 256, 512]).parameters()) == 3_152_724


def test_teacher_sources_agree_safetensors_onnx_torchscript(tmp_path):
    import warnings

    from safetensors.torch import save_file

    from donna_nas.tasks.depth.seg_teacher import SegNet, load_seg_teacher
    from donna_nas.tasks.depth.xdistill import make_teacher

    torch.manual_seed(0)
    net = SegNet(19, width=4).eval()
    st = tmp_path / "t.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st),
              metadata={"donna_nas": "seg_teacher", "config": json.dumps({"num_classes": 19, "width": 4})})
    x = torch.rand(2, 3, H, W)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(tmp_path / "t.onnx"), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "b"}})
        torch.jit.save(torch.jit.trace(net, x), str(tmp_path / "t.pt"))
    batch = {"images": x.unsqueeze(1)}
    outs = []
    for name in ("t.safetensors", "t.onnx", "t.pt"):
        t = make_teacher(_cfg(xdistill=True, seg_teacher=str(tmp_path / name)))
        g = t(batch)
        assert g.shape == (2, H, W) and t.num_groups == 7
        outs.append(g)
    with torch.no_grad():
        expect = make_teacher(_cfg(xdistill=True, seg_teacher="labels")).mapping(load_seg_teacher(st)(x).argmax(1))
    assert torch.equal(outs[0], expect)
    # ONNX/TorchScript agree with the eager model except at near-ties of the logits
    assert (outs[1] == outs[0]).float().mean() > 0.99 and (outs[2] == outs[0]).float().mean() > 0.99
    with pytest.raises(UserError, match="unknown teacher type"):
        (tmp_path / "t.txt").write_text("x")
        make_teacher(_cfg(xdistill=True, seg_teacher=str(tmp_path / "t.txt")))
