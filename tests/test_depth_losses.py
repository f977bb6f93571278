import torch

from donna_nas.tasks.depth.geometry import transformation_from_parameters
from donna_nas.tasks.depth.losses import SSIM, Monodepth2Loss, min_reprojection, photometric_error, smoothness


def test_ssim_self_is_one_loss_zero():
    x = torch.rand(2, 3, 16, 20)
    assert SSIM()(x, x).abs().max() < 1e-6
    assert photometric_error(x, x).abs().max() < 1e-6


def test_ssim_constant_images_hand_value():
    a, b = 0.3, 0.6
    x, y = torch.full((1, 1, 8, 8), a), torch.full((1, 1, 8, 8), b)
    c1, c2 = 1e-4, 9e-4
    ssim = (2 * a * b + c1) * c2 / ((a * a + b * b + c1) * c2)
    assert torch.allclose(SSIM()(x, y), torch.full((1, 1, 8, 8), (1 - ssim) / 2), atol=1e-5)
    assert torch.allclose(SSIM()(x, y), SSIM()(y, x))


def test_photometric_mixes_ssim_and_l1():
    x, y = torch.full((1, 3, 8, 8), 0.2), torch.full((1, 3, 8, 8), 0.5)
    s = SSIM()(x, y).mean(1, keepdim=True)
    assert torch.allclose(photometric_error(x, y), 0.85 * s + 0.15 * 0.3, atol=1e-6)


def test_smoothness_constant_disp_is_zero_and_ramp_hand_value():
    img = torch.rand(1, 3, 8, 10)
    assert smoothness(torch.full((1, 1, 8, 10), 0.7), img).item() == 0.0
    ramp = torch.arange(1, 11, dtype=torch.float32).expand(1, 1, 8, 10).contiguous()
    flat = torch.zeros(1, 3, 8, 10)
    # d̃ = d / mean(d) = d / 5.5 → |∂x d̃| = 1/5.5 everywhere, ∂y = 0; flat image → weight 1
    assert abs(smoothness(ramp, flat).item() - 1 / 5.5) < 1e-6
    # an image edge exactly where the disparity jumps attenuates the penalty by exp(-|∂I|)
    step_d = torch.ones(1, 1, 4, 4)
    step_d[..., 2:] = 3.0
    edge = torch.zeros(1, 3, 4, 4)
    edge[..., 2:] = 1.0
    mean = 2.0
    expect = (2 / mean) * torch.exp(torch.tensor(-1.0)) * 4 / 12  # one jump column of 3, rows 4
    assert abs(smoothness(step_d, edge).item() - expect.item()) < 1e-6


def test_min_reprojection_takes_per_pixel_minimum():
    t = torch.zeros(1, 3, 6, 6)
    a = torch.zeros(1, 3, 6, 6)
    a[..., :3] = 1.0  # left half wrong
    b = torch.zeros(1, 3, 6, 6)
    b[..., 3:] = 1.0  # right half wrong
    r = min_reprojection([a, b], t, automask=False)
    pa, pb = photometric_error(a, t)[:, 0], photometric_error(b, t)[:, 0]
    assert torch.allclose(r.per_pixel, torch.minimum(pa, pb))
    assert r.mask.all()


def test_automask_on_where_scene_static_relative_to_camera():
    torch.manual_seed(0)
    t = torch.rand(1, 3, 12, 12)
    static_src = t.clone()  # camera did not move: source == target
    bad_warp = torch.roll(t, 2, dims=-1)  # a warp from a wrong pose
    r = min_reprojection([bad_warp], t, [static_src])
    assert not r.mask.any()  # identity wins everywhere: masked out
    assert r.per_pixel.abs().max() < 1e-4
    # moving camera, correct warp: warped source == target, the unwarped source differs
    moved_src = torch.roll(t, 3, dims=-1)
    r2 = min_reprojection([t.clone()], t, [moved_src], noise=0)
    assert r2.mask.float().mean() > 0.95  # only accidental ties (pe = 0 both) would be masked


def test_automask_blocks_gradient_for_masked_pixels():
    t = torch.rand(1, 3, 8, 8)
    w = (torch.roll(t, 1, -1)).requires_grad_(True)
    r = min_reprojection([w], t, [t.clone()])
    r.loss.backward()
    assert w.grad.abs().max() == 0


