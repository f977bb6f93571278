"""Learnable world and the baselines that separate learning from layout."""

from __future__ import annotations

import numpy as np
import pytest

from donna_nas.data.learnability import GEOMETRY_KINDS, KINDS, flow_magnitude, measure, near_edge, pixel_kinds
from donna_nas.data.synth import DriveRenderer, default_supersample
from donna_nas.errors import UserError
from donna_nas.tasks.depth.baselines import baseline_metrics, pixel_prior
from donna_nas.tasks.depth.metrics import evaluate_disparities


@pytest.fixture(scope="module")
def figures():
    kw = dict(drives=1, frames=20, size=(64, 192), targets_per_drive=2)
    return {"new": measure(**kw), "flat": measure(texture="flat", **kw), "old": measure(world_version=1, **kw)}


def test_learnability_separates_textured_from_flat_world(figures):
    new, flat = figures["new"], figures["flat"]
    assert new.pixels == flat.pixels > 1000  # same geometry, same valid pixels
    assert new.fraction > flat.fraction + 0.3
    assert new.median_ratio > 1.5 > flat.median_ratio


def test_version_2_world_teaches_more_than_version_1(figures):
    assert figures["new"].median_ratio > figures["old"].median_ratio
    assert figures["new"].fraction > figures["old"].fraction


def test_learnability_by_class_shares_sum_to_one(figures):
    shares = [c["share"] for c in figures["new"].by_class.values()]
    assert sum(shares) == pytest.approx(1.0)
    assert {"road", "building"} <= set(figures["new"].by_class)


def test_breakdowns_cover_every_pixel_and_recombine_to_the_fraction(figures):
    new = figures["new"]
    for groups in (new.by_flow, new.by_region):
        assert sum(g["share"] for g in groups.values()) == pytest.approx(1.0)
        assert sum(g["share"] * g["fraction"] for g in groups.values()) == pytest.approx(new.fraction)
    assert set(new.by_region) == {"near edge", "interior"}
    # pixels that barely move cannot tell x0.8 from x1.25; pixels that move far can
    assert new.by_flow[">=4 px"]["fraction"] > new.by_flow["<1 px"]["fraction"] + 0.2


def test_flow_magnitude_of_a_sideways_step_is_focal_times_baseline_over_depth():
    K = np.array([[100.0, 0, 16], [0, 100.0, 8], [0, 0, 1]])
    depth = np.full((16, 32), 10.0)
    depth[:, 16:] = 20.0
    pose = np.eye(4)
    pose[0, 3] = 0.5  # the source camera sees points 0.5 m to the right
    flow = flow_magnitude(depth, K, pose)
    np.testing.assert_allclose(flow[:, :16], 100 * 0.5 / 10)
    np.testing.assert_allclose(flow[:, 16:], 100 * 0.5 / 20)
    np.testing.assert_allclose(flow_magnitude(depth, K, np.eye(4)), 0, atol=1e-9)


def test_near_edge_marks_a_band_around_depth_and_object_jumps_only():
    depth = np.full((12, 20), 10.0)
    depth[:, 10:] = 30.0  # a depth jump between columns 9 and 10
    obj = np.zeros((12, 20), int)
    m = near_edge(depth, obj, radius=2)
    assert m[:, 8:12].all() and not m[:, :7].any() and not m[:, 13:].any()
    smooth = np.linspace(10.0, 12.0, 20)[None].repeat(12, 0)  # 1% per column: no edge
    assert not near_edge(smooth, obj, radius=2).any()
    obj2 = obj.copy()
    obj2[6:, :] = 1  # an object boundary at equal depth is an edge too
    assert near_edge(np.full((12, 20), 10.0), obj2, radius=1)[4:8].all()


def test_pixel_kinds_take_the_first_kind_that_applies():
    depth = np.full((12, 30), 10.0)
    depth[:, 20:] = 30.0  # an occlusion contour between columns 19 and 20
    obj = np.zeros((12, 30), int)
    obj[:, 8:] = 1  # an object boundary at equal depth between columns 7 and 8
    flow = np.full((12, 30), 5.0)
    flow[:2] = 0.5  # two rows that barely move
    kind = np.array(KINDS)[pixel_kinds(depth, obj, flow)]
    assert (kind[:2] == "flow <1 px").all()  # low flow wins over every edge
    rest = kind[2:]
    assert (rest[:, 18:22] == "depth jump").all()  # the jump's band, although obj also changes nowhere there
    assert (rest[:, 6:10] == "object edge").all()
    assert (rest[:, :5] == "interior").all() and (rest[:, 11:17] == "interior").all() and (rest[:, 23:] == "interior").all()


def test_ceiling_counts_geometry_kinds_at_their_fraction_and_the_rest_as_won(figures):
    new = figures["new"]
    kinds = new.by_kind
    assert set(kinds) <= set(KINDS) and sum(v["share"] for v in kinds.values()) == pytest.approx(1.0)
    assert sum(v["share"] * v["fraction"] for v in kinds.values()) == pytest.approx(new.fraction)
    lost = sum(v["share"] * (1 - v["fraction"]) for k, v in kinds.items() if k in GEOMETRY_KINDS)
    assert new.ceiling == pytest.approx(1 - lost)
    assert new.fraction <= new.ceiling < 1.0  # barely-moving pixels exist in a forward drive
    assert kinds["flow <1 px"]["fraction"] < kinds["interior"]["fraction"]


