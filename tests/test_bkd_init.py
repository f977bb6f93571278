"""BKD starts its out-adapter at the teacher tap's channel means: with a short budget and a
post-ReLU-like teacher tap (channel means well above zero), the block then learns the signal
instead of spending its steps walking a bias towards the means."""

import random

import torch

from donna_nas.distill.bkd import BKDModel
from donna_nas.distill.nsr import channel_variance, nsr
from donna_nas.space import load_space

SPACE = load_space("tiny")


def _short_bkd(init: bool, steps: int = 40) -> float:
    torch.manual_seed(0)
    x = torch.rand(32, 8, 8, 16)  # the previous teacher tap
    mix = torch.randn(12, 8, 1, 1)
    # a post-ReLU-like tap at stride 2: channel means of about 1-2, well above zero
    y = 2.0 * torch.relu(torch.nn.functional.conv2d(x[..., ::2, ::2] - 0.5, mix)) + 1.0
    model = BKDModel(SPACE, 1, "ir", "relu", 8, 12)
    if init:
        model.init_output_bias(y)
    choices = [c for c in SPACE.blocks[1].all_choices() if c.op == model.block.op and c.act == model.block.act]
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    rng, var = random.Random(0), channel_variance(y)
    model.train()
    for _ in range(steps):
        loss = nsr(model(x, rng.choice(choices), max(model.block.cin_options)), y, var)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def test_the_output_bias_starts_at_the_teacher_channel_means():
    y = torch.rand(4, 12, 4, 8, generator=torch.Generator().manual_seed(0)) + torch.arange(12.0).view(1, 12, 1, 1)
    model = BKDModel(SPACE, 1, "ir", "relu", 8, 12)
    model.init_output_bias(y)
    assert torch.allclose(model.adapt_out.bias, y.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)


def test_a_short_bkd_beats_the_channel_means_only_with_the_bias_start():
    # NSR 1 is what predicting the channel means scores: a block above it has learned nothing
    assert _short_bkd(init=True) < 0.9
    assert _short_bkd(init=False) > 1.5
