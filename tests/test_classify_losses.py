"""Classification losses and metrics against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from donna_nas.tasks.classify.evaluate import confusion_matrix, evaluate_logits, topk_accuracy
from donna_nas.tasks.classify.losses import classification_loss, kd_loss
from donna_nas.tasks.classify.train import cosine_lr

LN3 = math.log(3.0)


def test_kd_loss_hand_computed_at_t1():
    # teacher softmax [0.75, 0.25], student softmax [0.5, 0.5]
    # KL = 0.75 ln(0.75/0.5) + 0.25 ln(0.25/0.5) = 0.130812
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[LN3, 0.0]])
    assert kd_loss(s, t, 1.0).item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-6)
    assert kd_loss(s, t, 1.0).item() == pytest.approx(0.130812, abs=1e-6)


def test_kd_loss_scales_by_t_squared_and_averages_over_batch():
    # at T=2 the teacher logits [2 ln3, 0] give the same softmax as above: loss = 4 · 0.130812
    s = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    t = torch.tensor([[2 * LN3, 0.0], [5.0, 5.0]])  # second row: identical distributions, KL 0
    assert kd_loss(s, t, 2.0).item() == pytest.approx(4 * 0.130812 / 2, abs=1e-5)


def test_kd_loss_zero_iff_same_distribution_and_no_teacher_gradient():
    s = torch.randn(5, 7, requires_grad=True)
    t = (s.detach() + 3.0).requires_grad_(True)  # a shift leaves the softmax unchanged
    loss = kd_loss(s, t, 3.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    kd_loss(s, torch.randn(5, 7, requires_grad=True), 3.0).backward()
    assert s.grad is not None and float(s.grad.abs().sum()) > 0


def test_classification_loss_combines_smoothed_ce_and_kd():
    s = torch.tensor([[LN3, 0.0]])  # softmax [0.75, 0.25]
    y = torch.tensor([0])
    # smoothing 0.2 over 2 classes → target [0.9, 0.1]; CE = 0.9 ln(4/3) + 0.1 ln 4
    ce = 0.9 * math.log(4 / 3) + 0.1 * math.log(4)
    assert classification_loss(s, y, None, 0.5, 1.0, 0.2).item() == pytest.approx(ce, abs=1e-6)
    t = torch.tensor([[0.0, 0.0]])  # teacher [0.5, 0.5]: KL(t‖s) = 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25)
    kl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(2.0)
    got = classification_loss(s, y, t, 0.25, 1.0, 0.2).item()
    assert got == pytest.approx(0.75 * ce + 0.25 * kl, abs=1e-6)


def test_topk_and_confusion_matrix():
    logits = torch.tensor([[3.0, 2.0, 1.0], [0.0, 1.0, 2.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0]])
    labels = torch.tensor([0, 1, 2, 0])
    assert topk_accuracy(logits, labels, 1) == pytest.approx(0.25)  # only row 0
    assert topk_accuracy(logits, labels, 2) == pytest.approx(0.75)  # rows 0, 1, 2
    assert topk_accuracy(logits, labels, 5) == pytest.approx(1.0)  # k capped at 3 classes
    cm = confusion_matrix(logits.argmax(1).numpy(), labels.numpy(), 3)
    assert cm.tolist() == [[1, 0, 1], [0, 0, 1], [0, 1, 0]]
    m, cm2 = evaluate_logits(logits, labels)
    assert m["top1"] == pytest.approx(np.trace(cm2) / cm2.sum())


def test_cosine_schedule_warms_up_then_decays_to_zero():
    lrs = [cosine_lr(s, 100, 1.0, 10) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[55] == pytest.approx(0.5) and lrs[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
