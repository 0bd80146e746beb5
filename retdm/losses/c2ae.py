"""The losses of C2AE (Yeh, Wu, Ko, Wang, "Learning Deep Latent Spaces for Multi-Label
Classification", AAAI 2017): a baseline.

Legend: B batch, M labels, D latent width.

C2AE embeds features with Fx and labels with Fe into one latent space and decodes labels with
Fd. It minimises Φ(Fx, Fe) + α·Γ(Fe, Fd), where Φ = ||Fx(X) − Fe(Y)||²_F subject to
Fx(X)Fx(X)ᵀ = Fe(Y)Fe(Y)ᵀ = I aligns the two embeddings (the deep-CCA part) and Γ = Σ_i E_i is
a label-correlation-aware ranking loss on the decoder outputs.

C2AE has no official PyTorch code (the authors released MATLAB, github.com/chihkuanyeh/C2AE);
this is our reimplementation. Deviations:

* Reduction. Φ and Γ are sums over the instances in the paper; we take means over the batch,
  the same 1/B for both terms, so α keeps its meaning.
* Constraints. The hard constraints become the penalty ``orthogonality_penalty``
  ||zᵀz/B − I||²_F on each embedding, weighted by ``ortho_weight``. zᵀz/B is the D×D second-
  moment matrix, the batch version of "orthonormal latent dimensions", and does not grow with
  B. The authors' code uses λ = 0.5 on ||zᵀz − I||²_F (no 1/B) with a summed Φ.
* Ranking loss. We use the paper's exp(s_n − s_p) on the decoder outputs ``scores`` as given.
  The authors' code applies it to sigmoid outputs and scales the difference by a fixed 5,
  exp(−5(s_p − s_n)); pass ``5 * torch.sigmoid(out)`` to reproduce that. exp is unbounded:
  float32 overflows once some s_n − s_p passes about 88.
* α. The authors' demo sets alpha = 2.0 but divides the decoder gradient by it (Γ weighted by
  1/2); our ``alpha`` multiplies Γ as the paper's objective writes it, default 1.0.
* The decoder's loss must reach Fe but not Fx (the paper's Γ(Fe, Fd); the authors' code
  propagates it only into Fe): pass ``scores`` = Fd(Fe(Y)) at training time, not Fd(Fx(X)).
"""

from __future__ import annotations

import torch
from torch import Tensor

from retdm.distances import euclidean_distance


def _check_pair(fx: Tensor, fe: Tensor) -> None:
    if fx.dim() != 2 or fx.shape != fe.shape:
        raise ValueError(f"fx: expected shape {tuple(fe.shape)} (B, D) like fe, got {tuple(fx.shape)}")


def _check_scores(scores: Tensor, labels: Tensor) -> None:
    if scores.dim() != 2 or scores.shape != labels.shape:
        raise ValueError(
            f"scores: expected shape {tuple(labels.shape)} (B, M) like labels, got {tuple(scores.shape)}"
        )


def latent_alignment_loss(fx: Tensor, fe: Tensor) -> Tensor:
    """Φ = ||Fx(X) − Fe(Y)||²_F (Eq. 2, the objective without its constraints), per instance.

    Args:
        fx: (B, D) feature embeddings Fx(x_i).
        fe: (B, D) label embeddings Fe(y_i).

    Returns:
        Scalar: mean over the batch of ||Fx(x_i) − Fe(y_i)||² (Φ / B).
    """
    _check_pair(fx, fe)
    return euclidean_distance(fx, fe).pow(2).mean()  # (B,) → scalar


def orthogonality_penalty(z: Tensor) -> Tensor:
    """||zᵀz/B − I||²_F: the penalty form of Eq. 2's constraint z zᵀ = I on one embedding.

    Its weight is ``ortho_weight`` of ``c2ae_loss``.

    Args:
        z: (B, D) a batch of embeddings, Fx(X) or Fe(Y).

    Returns:
        Scalar penalty; 0 exactly when the latent dimensions are orthonormal over the batch.
    """
    if z.dim() != 2:
        raise ValueError(f"z: expected shape (B, D), got {tuple(z.shape)}")
    batch, dim = z.shape
    gram = z.T @ z / batch  # (D, D)
    eye = torch.eye(dim, dtype=z.dtype, device=z.device)  # (D, D)
    return (gram - eye).pow(2).sum()


def correlation_ranking_loss(scores: Tensor, labels: Tensor) -> Tensor:
    """Γ / B with E_i = 1/(|Y_i⁺||Y_i⁻|) Σ_{(p,n) ∈ Y_i⁺×Y_i⁻} exp(F_d(·)_n − F_d(·)_p) (Eq. 5-6).

    Symbols: F_d(·) = ``scores`` (decoder outputs), Y_i⁺ / Y_i⁻ = positive / negative labels of
    row i in ``labels``. A row with no positive or no negative label has no pair and contributes
    0; it stays in the autograd graph.

    Args:
        scores: (B, M) decoder outputs.
        labels: (B, M) multi-hot labels.

    Returns:
        Scalar: mean over the batch of E_i.
    """
    _check_scores(scores, labels)
    pos = labels.bool()  # (B, M)
    pair = pos[:, :, None] & ~pos[:, None, :]  # (B, M, M) [b, p, n]: p positive, n negative
    diff = scores[:, None, :] - scores[:, :, None]  # (B, M, M) [b, p, n] = s_n − s_p
    # −inf (not a 0 mask after exp): an overflowing exp of a non-pair would give inf · 0 = NaN.
    terms = diff.masked_fill(~pair, float("-inf")).exp()  # (B, M, M)
    num_pairs = pair.sum(dim=(1, 2)).clamp(min=1).to(scores.dtype)  # (B,) |Y⁺||Y⁻|, 1 when empty
    per_row = terms.sum(dim=(1, 2)) / num_pairs  # (B,) E_i
    return per_row.mean()


def c2ae_loss(
    fx: Tensor,
    fe: Tensor,
    scores: Tensor,
    labels: Tensor,
    alpha: float = 1.0,
    ortho_weight: float = 0.5,
) -> Tensor:
    """C2AE's objective Φ + α·Γ (Eq. 1), per instance, with the constraints as penalties.

    L = latent_alignment_loss(fx, fe) + α · correlation_ranking_loss(scores, labels)
        + ortho_weight · (orthogonality_penalty(fx) + orthogonality_penalty(fe)).

    Args:
        fx: (B, D) feature embeddings Fx(X).
        fe: (B, D) label embeddings Fe(Y).
        scores: (B, M) decoder outputs Fd(Fe(Y)).
        labels: (B, M) multi-hot labels Y.
        alpha: α, the weight of Γ (Eq. 1).
        ortho_weight: weight of the penalties standing for Eq. 2's constraints (the authors'
            code uses λ = 0.5 on an unnormalised Gram matrix); 0 drops them.

    Returns:
        Scalar loss.
    """
    _check_pair(fx, fe)
    _check_scores(scores, labels)
    if scores.shape[0] != fx.shape[0]:
        raise ValueError(f"scores: expected batch {fx.shape[0]} like fx, got {scores.shape[0]}")
    loss = latent_alignment_loss(fx, fe) + alpha * correlation_ranking_loss(scores, labels)
    if ortho_weight:
        loss = loss + ortho_weight * (orthogonality_penalty(fx) + orthogonality_penalty(fe))
    return loss
