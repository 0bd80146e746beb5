"""What the four shallow baselines (ML-kNN, LMMO-kNN, MLSPL, C2AE) share: their input checks,
the ``ShallowEstimator`` base (fitted-state guard, thresholded prediction, state checks) and the
blocked k-nearest-neighbour search of the two kNN methods.

Legend: N training points, Q query points, F features, M labels, K neighbours.

Neighbour search (``nearest_neighbours``): exact Euclidean distances by
``retdm.distances.pairwise_euclidean_distance``, a block
of query rows at a time, then the K smallest per row. Ties are broken by the LOWER training
index, whatever ``torch.topk`` returns: the K-th smallest distance is found first, every
strictly smaller distance is kept, and the equal ones are taken in index order. The neighbours
come back sorted by (distance, index). During ``fit`` a training point is never its own
neighbour (excluded by index, so an exact duplicate elsewhere in the set still counts).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from retdm.distances import pairwise_euclidean_distance
from retdm.errors import ConfigError, DataError

_BLOCK_ELEMS = 1 << 24  # distances per cdist block (64 MiB of float32)


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def check_features(X: Any, name: str = "X", width: int | None = None) -> np.ndarray:
    """Validate a feature matrix: 2-D, float, finite, at least one row and column.

    Args:
        X: (N, F) numpy array or torch tensor of float16/32/64.
        name: the argument name used in messages.
        width: the F it must have (the F seen by ``fit``), or None for any.

    Returns:
        (N, F) float32 or float64 numpy array (float16 becomes float32).

    Raises:
        DataError (a ValueError): wrong shape, non-float dtype, NaN or inf.
    """
    arr = _numpy(X)
    want = f"(N, {width if width is not None else 'F'})"
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0 or (width is not None and arr.shape[1] != width):
        raise DataError(f"{name}: expected a 2-D float array of shape {want} with N >= 1, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{name}: expected a float32/float64 array, got dtype {arr.dtype}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    bad = ~np.isfinite(arr)  # (N, F)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{name}: expected finite values, got {arr[r, c]!r} at row {r}, column {c}")
    return arr


def check_labels(Y: Any, n: int, name: str = "Y", width: int | None = None) -> np.ndarray:
    """Validate a multi-hot label matrix with one row per feature row.

    Args:
        Y: (N, M) 0/1 values (bool, int or float; numpy array or torch tensor).
        n: the N it must have (rows of X).
        name: the argument name used in messages.
        width: the M it must have, or None for any M >= 1.

    Returns:
        (N, M) uint8 numpy array.

    Raises:
        DataError (a ValueError): wrong shape or a value other than 0/1.
    """
    arr = _numpy(Y)
    want = f"({n}, {width if width is not None else 'M'})"
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] == 0 or (width is not None and arr.shape[1] != width):
        raise DataError(f"{name}: expected a 0/1 matrix of shape {want} (N from X), got shape {arr.shape}")
    if arr.dtype != np.bool_:
        bad = (arr != 0) & (arr != 1)  # (N, M); NaN counts as bad too
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise DataError(f"{name}: expected only 0 and 1, got {arr[r, c].item()!r} at row {r}, column {c}")
    return arr.astype(np.uint8)


def check_int(value: Any, name: str, low: int) -> int:
    """An integer hyperparameter ``>= low``; ConfigError (a ValueError) otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def check_positive(value: Any, name: str) -> float:
    """A finite float hyperparameter ``> 0``; ConfigError (a ValueError) otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


def nearest_neighbours(
    queries: Tensor, keys: Tensor, k: int, *, exclude_self: bool = False, block_elems: int = _BLOCK_ELEMS
) -> tuple[Tensor, Tensor]:
    """The k nearest keys of each query by Euclidean distance, ties to the lower key index.

    Args:
        queries: (Q, F) float tensor.
        keys: (N, F) float tensor of the same dtype.
        k: neighbours per query, ``1 <= k <= N`` (``N - 1`` with ``exclude_self``).
        exclude_self: queries ARE the keys (Q == N); row i never returns key i.
        block_elems: query rows per block are ``max(1, block_elems // N)``.

    Returns:
        ``(index, distance)``: (Q, K) int64 key indices and (Q, K) distances, each row sorted
        by (distance, index).
    """
    n = keys.shape[0]
    if exclude_self and queries.shape[0] != n:
        raise ValueError(f"exclude_self needs queries == keys, got {queries.shape[0]} queries and {n} keys")
    if not 1 <= k <= n - int(exclude_self):
        limit = f"{n - 1} (keys - 1, self excluded)" if exclude_self else f"{n} (keys)"
        raise ValueError(f"expected 1 <= k <= {limit}, got k={k}")
    rows = max(1, block_elems // n)
    index, distance = [], []
    for start in range(0, queries.shape[0], rows):
        d = pairwise_euclidean_distance(queries[start:start + rows], keys)  # (B, N)
        b = d.shape[0]
        if exclude_self:
            d[torch.arange(b), torch.arange(start, start + b)] = float("inf")
        kth = d.topk(k, dim=1, largest=False, sorted=False).values.amax(dim=1, keepdim=True)  # (B, 1)
        strict = d < kth  # (B, N) all of these are in
        ties = d == kth  # (B, N) the first k - #strict of these, by index, are in
        room = k - strict.sum(dim=1, keepdim=True)  # (B, 1)
        take = strict | (ties & (ties.cumsum(dim=1) <= room))  # (B, N), exactly k per row
        cols = take.nonzero()[:, 1].view(b, k)  # (B, K) ascending index within a row
        dist = d.gather(1, cols)  # (B, K)
        dist, order = dist.sort(dim=1, stable=True)  # stable: equal distances keep index order
        index.append(cols.gather(1, order))
        distance.append(dist)
    return torch.cat(index), torch.cat(distance)  # (Q, K) each



class ShallowEstimator:
    """What the shallow estimators share: the fitted-state guard and thresholded prediction.

    A subclass sets ``self._fitted`` (False in ``__init__``, True after ``fit``/``from_state``)
    and defines ``predict_scores(X) -> (Q, M)`` in [0, 1].
    """

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(X, Y) or from_state(state) first")

    def predict(self, X: Any, threshold: float = 0.5) -> np.ndarray:
        """(Q, M) bool, ``predict_scores(X) >= threshold``."""
        return self.predict_scores(X) >= threshold


def check_state(state: Any, method: str, keys: tuple[str, ...]) -> None:
    """A ``state_dict`` of ``method`` holding ``keys``; ValueError naming what is wrong otherwise."""
    if not isinstance(state, dict) or state.get("method") != method:
        got = state.get("method") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"expected the state_dict of method {method!r}, got {got!r}")
    missing = [key for key in keys if key not in state]
    if missing:
        raise ValueError(f"state_dict of {method!r}: expected keys {list(keys)}, missing {missing}")
