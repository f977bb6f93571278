import pytest
import torch

from donna_nas.errors import UserError
from donna_nas.nn.resnet import load_torchvision_state_dict, resnet18, resnet50


def _params(m):
    return sum(p.numel() for n, p in m.named_parameters() if not n.startswith("fc."))


def test_param_counts_match_torchvision():
    assert _params(resnet18()) == 11_176_512
    assert _params(resnet50()) == 23_508_032
    # with the ImageNet head: torchvision's published totals
    assert sum(p.numel() for p in resnet18(with_fc=True).parameters()) == 11_689_512
    assert sum(p.numel() for p in resnet50(with_fc=True).parameters()) == 25_557_032


@pytest.mark.parametrize("ctor,chans", [(resnet18, [64, 64, 128, 256, 512]), (resnet50, [64, 256, 512, 1024, 2048])])
def test_tap_shapes_192x640(ctor, chans):
    m = ctor().eval()
    assert m.channels == chans
    with torch.no_grad():
        taps = m(torch.rand(1, 3, 192, 640))
    assert [tuple(t.shape) for t in taps] == [
        (1, c, 192 // s, 640 // s) for c, s in zip(chans, [2, 4, 8, 16, 32])
    ]


def test_torchvision_file_roundtrip_and_fc_ignored(tmp_path):
    src = resnet18(with_fc=True)
    for p in src.parameters():
        torch.nn.init.normal_(p)
    sd = src.state_dict()
    path = tmp_path / "r18.pth"
    torch.save(sd, path)
    dst = resnet18()
    load_torchvision_state_dict(dst, path)
    for k, v in dst.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_generated_torchvision_format_file_from_plain_state_dict(tmp_path):
    src = resnet18()
    sd = dict(src.state_dict())
    sd["fc.weight"] = torch.zeros(1000, 512)
    sd["fc.bias"] = torch.zeros(1000)
    torch.save(sd, tmp_path / "w.pth")
    dst = resnet18()
    load_torchvision_state_dict(dst, tmp_path / "w.pth")
    x = torch.rand(1, 3, 64, 64)
    src.eval(), dst.eval()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(src(x), dst(x)))


def test_pose_encoder_conv1_repeated_and_divided(tmp_path):
    src = resnet18()
    torch.save(src.state_dict(), tmp_path / "w.pth")
    pose = resnet18(num_input_images=2)
    load_torchvision_state_dict(pose, tmp_path / "w.pth")
    w = src.conv1.weight
    assert pose.conv1.weight.shape == (64, 6, 7, 7)
    assert torch.allclose(pose.conv1.weight, torch.cat([w, w], 1) / 2)
    # two identical frames reproduce the single-frame response; compared in float64 so that
    # the check is about the weights, not about float32 summation order on a given CPU
    src.eval(), pose.eval()
    src.double(), pose.double()
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(src(x)[-1], pose(torch.cat([x, x], 1))[-1], rtol=0, atol=1e-9)


def test_mismatched_file_raises_user_error(tmp_path):
    torch.save(resnet50().state_dict(), tmp_path / "r50.pth")
    with pytest.raises(UserError) as ei:
        load_torchvision_state_dict(resnet18(), tmp_path / "r50.pth")
    msg = str(ei.value)
    assert "r50.pth" in msg and "unexpected keys" in msg and "in all" in msg
    torch.save({"foo": torch.zeros(1)}, tmp_path / "junk.pth")
    with pytest.raises(UserError, match="missing keys"):
        load_torchvision_state_dict(resnet18(), tmp_path / "junk.pth")
    with pytest.raises(UserError, match="not found"):
        load_torchvision_state_dict(resnet18(), tmp_path / "nope.pth")
