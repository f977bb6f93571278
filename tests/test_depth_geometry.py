import math

import torch

from donna_nas.tasks.depth.geometry import (
    BackprojectDepth,
    Project3D,
    disp_to_depth,
    rot_from_axisangle,
    transformation_from_parameters,
    warp,
)


def _K(h, w, batch=1):
    K = torch.tensor([[0.58 * w, 0, 0.5 * w, 0], [0, 1.92 * h, 0.5 * h, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    K = K.unsqueeze(0).repeat(batch, 1, 1)
    return K, torch.linalg.inv(K)


def test_disp_to_depth_bounds():
    scaled, depth = disp_to_depth(torch.tensor([0.0, 1.0, 0.5]), 0.1, 100)
    assert torch.allclose(depth[:2], torch.tensor([100.0, 0.1]))
    assert torch.allclose(scaled[2], torch.tensor(0.01 + 0.5 * (10 - 0.01)))


def test_rotation_about_z_by_90_degrees():
    R = rot_from_axisangle(torch.tensor([[[0, 0, math.pi / 2]]]))[0]
    expect = torch.tensor([[0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    assert torch.allclose(R, expect, atol=1e-6)


def test_invert_is_exact_inverse():
    g = torch.Generator().manual_seed(0)
    aa = torch.randn(4, 1, 3, generator=g) * 0.3
    t = torch.randn(4, 1, 3, generator=g)
    t0 = t.clone()
    M = transformation_from_parameters(aa, t)
    Mi = transformation_from_parameters(aa, t, invert=True)
    assert torch.allclose(M @ Mi, torch.eye(4).expand(4, 4, 4), atol=1e-5)
    assert torch.equal(t, t0)  # input not modified
    # x' = R x + t
    x = torch.tensor([1.0, 2.0, 3.0, 1.0])
    R = rot_from_axisangle(aa)
    assert torch.allclose((M @ x)[:, :3], (R @ x)[:, :3] + t[:, 0], atol=1e-6)


def test_identity_pose_reconstructs_image_for_any_depth():
    h, w = 24, 40
    K, inv_K = _K(h, w, 2)
    img = torch.rand(2, 3, h, w)
    depth = torch.rand(2, 1, h, w) * 50 + 0.1
    pts = BackprojectDepth(h, w)(depth, inv_K)
    grid = Project3D(h, w)(pts, K, torch.eye(4).repeat(2, 1, 1))
    assert (warp(img, grid) - img).abs().max() < 1e-4


def test_monodepth2_sampling_magnifies_the_source_by_half_a_pixel_at_the_borders():
    """``warp(..., "monodepth2")`` reads the align_corners=True grid with align_corners=False (as
    Monodepth2's code on PyTorch >= 1.3): with the identity pose, column x is sampled at
    x·W/(W−1) − 0.5, whatever the depth."""
    import pytest

    h, w = 8, 21
    K, inv_K = _K(h, w)
    ramp = torch.arange(w, dtype=torch.float32).expand(1, 1, h, w).contiguous()
    pts = BackprojectDepth(h, w)(torch.full((1, 1, h, w), 7.0), inv_K)
    grid = Project3D(h, w)(pts, K, torch.eye(4)[None])
    assert torch.allclose(warp(ramp, grid), ramp, atol=1e-4)
    x = torch.arange(w, dtype=torch.float32)
    expect = (x * w / (w - 1) - 0.5).clamp(0, w - 1)  # border padding holds the edge columns
    got = warp(ramp, grid, "monodepth2")[0, 0, h // 2]
    assert torch.allclose(got, expect, atol=1e-4)
    assert got[w // 2] == pytest.approx(w // 2, abs=1e-4) and got[1] < 1 and got[-2] > w - 2  # centre fixed, borders move out
    with pytest.raises(ValueError, match="sampling"):
        warp(ramp, grid, "nearest")


def test_pure_translation_moves_pixels_by_fx_t_over_depth():
    h, w = 24, 40
    K, inv_K = _K(h, w)
    D, tx = 5.0, 0.5
    fx = K[0, 0, 0].item()
    depth = torch.full((1, 1, h, w), D)
    T = transformation_from_parameters(torch.zeros(1, 1, 3), torch.tensor([[[tx, 0.0, 0.0]]]))
    pts = BackprojectDepth(h, w)(depth, inv_K)
    xy = Project3D(h, w).pixels(pts, K, T)[0]
    u = torch.arange(w, dtype=torch.float32).expand(h, w)
    v = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    assert torch.allclose(xy[..., 0], u + fx * tx / D, atol=1e-3)
    assert torch.allclose(xy[..., 1], v, atol=1e-3)


def test_translation_warp_shifts_image_content():
    # choose tx so that the shift is exactly 3 px: source(u + 3) sampled at target u
    h, w = 16, 48
    K, inv_K = _K(h, w)
    fx = K[0, 0, 0].item()
    D, shift = 4.0, 3
    tx = shift * D / fx
    src = torch.rand(1, 3, h, w)
    T = transformation_from_parameters(torch.zeros(1, 1, 3), torch.tensor([[[tx, 0.0, 0.0]]]))
    pts = BackprojectDepth(h, w)(torch.full((1, 1, h, w), D), inv_K)
    out = warp(src, Project3D(h, w)(pts, K, T))
    assert (out[..., : w - shift] - src[..., shift:]).abs().max() < 1e-4
    # beyond the right border: border padding repeats the last column
    assert (out[..., w - shift :] - src[..., -1:]).abs().max() < 1e-4


def test_forward_translation_scales_about_principal_point():
    # moving the camera forward by tz: a point at the principal point stays put
    h, w = 16, 32
    K, inv_K = _K(h, w)
    T = transformation_from_parameters(torch.zeros(1, 1, 3), torch.tensor([[[0.0, 0.0, -1.0]]]))
    pts = BackprojectDepth(h, w)(torch.full((1, 1, h, w), 2.0), inv_K)
    xy = Project3D(h, w).pixels(pts, K, T)[0]
    cx, cy = int(K[0, 0, 2]), int(K[0, 1, 2])
    assert torch.allclose(xy[cy, cx], torch.tensor([float(cx), float(cy)]), atol=1e-4)
    # a pixel at offset du from the centre moves to 2·du (depth 2 → 1)
    assert torch.allclose(xy[cy, cx + 4, 0], torch.tensor(cx + 8.0), atol=1e-3)
