"""ML-kNN (Zhang & Zhou, "ML-KNN: A lazy learning approach to multi-label learning", Pattern
Recognition 40(7):2038-2048, 2007), on fixed feature vectors.

Legend: N training points, Q query points, F features, M labels, K neighbours.

Deviations from the paper: none in the method (k = 10, smoothing s = 1, maximum a posteriori
per label, as Zhang & Zhou). What the paper leaves open is fixed here: the neighbour tie-break
(``retdm.shallow.base.nearest_neighbours``: equal distances go to the lower training index), and
the posterior computed in float64. In this project it runs on the BCE backbone's image
embeddings rather than on hand-made feature vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from retdm.errors import DataError
from retdm.shallow.base import (
    ShallowEstimator,
    check_features,
    check_int,
    check_labels,
    check_positive,
    check_state,
    nearest_neighbours,
)


def neighbour_label_counts(Y: np.ndarray, index: np.ndarray) -> np.ndarray:
    """C_x(l) = Σ_{a ∈ N(x)} y_a(l): how many of x's K neighbours carry label l (paper §3).

    Args:
        Y: (N, M) uint8 training labels y_a.
        index: (Q, K) int64 neighbour indices N(x) into Y.

    Returns:
        (Q, M) int64 counts in 0..K.
    """
    return Y[index].sum(axis=1, dtype=np.int64)  # (Q, K, M) -> (Q, M)


def label_priors(Y: np.ndarray, s: float) -> np.ndarray:
    """P(H1_l) = (s + Σ_i y_i(l)) / (2s + n): the smoothed prior that label l holds (Fig. 1).

    Args:
        Y: (N, M) uint8 training labels y_i; n = N.
        s: smoothing s.

    Returns:
        (M,) float64 P(H1_l); P(H0_l) = 1 − P(H1_l).
    """
    return (s + Y.sum(axis=0, dtype=np.float64)) / (2 * s + Y.shape[0])


def neighbour_count_likelihoods(Y: np.ndarray, counts: np.ndarray, k: int, s: float) -> tuple[np.ndarray, np.ndarray]:
    """P(E_j^l | H_b^l): how likely a point with (b=1) / without (b=0) label l has j of its K
    neighbours with label l (Fig. 1).

    c[j] (c'[j]) = #training points with (without) label l whose C(l) = j;
    P(E_j|H1) = (s + c[j]) / (s(K+1) + Σ_p c[p]), P(E_j|H0) = (s + c'[j]) / (s(K+1) + Σ_p c'[p]).

    Args:
        Y: (N, M) uint8 training labels.
        counts: (N, M) int64 C_{x_i}(l) from the training points' own neighbours (self excluded).
        k: K.
        s: smoothing s.

    Returns:
        ``(like1, like0)``: (K+1, M) float64 each, row j = P(E_j | H1) and P(E_j | H0).
    """
    m = Y.shape[1]
    cell = (counts * m + np.arange(m)).ravel()  # (N*M,) flat index of (j, l)
    has = Y.ravel().astype(bool)  # (N*M,)
    c1 = np.bincount(cell[has], minlength=(k + 1) * m).reshape(k + 1, m)  # (K+1, M) c[j]
    c0 = np.bincount(cell[~has], minlength=(k + 1) * m).reshape(k + 1, m)  # (K+1, M) c'[j]
    like1 = (s + c1) / (s * (k + 1) + c1.sum(axis=0))  # (K+1, M)
    like0 = (s + c0) / (s * (k + 1) + c0.sum(axis=0))  # (K+1, M)
    return like1, like0


def posterior(prior: np.ndarray, like1: np.ndarray, like0: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """r_t(l) = P(H1|E_C) = P(H1) P(E_C|H1) / (P(H1) P(E_C|H1) + P(H0) P(E_C|H0)), C = C_t(l)
    (Fig. 1, the ranking step; the MAP decision y_t(l) = 1 is r_t(l) >= 0.5).

    Args:
        prior: (M,) P(H1_l).
        like1: (K+1, M) P(E_j | H1).
        like0: (K+1, M) P(E_j | H0).
        counts: (Q, M) int64 C_t(l) of the queries.

    Returns:
        (Q, M) float64 posteriors in [0, 1].
    """
    cols = np.arange(counts.shape[1])  # (M,)
    on = prior * like1[counts, cols]  # (Q, M) P(H1) P(E_C | H1)
    off = (1.0 - prior) * like0[counts, cols]  # (Q, M) P(H0) P(E_C | H0)
    return on / (on + off)  # s > 0 keeps both terms > 0


class MLkNN(ShallowEstimator):
    """ML-kNN: per label, a MAP decision from how many of the K nearest training points carry it.

    Args:
        k: K, the neighbours (paper default 10).
        s: smoothing s > 0 (paper default 1).
    """

    method = "mlknn"

    def __init__(self, *, k: int = 10, s: float = 1.0) -> None:
        self.k = check_int(k, "k", 1)
        self.s = check_positive(s, "s")
        self._fitted = False

    def fit(self, X: Any, Y: Any, *, seed: int = 0) -> MLkNN:
        """Learn the priors and count likelihoods (nothing is random; ``seed`` is for a common API).

        Args:
            X: (N, F) float features, N > k.
            Y: (N, M) 0/1 labels.
            seed: unused (ML-kNN is deterministic).

        Returns:
            self.
        """
        x = check_features(X, "X")
        y = check_labels(Y, x.shape[0], "Y")
        if x.shape[0] <= self.k:
            raise DataError(f"X: expected more than k={self.k} rows (a point is not its own neighbour), "
                            f"got {x.shape[0]}")
        self.x_train = torch.tensor(x)  # (N, F)
        self.y_train = y  # (N, M) uint8
        index, _ = nearest_neighbours(self.x_train, self.x_train, self.k, exclude_self=True)  # (N, K)
        counts = neighbour_label_counts(y, index.numpy())  # (N, M)
        self.prior = label_priors(y, self.s)  # (M,)
        self.like1, self.like0 = neighbour_count_likelihoods(y, counts, self.k, self.s)  # (K+1, M) each
        self._fitted = True
        return self

    def predict_scores(self, X: Any, *, dtype: Any = np.float32) -> np.ndarray:
        """Posterior P(H1_l | E_{C_t(l)}) of every label for every query.

        Args:
            X: (Q, F) float features, F as in ``fit``.
            dtype: of the result; the posterior is computed in float64 (pass np.float64 to keep it).

        Returns:
            (Q, M) ``dtype`` (float32 by default) in [0, 1].
        """
        self._check_fitted()
        x = check_features(X, "X", width=self.x_train.shape[1])
        q = torch.tensor(x, dtype=self.x_train.dtype)  # (Q, F)
        index, _ = nearest_neighbours(q, self.x_train, self.k)  # (Q, K)
        counts = neighbour_label_counts(self.y_train, index.numpy())  # (Q, M)
        return posterior(self.prior, self.like1, self.like0, counts).astype(dtype)

    def predict(self, X: Any) -> np.ndarray:
        """The MAP decision y_t(l): (Q, M) bool, ``predict_scores(X) >= 0.5``."""
        return self.predict_scores(X, dtype=np.float64) >= 0.5

    def state_dict(self) -> dict[str, Any]:
        """Everything ``from_state`` needs, as tensors and Python scalars (``torch.save``-able)."""
        self._check_fitted()
        return {
            "method": self.method, "k": self.k, "s": self.s,
            "x_train": self.x_train.clone(), "y_train": torch.from_numpy(self.y_train.copy()),
            "prior": torch.from_numpy(self.prior.copy()),
            "like1": torch.from_numpy(self.like1.copy()), "like0": torch.from_numpy(self.like0.copy()),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MLkNN:
        """Rebuild a fitted model from ``state_dict()``.

        Raises:
            ValueError: the state is of another method or misses keys.
        """
        check_state(state, cls.method, ("k", "s", "x_train", "y_train", "prior", "like1", "like0"))
        model = cls(k=state["k"], s=state["s"])
        model.x_train = state["x_train"].clone()
        model.y_train = state["y_train"].numpy().astype(np.uint8)
        model.prior = state["prior"].numpy().astype(np.float64)
        model.like1 = state["like1"].numpy().astype(np.float64)
        model.like0 = state["like0"].numpy().astype(np.float64)
        model._fitted = True
        return model