def _K(h, w, b):
    K = torch.tensor([[0.58 * w, 0, 0.5 * w, 0], [0, 1.92 * h, 0.5 * h, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    K = K.expand(b, 4, 4).contiguous()
    return K, torch.linalg.inv(K)


def test_total_loss_zero_for_identical_frames_constant_disp():
    h, w = 32, 64
    loss_fn = Monodepth2Loss(h, w)
    img = torch.rand(2, 1, 3, h, w).repeat(1, 3, 1, 1, 1)
    disps = [torch.full((2, 1, h // 2**s, w // 2**s), 0.3) for s in range(4)]
    K, inv_K = _K(h, w, 2)
    eye = torch.eye(4).expand(2, 4, 4)
    loss, info = loss_fn(disps, img, K, inv_K, {-1: eye, 1: eye})
    assert abs(loss.item()) < 1e-4


def test_total_loss_gradient_prefers_true_depth():
    # camera translates sideways; a fronto-parallel plane at depth 10: warped loss is lower at the true depth
    h, w = 32, 64
    K, inv_K = _K(h, w, 1)
    torch.manual_seed(1)
    tgt = torch.nn.functional.interpolate(torch.rand(1, 3, h // 4, w // 4), size=(h, w), mode="bilinear")
    fx, D, shift = K[0, 0, 0].item(), 10.0, 2
    tx = shift * D / fx
    src_r = torch.roll(tgt, shift, -1)  # source(u + shift) == target(u)
    T = transformation_from_parameters(torch.zeros(1, 1, 3), torch.tensor([[[tx, 0.0, 0.0]]]))
    loss_fn = Monodepth2Loss(h, w, frame_ids=(0, 1), automask=False)
    from donna_nas.tasks.depth.geometry import disp_to_depth

    def d_for(depth):
        return (1 / depth - 0.01) / (10 - 0.01)

    images = torch.stack([tgt, src_r], 1)
    losses = []
    for depth in (2.5, 10.0, 40.0):
        disps = [torch.full((1, 1, h // 2**s, w // 2**s), d_for(depth)) for s in range(4)]
        assert abs(disp_to_depth(disps[0], 0.1, 100)[1].mean().item() - depth) < 1e-3
        losses.append(loss_fn(disps, images, K, inv_K, {1: T})[0].item())
    assert losses[1] < losses[0] and losses[1] < losses[2]


def test_box3_matches_avg_pool_in_value_and_gradient():
    """The hand-written backward of the 3x3 box mean is the adjoint of its forward."""
    import torch.nn.functional as F

    from donna_nas.tasks.depth.losses import box3

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 5, 9, 13, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.rand(2, 5, 7, 11, generator=g, dtype=torch.float64)
    (box3(x) * w).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    ref = F.avg_pool2d(x, 3, 1)
    (ref * w).sum().backward()
    assert torch.allclose(box3(x.detach()), ref.detach(), atol=1e-12)
    assert torch.allclose(ours, x.grad, atol=1e-12)
    assert torch.autograd.gradcheck(box3, (x.detach().requires_grad_(),))


def test_photometric_error_analytic_gradient_matches_autograd_of_the_composite():
    """The training loss's photometric error has a hand-derived backward: its value must be the
    composite's bit for bit, and its gradient the composite's autograd gradient (float64 gradcheck
    too), including pixels where SSIM's clamp and L1's sign are at their kinks."""
    from donna_nas.tasks.depth.losses import _photometric_error_composite

    torch.manual_seed(0)
    y = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    x = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    x[0, :, :3] = y[0, :, :3]  # identical pixels: |t - p| and 1 - SSIM at 0
    x.requires_grad_()
    g = torch.randn(2, 1, 9, 11, dtype=torch.float64)
    fused = photometric_error(x, y)
    assert fused.grad_fn is not None and "PhotometricError" in type(fused.grad_fn).__name__
    composite = _photometric_error_composite(x, y, 0.85)
    assert torch.equal(fused, composite)
    (g_fused,) = torch.autograd.grad(fused, x, g)
    (g_comp,) = torch.autograd.grad(composite, x, g)
    assert torch.allclose(g_fused, g_comp, rtol=1e-10, atol=1e-12)
    xs = torch.rand(1, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    ys = torch.rand(1, 3, 5, 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: photometric_error(t, ys), (xs,))
    # float32, the training precision: agreement to rounding
    x32, y32 = x.detach().float().requires_grad_(), y.float()
    (a,) = torch.autograd.grad(photometric_error(x32, y32), x32, g.float())
    x32b = x32.detach().requires_grad_()
    (b,) = torch.autograd.grad(_photometric_error_composite(x32b, y32, 0.85), x32b, g.float())
    assert torch.allclose(a, b, atol=1e-6)


def test_photometric_error_falls_back_to_autograd_when_the_target_needs_a_gradient():
    x = torch.rand(1, 3, 6, 7, requires_grad=True)
    y = torch.rand(1, 3, 6, 7, requires_grad=True)
    out = photometric_error(x, y)
    assert "PhotometricError" not in type(out.grad_fn).__name__
    out.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_reflect_pad1_backward_is_the_adjoint_of_the_reflection_pad():
    from donna_nas.nn.pad import reflect_pad1

    torch.manual_seed(1)
    for shape in [(2, 3, 2, 2), (1, 2, 5, 7), (2, 4, 9, 3)]:
        x = torch.rand(shape, dtype=torch.float64, requires_grad=True)
        g = torch.randn(shape[0], shape[1], shape[2] + 2, shape[3] + 2, dtype=torch.float64)
        ours = reflect_pad1(x)
        assert torch.equal(ours, torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"))
        (g_ours,) = torch.autograd.grad(ours, x, g)
        (g_aten,) = torch.autograd.grad(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), x, g)
        assert torch.allclose(g_ours, g_aten, rtol=0, atol=1e-12)
    with torch.no_grad():  # inference takes ATen's op (export and tracing see a plain pad)
        assert reflect_pad1(torch.rand(1, 1, 3, 3)).grad_fn is None
