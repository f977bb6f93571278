"""The GEMM convolution used for training on tiny maps equals ATen's, and is used only where it applies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from donna_nas.nn import small_map_conv as smc
from donna_nas.nn.resnet import resnet18
from donna_nas.nn.small_map_conv import SMALL_MAP_PIXELS, SmallMapConv2d, conv2d_gemm


@pytest.mark.parametrize("shape,kernel,stride,padding", [
    ((3, 8, 2, 6), 3, 1, 1),  # a ResNet18 last-stage conv at 64x192
    ((2, 4, 4, 12), 3, 2, 1),  # its strided first conv
    ((2, 5, 5, 7), 3, 2, 0),  # odd sizes, no padding
    ((2, 6, 3, 3), 1, 1, 0),  # 1x1
])
def test_gemm_conv_matches_aten_values_and_gradients(shape, kernel, stride, padding):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, shape[1], kernel, kernel, dtype=torch.float64, requires_grad=True)
    g = torch.randn_like(F.conv2d(x, w, stride=stride, padding=padding))
    ref = F.conv2d(x, w, stride=stride, padding=padding)
    ref_gx, ref_gw = torch.autograd.grad(ref, (x, w), g)
    out = conv2d_gemm(x, w, stride, padding)
    gx, gw = torch.autograd.grad(out, (x, w), g)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(gx, ref_gx)
    torch.testing.assert_close(gw, ref_gw)
    assert torch.autograd.gradcheck(lambda a, b: conv2d_gemm(a, b, stride, padding), (x, w))


def test_gemm_conv_skips_the_input_gradient_it_is_not_asked_for():
    x = torch.randn(2, 4, 2, 6)
    w = torch.randn(4, 4, 3, 3, requires_grad=True)
    out = conv2d_gemm(x, w, 1, 1)
    out.sum().backward()
    assert x.grad is None and w.grad is not None
    torch.testing.assert_close(w.grad, torch.autograd.grad(F.conv2d(x, w, padding=1).sum(), w)[0])


def _count_gemm_calls(monkeypatch) -> list[int]:
    calls = [0]
    real = smc._GemmConv2d.apply

    def counting(*args):
        calls[0] += 1
        return real(*args)

    monkeypatch.setattr(smc._GemmConv2d, "apply", counting)
    return calls


def test_layer_takes_the_gemm_only_for_small_maps_while_training(monkeypatch):
    calls = _count_gemm_calls(monkeypatch)
    conv = SmallMapConv2d(4, 4, 3, padding=1, bias=False)
    small = torch.randn(2, 4, 2, SMALL_MAP_PIXELS // 2)
    conv(small)
    assert calls[0] == 1
    conv(torch.randn(2, 4, 4, SMALL_MAP_PIXELS))  # 48 pixels: ATen
    with torch.no_grad():  # inference
        conv(small)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast keeps ATen's bf16 kernels
        conv(small)
    SmallMapConv2d(4, 4, 3, padding=1, bias=True)(small)  # bias: ATen
    assert calls[0] == 1


def test_layer_keeps_conv2d_state_dict_and_values():
    torch.manual_seed(0)
    ours = SmallMapConv2d(8, 16, 3, stride=2, padding=1, bias=False)
    plain = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
    plain.load_state_dict(ours.state_dict())
    assert list(ours.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 8, 4, 12)
    torch.testing.assert_close(ours(x), plain(x), rtol=1e-5, atol=1e-5)


def test_resnet_trains_its_last_stage_through_the_gemm(monkeypatch):
    """At 64x192 the last stage's maps are 2x6: its four 3x3 convolutions go through the GEMM, the
    others through ATen; the loss and every gradient match an all-ATen copy of the network."""
    torch.manual_seed(0)
    net = resnet18()
    x = torch.rand(2, 3, 64, 192)
    calls = _count_gemm_calls(monkeypatch)
    loss = sum(f.square().mean() for f in net(x))
    loss.backward()
    assert calls[0] == 4
    grads = {k: p.grad.clone() for k, p in net.named_parameters()}
    net.zero_grad()
    monkeypatch.setattr(SmallMapConv2d, "_gemm_applies", lambda self, x: False)
    loss_ref = sum(f.square().mean() for f in net(x))
    loss_ref.backward()
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-6)
    for k, p in net.named_parameters():
        torch.testing.assert_close(grads[k], p.grad, rtol=1e-3, atol=1e-5, msg=k)
