"""The stitched decoder: the BKD adapters fold into the teacher decoder exactly, so the student's
encoder + stitched decoder computes teacher-decoder(adapters(student taps)) to float precision."""

import pytest
import torch

from donna_nas.distill.assemble import assemble
from donna_nas.distill.bkd import load_bkd_model
from donna_nas.errors import UserError
from donna_nas.space import load_space
from donna_nas.tasks.depth.networks import DepthDecoder
from donna_nas.tasks.depth.stitch import fold_input_adapter, stitched_decoder

SPACE = load_space("tiny")


def test_folding_an_affine_adapter_into_a_reflection_padded_conv_is_exact():
    from donna_nas.tasks.depth.networks import Conv3x3

    torch.manual_seed(0)
    conv = Conv3x3(5 + 7, 4)  # 5 channels of something else, then 7 adapted ones
    a, b = torch.randn(7, 3), torch.randn(7)
    x, s = torch.randn(2, 5, 6, 9), torch.randn(2, 3, 6, 9)
    adapted = torch.einsum("ts,nshw->nthw", a, s) + b.view(1, 7, 1, 1)
    want = conv(torch.cat([x, adapted], 1))
    conv.conv = fold_input_adapter(conv.conv, 5, a, b)
    assert torch.allclose(conv(torch.cat([x, s], 1)), want, atol=1e-5)


@pytest.fixture(scope="module")
def run(tiny_supernet):
    return tiny_supernet


def test_the_stitched_decoder_reads_student_taps_as_the_teacher_decoder_reads_adapted_ones(run):
    torch.manual_seed(1)
    arch = SPACE.sample(__import__("random").Random(3))
    teacher_dec = DepthDecoder([64, 64, 128, 256, 512]).eval()
    dec = stitched_decoder(run, arch, teacher_dec).eval()
    enc = assemble(run, arch).eval()
    x = torch.rand(2, 3, 32, 64)
    with torch.no_grad():
        feats = enc(x)
        adapted = [load_bkd_model(run, SPACE, i, c.op, c.act).head(f) for i, (c, f) in
                   enumerate(zip(arch.block_choices, feats))]
        want, got = teacher_dec(adapted), dec(feats)
    assert dec.enc_channels == [c.out_channels for c in arch.block_choices]
    for w, g in zip(want, got):
        assert torch.allclose(w, g, atol=1e-5)
    # and it is not the teacher decoder fed the raw taps by accident: the adapters matter
    assert not torch.allclose(want[0], DepthDecoder(dec.enc_channels).eval()(feats)[0], atol=1e-3)


def test_a_decoder_for_other_tap_widths_is_refused(run):
    arch = SPACE.sample(__import__("random").Random(0))
    with pytest.raises(UserError, match="distilled to taps of widths"):
        stitched_decoder(run, arch, DepthDecoder([8, 8, 16, 32, 64]))
