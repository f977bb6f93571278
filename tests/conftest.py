"""Fixtures shared by the test modules."""

import pytest

SYNTH_WORLD = dict(drives=3, frames=8, size=(64, 192), seed=0)
"""The shared synthetic world: 3 drives × 8 frames at 64×192 (train/val/test splits, velodyne,
calibration, poses, semantic labels), seed 0."""


@pytest.fixture(scope="session")
def synth_world(tmp_path_factory):
    """A small synthetic KITTI-layout world (``SYNTH_WORLD``), rendered once per test session.
    Read-only: a test that writes next to the data must copy it or write elsewhere."""
    from donna_nas.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("synth_world") / "world", progress=False, **SYNTH_WORLD)
