"""Classification losses: label-smoothed cross-entropy plus knowledge distillation (Hinton et al.).

``kd_loss`` = T² · KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch. The T² factor keeps
the gradient scale of the soft targets independent of the temperature, so the KD weight means the
same thing at any T.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kd_loss", "classification_loss"]


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / t, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()
    return kl * t * t


def classification_loss(student_logits: torch.Tensor, labels: torch.Tensor,
                        teacher_logits: torch.Tensor | None = None, kd_weight: float = 0.5,
                        temperature: float = 4.0, label_smoothing: float = 0.1) -> torch.Tensor:
    """(1 − w) · CE(labels, smoothing) + w · KD; without teacher logits just the CE."""
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    if teacher_logits is None or kd_weight <= 0:
        return ce
    return (1.0 - kd_weight) * ce + kd_weight * kd_loss(student_logits, teacher_logits, temperature)
