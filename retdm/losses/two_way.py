"""The two-way distance metric loss of RETDM (paper Eq. 4-8, DESIGN.md §1).

Legend: B batch, K neighbours, D embedding width.

Both ways share one form: a softmax over negated Euclidean distances whose target is the
positive pair, gated to zero when the positive is already strictly closer than every
neighbour. The gate is a constant mask (no gradient flows through it). Masked neighbours (a
label set with fewer than K distinct neighbours) take part in neither the softmax nor the gate;
a row with no neighbour at all contributes 0 and stays in the autograd graph.
"""

from __future__ import annotations

import torch
from torch import Tensor

from retdm.distances import euclidean_distance


def gated_neighbour_loss(d_pos: Tensor, d_nbr: Tensor, nbr_mask: Tensor) -> Tensor:
    """Per-row gated softmax loss over negated distances (the shared form of Eq. 5-7).

    L = −log( exp(−d_pos) / (exp(−d_pos) + Σ_j exp(−d_nbr_j)) ), kept where
    d_pos ≥ min_j d_nbr_j (the paper's "∃ neighbour at least as close"), else 0.

    Args:
        d_pos: (B,) distance of the positive pair.
        d_nbr: (B, K) distances to the neighbours.
        nbr_mask: (B, K) bool, True where the neighbour exists.

    Returns:
        (B,) per-row loss.
    """
    logits = torch.cat([-d_pos[:, None], -d_nbr], dim=1)  # (B, 1+K)
    valid = torch.cat([torch.ones_like(nbr_mask[:, :1]), nbr_mask], dim=1)  # (B, 1+K)
    logits = logits.masked_fill(~valid, float("-inf"))
    nll = torch.logsumexp(logits, dim=1) - logits[:, 0]  # (B,) −log softmax of the positive
    with torch.no_grad():
        closest_nbr = d_nbr.masked_fill(~nbr_mask, float("inf")).amin(dim=1)  # (B,)
        gate = (d_pos >= closest_nbr).to(nll.dtype)  # (B,) constant mask
    return nll * gate


def image_to_labels_loss(f_img: Tensor, f_lbl: Tensor, f_nbr_lbl: Tensor, nbr_mask: Tensor) -> Tensor:
    """Way 1, J1 (Eq. 4-6): the image is closer to its own label set than to the neighbours'.

    Args:
        f_img: (B, D) image embeddings f_I.
        f_lbl: (B, D) embeddings f_y of each image's label set.
        f_nbr_lbl: (B, K, D) embeddings f_{y_j} of the K nearest label sets y(Θ).
        nbr_mask: (B, K) bool, True where the neighbour exists.

    Returns:
        (B,) J1 per image.
    """
    d_pos = euclidean_distance(f_img, f_lbl)  # (B,)
    d_nbr = euclidean_distance(f_img[:, None, :], f_nbr_lbl)  # (B, K)
    return gated_neighbour_loss(d_pos, d_nbr, nbr_mask)


def labels_to_image_loss(f_lbl: Tensor, f_img: Tensor, f_nbr_img: Tensor, nbr_mask: Tensor) -> Tensor:
    """Way 2, J2 (Eq. 7): the label set is closer to its image than to images of the neighbours.

    sim(y, I) = −d(f_y, f_I): the paper prints it without the minus, a typo (DESIGN.md §1).

    Args:
        f_lbl: (B, D) label-set embeddings f_y.
        f_img: (B, D) embeddings f_I of the images carrying them.
        f_nbr_img: (B, K, D) embeddings f_{I_j} of images whose label set is the j-th neighbour of y.
        nbr_mask: (B, K) bool, True where the neighbour exists.

    Returns:
        (B,) J2 per label set.
    """
    d_pos = euclidean_distance(f_lbl, f_img)  # (B,)
    d_nbr = euclidean_distance(f_lbl[:, None, :], f_nbr_img)  # (B, K)
    return gated_neighbour_loss(d_pos, d_nbr, nbr_mask)


def two_way_metric_loss(
    f_img: Tensor,
    f_lbl: Tensor,
    f_nbr_lbl: Tensor,
    f_nbr_img: Tensor | None,
    nbr_mask: Tensor | None = None,
    lam: float = 1.0,
    two_way: bool = True,
) -> Tensor:
    """Jmetric = mean over the batch of J1 + λ·J2 (Eq. 8).

    Args:
        f_img: (B, D) image embeddings f_I.
        f_lbl: (B, D) label-set embeddings f_y.
        f_nbr_lbl: (B, K, D) neighbour label-set embeddings.
        f_nbr_img: (B, K, D) embeddings of images carrying the neighbour label sets; may be
            ``None`` when ``two_way`` is False.
        nbr_mask: (B, K) bool, True where the neighbour exists; ``None`` means all exist.
        lam: λ, the weight of way 2.
        two_way: False gives the paper's "RETDM (one-way)", J = J1.

    Returns:
        Scalar loss.
    """
    batch, k, dim = f_nbr_lbl.shape
    expect = {"f_img": (batch, dim), "f_lbl": (batch, dim)}
    if two_way:
        if f_nbr_img is None:
            raise ValueError("two_way=True needs f_nbr_img of shape (B, K, D)")
        expect["f_nbr_img"] = (batch, k, dim)
    if nbr_mask is None:
        nbr_mask = torch.ones(batch, k, dtype=torch.bool, device=f_img.device)
    expect["nbr_mask"] = (batch, k)
    given = {"f_img": f_img, "f_lbl": f_lbl, "f_nbr_img": f_nbr_img, "nbr_mask": nbr_mask}
    for name, shape in expect.items():
        if tuple(given[name].shape) != shape:
            raise ValueError(f"{name}: expected shape {shape} (B, K, D from f_nbr_lbl), got {tuple(given[name].shape)}")
    if nbr_mask.dtype != torch.bool:
        raise ValueError(f"nbr_mask: expected a bool tensor, got {nbr_mask.dtype}")
    loss = image_to_labels_loss(f_img, f_lbl, f_nbr_lbl, nbr_mask)  # (B,)
    if two_way:
        loss = loss + lam * labels_to_image_loss(f_lbl, f_img, f_nbr_img, nbr_mask)  # (B,)
    return loss.mean()
