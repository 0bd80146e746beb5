"""Reconstruction loss Jrec (paper Eq. 11-12)."""

from __future__ import annotations

from torch import Tensor


def reconstruction_loss(y_rec: Tensor, y: Tensor) -> Tensor:
    """Jrec = (1/m) Σ_i (y_i − ȳ_i)², averaged over the batch (Eq. 12).

    Args:
        y_rec: (B, M) reconstructed labels ȳ = Φrec(f_y) (unbounded, one linear layer).
        y: (B, M) multi-hot labels.

    Returns:
        Scalar loss.
    """
    if y_rec.shape != y.shape:
        raise ValueError(f"y_rec: expected shape {tuple(y.shape)} (B, M) like y, got {tuple(y_rec.shape)}")
    return (y.to(y_rec.dtype) - y_rec).pow(2).mean()
