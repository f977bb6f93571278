"""Fixtures shared by the test modules, and one torch thread per test process.

The README runs the suite on two workers (``-n 2``, pytest-xdist): one thread each keeps the two
from spin-waiting on each other's cores, as donna-nas's own processes do (``runtime.threads``).
Subprocesses started by the tests inherit ``OMP_NUM_THREADS``. A value set by the caller wins."""

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    from donna_nas.runtime.threads import set_threads

    set_threads(None)  # OMP_NUM_THREADS, as donna-nas's own processes read it

TINY_ARCH = ("b1:fused_ir_d1_k5_e2_c8_relu|b2:fused_ir_d1_k5_e2_c16_relu|b3:gconv_d1_k3_e2_c16_relu|"
             "b4:ir_d2_k5_e2_c24_relu|b5:gconv_d1_k3_e2_c32_relu")
"""A small encoder of the ``tiny`` space, for tests whose subject is not the encoder (training
loop, resume, failures): a ResNet18 made each of those runs several times slower."""

SYNTH_WORLD = dict(drives=3, frames=8, size=(64, 192), seed=0)
"""The shared synthetic world: 3 drives × 8 frames at 64×192 (train/val/test splits, velodyne,
calibration, poses, semantic labels), seed 0."""


@pytest.fixture(scope="session")
def synth_world(tmp_path_factory):
    """A small synthetic KITTI-layout world (``SYNTH_WORLD``), rendered once per test session.
    Read-only: a test that writes next to the data must copy it or write elsewhere."""
    from donna_nas.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("synth_world") / "world", progress=False, **SYNTH_WORLD)


@pytest.fixture(scope="module")
def tiny_supernet(tmp_path_factory):
    """A build-supernet run of the ``tiny`` space distilled 3 steps per block from a random
    ResNet18 on random 32×64 frames (no predictor): enough for tests of how distilled blocks are
    assembled and stitched, whose subject is the plumbing, not the blocks' quality."""
    import torch

    from donna_nas.distill.pipeline import SupernetConfig, build_supernet
    from donna_nas.distill.teacher import TeacherCut
    from donna_nas.nn.resnet import resnet18
    from donna_nas.space import load_space

    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("tiny_supernet") / "run"
    g = torch.Generator().manual_seed(0)
    frames = {"train": torch.rand(8, 3, 32, 64, generator=g), "val": torch.rand(4, 3, 32, 64, generator=g)}
    cfg = SupernetConfig(height=32, width=64, bkd_steps=3, bkd_batch=4, calib_frames=4, predictor_archs=0,
                         predictor_test=0, task="distill", arch_pool=50)
    build_supernet(load_space("tiny"), run, cfg, teacher=TeacherCut(resnet18(), name="resnet18-random"),
                   frames=frames, progress=False)
    return run


def quick_pairing(mp: pytest.MonkeyPatch) -> None:
    """Time deployed candidates against their teacher in 2 rounds of 3 runs instead of the
    product's 10 x 5: tests check what the pairing decides, not its precision."""
    from donna_nas.tasks.depth import deployed

    mp.setattr(deployed, "PAIRED_ROUNDS", 2)
    mp.setattr(deployed, "PAIRED_RUNS", 6)
