"""The one place distances between embeddings are computed.

Legend: B batch, K neighbours, D embedding width.
"""

from __future__ import annotations

import torch
from torch import Tensor


def euclidean_distance(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean (not squared) distance along the last axis, broadcasting the leading axes.

    The paper's d(·,·) (Eq. 4). ``torch.linalg.vector_norm`` has a zero subgradient at a zero
    difference, so identical embeddings give a finite gradient rather than NaN.

    Args:
        a: (..., D) embeddings.
        b: (..., D) embeddings, broadcastable against ``a``.

    Returns:
        (...) distances.
    """
    return torch.linalg.vector_norm(a - b, ord=2, dim=-1)


def pairwise_euclidean_distance(a: Tensor, b: Tensor) -> Tensor:
    """All Euclidean distances between the rows of ``a`` and of ``b`` (``torch.cdist``).

    For all-pairs searches (kNN baselines): far less memory and time than broadcasting
    :func:`euclidean_distance` over an (N, Q, D) difference.

    Args:
        a: (N, D) rows.
        b: (Q, D) rows.

    Returns:
        (N, Q) distances.
    """
    return torch.cdist(a, b)