def test_supersampled_render_keeps_geometry_of_centre_ray():
    a = DriveRenderer(3, 1, 6, (32, 96), world_version=2, supersample=3).render(2)
    b = DriveRenderer(3, 1, 6, (32, 96), world_version=2, supersample=1).render(2)
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.rgb, b.rgb)  # colour is the pixel's area mean, not its centre sample
    assert default_supersample((64, 192)) == 3 and default_supersample((192, 640)) == 1


def test_version_2_drives_are_static_unless_movers():
    static = DriveRenderer(0, 1, 10, (32, 96), world_version=2)
    movers = DriveRenderer(0, 1, 10, (32, 96), world_version=2, movers=True)
    old = DriveRenderer(0, 1, 10, (32, 96), world_version=1)
    assert not static.scene.vel.any()
    assert movers.scene.vel.any() and old.scene.vel.any()


def test_pixel_prior_is_the_mean_of_valid_depths_and_fills_holes():
    a = np.array([[2.0, 0.0], [0.0, 0.0], [4.0, 8.0]])
    b = np.array([[4.0, 0.0], [0.0, 0.0], [0.0, 100.0]])  # 100 m is outside the valid range
    p = pixel_prior([a, b])
    assert p[0, 0] == pytest.approx(3.0)
    assert p[0, 1] == pytest.approx(3.0)  # uncovered pixel: its row's mean
    assert p[2, 0] == pytest.approx(4.0) and p[2, 1] == pytest.approx(8.0)
    assert p[1, 0] == p[1, 1] == pytest.approx(4.5)  # uncovered row: interpolated between rows 0 and 2
    with pytest.raises(UserError):
        pixel_prior(np.zeros((2, 3, 3)))


def test_baselines_on_hand_made_world():
    # a street whose depth depends only on the row: the prior is exact, the constant is not
    rows = np.linspace(5, 50, 40)[::-1][:, None] * np.ones((1, 60))
    gts = [rows.astype(np.float32) * s for s in (1.0, 1.3, 0.8)]  # the scene's scale varies
    m = baseline_metrics(gts, pixel_prior(gts), crop=None)
    assert m["prior"]["abs_rel"] == pytest.approx(0, abs=1e-6)  # median scaling removes the scale
    assert m["constant"]["abs_rel"] > 0.3
    assert m["constant"] == evaluate_disparities(np.ones((3, 40, 60)), gts, crop=None)[0]


def test_no_crop_keeps_every_pixel_with_ground_truth():
    gt = np.zeros((20, 30), np.float32)
    gt[0, 0], gt[10, 10], gt[5, 5] = 0.0005, 10.0, 95.0  # below min_depth, normal, beyond max_depth
    pred = np.ones((1, 20, 30), np.float32) / 10.0  # depth 10 everywhere
    m, _ = evaluate_disparities(pred, [gt], crop=None, median_scaling=False)
    # all three pixels count (gt > 0); prediction 10 is compared with 0.0005, 10 and 95
    expect = np.mean([abs(10 - 0.0005) / 0.0005, 0.0, abs(10 - 95) / 95])
    assert m["abs_rel"] == pytest.approx(expect, rel=1e-5)
    m_crop, _ = evaluate_disparities(pred, [gt], crop="garg", median_scaling=False)
    assert m_crop["abs_rel"] == pytest.approx(0.0, abs=1e-6)  # garg: only 1e-3 < gt < 80 inside the crop


def test_evaluate_cli_json_has_model_constant_and_prior(tmp_path):
    import json
    import subprocess
    import sys

    from donna_nas.tasks.depth.baselines import save_prior

    def cli(*argv):
        return subprocess.run([sys.executable, "-m", "donna_nas", "evaluate", *argv], capture_output=True, text=True)

    rows = np.linspace(5, 50, 40)[::-1][:, None] * np.ones((1, 60), np.float32)
    gts = np.stack([rows * s for s in (1.0, 1.2)]).astype(np.float32)
    np.savez(tmp_path / "gt.npz", data=gts, crop=np.array("none"))
    np.save(tmp_path / "pred.npy", (1.0 / gts).astype(np.float32))  # a perfect model
    save_prior(tmp_path / "prior.npy", pixel_prior(gts * 0.5))
    res = cli("--pred", str(tmp_path / "pred.npy"), "--gt", str(tmp_path / "gt.npz"), "--prior",
              str(tmp_path / "prior.npy"), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == {"model", "constant", "prior"}
    assert all(len(m) == 7 for m in out.values())
    assert out["model"]["abs_rel"] == pytest.approx(0, abs=1e-6)
    assert out["prior"]["abs_rel"] == pytest.approx(0, abs=1e-6)  # this street's layout is all there is
    assert out["constant"]["abs_rel"] > 0.3
    bad = cli("--pred", str(tmp_path / "pred.npy"), "--gt", str(tmp_path / "gt.npz"), "--prior", str(tmp_path / "pred.npy"))
    assert bad.returncode == 2 and "--prior" in bad.stderr + bad.stdout and "Traceback" not in bad.stderr
