"""The asymmetric loss (ASL) of Ridnik et al., "Asymmetric Loss For Multi-Label Classification",
ICCV 2021, Eq. 1-4: a baseline.

Legend: B batch, M labels.

Per label, with p = σ(logit) and the shifted probability p_m = max(p − m, 0):

    L = −y·L+ − (1 − y)·L−,   L+ = (1 − p)^γ+ · log(p),   L− = p_m^γ− · log(1 − p_m).

Semantics follow the official ``AsymmetricLoss`` (github.com/Alibaba-MIIL/ASL,
``src/loss_functions/losses.py``): both logs are clamped at ``eps`` (log(max(·, eps))), and the
official 1 − p_m is written ``(1 − p + clip).clamp(max=1)``, which is the same number.

Deviations from the official code:

* Reduction. The official loss is the negated sum over batch and labels. We return the mean over
  images of the per-image sum over labels, so it does not grow with the batch size: official =
  B × ours, a constant rescale that only shifts the learning rate.
* Focusing weights keep their gradient by default, as the paper's equations do (and as the
  official ``AsymmetricLoss`` in practice does: its ``torch.no_grad`` lines are commented out).
  ``detach_focusing=True`` gives the ``disable_torch_grad_focal_loss`` behaviour of
  ``AsymmetricLossOptimized``.
* A weight whose base is 0 (p_m = 0 for a discarded easy negative, or p = 1 for a saturated
  positive) gets a zero gradient. The official code gives NaN there when 0 < γ < 1 (∞ · 0);
  zero is the limit of the true gradient, since the log factor vanishes faster.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _focusing_weight(base: Tensor, gamma: float) -> Tensor:
    """base^γ for base ≥ 0, with 0^0 = 1 and a zero gradient where base = 0.

    Args:
        base: (B, M) non-negative, 1 − p or p_m.
        gamma: γ ≥ 0.

    Returns:
        (B, M) weights.
    """
    if gamma == 0:
        return torch.ones_like(base)
    positive = base > 0
    safe = torch.where(positive, base, torch.ones_like(base))  # keeps pow's gradient finite at 0
    return torch.where(positive, safe.pow(gamma), torch.zeros_like(base))


def asymmetric_loss(
    logits: Tensor,
    labels: Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    eps: float = 1e-8,
    detach_focusing: bool = False,
) -> Tensor:
    """ASL (Eq. 1-4): asymmetric focusing plus probability shifting of the negatives.

    Symbols: p = σ(``logits``), y = ``labels``, γ+ = ``gamma_pos``, γ− = ``gamma_neg``,
    m = ``clip`` (the probability margin of p_m = max(p − m, 0)). The defaults γ+ = 0, γ− = 4,
    m = 0.05 are the official MS-COCO training script's (``train.py``). With γ+ = γ− = 0 and
    m = 0 this is binary cross-entropy summed over labels and averaged over the batch.

    Args:
        logits: (B, M) pre-sigmoid scores.
        labels: (B, M) multi-hot labels.
        gamma_pos: γ+ ≥ 0, focusing of the positives.
        gamma_neg: γ− ≥ 0, focusing of the negatives.
        clip: m in [0, 1), the margin; 0 disables probability shifting.
        eps: lower clamp of both log arguments (> 0).
        detach_focusing: compute the weights (1 − p)^γ+ and p_m^γ− without gradient, as the
            official ``disable_torch_grad_focal_loss``; the default keeps it (the paper's form).

    Returns:
        Scalar loss: mean over the batch of the sum over labels (official value / B).
    """
    if logits.dim() != 2 or logits.shape != labels.shape:
        raise ValueError(
            f"logits: expected shape {tuple(labels.shape)} (B, M) like labels, got {tuple(logits.shape)}"
        )
    if gamma_pos < 0 or gamma_neg < 0:
        raise ValueError(f"gamma_pos, gamma_neg: expected ≥ 0, got {gamma_pos}, {gamma_neg}")
    if not 0 <= clip < 1:
        raise ValueError(f"clip: expected a margin in [0, 1), got {clip}")
    if eps <= 0:
        raise ValueError(f"eps: expected > 0, got {eps}")
    y = labels.to(logits.dtype)  # (B, M)
    p = torch.sigmoid(logits)  # (B, M)
    p_m = (p - clip).clamp(min=0)  # (B, M) probability shifting: hard-thresholds easy negatives
    log_pos = p.clamp(min=eps).log()  # (B, M) log(p)
    log_neg = (1 - p_m).clamp(min=eps).log()  # (B, M) log(1 − p_m)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_focusing):
        w_pos = _focusing_weight(1 - p, gamma_pos)  # (B, M) (1 − p)^γ+
        w_neg = _focusing_weight(p_m, gamma_neg)  # (B, M) p_m^γ−
    loss = -(y * w_pos * log_pos + (1 - y) * w_neg * log_neg)  # (B, M) −y·L+ − (1 − y)·L−
    return loss.sum(dim=1).mean()
