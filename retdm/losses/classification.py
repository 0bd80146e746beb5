"""Classification loss Jcls (paper Eq. 9-10)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def classification_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Binary cross-entropy of σ(logits) against the multi-hot labels (Eq. 10).

    Eq. 10 sums over the m labels; we take the mean over labels and batch, as PyTorch's BCE
    loss does. The paper's lr of 0.1 only makes sense at that scale (a sum over MS-COCO's 80
    labels would take 80× larger steps), and the constant 1/m is absorbed by α and β.

    Args:
        logits: (B, M) pre-sigmoid scores of Φcls.
        y: (B, M) multi-hot labels.

    Returns:
        Scalar loss.
    """
    if logits.shape != y.shape:
        raise ValueError(f"logits: expected shape {tuple(y.shape)} (B, M) like y, got {tuple(logits.shape)}")
    return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
