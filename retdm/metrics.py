"""Multi-label evaluation metrics, vectorised with numpy (no scikit-learn at run time).

``evaluate(y_true, y_score)`` returns the 13 metrics of ``METRIC_KEYS``. Conventions:

- Prediction: ``y_hat = y_score >= threshold`` (a score equal to the threshold is positive);
  ``threshold`` is one number, or one per class (an (M,) array, e.g. tuned by ``retdm.thresholds``).
- Any ratio 0/0 is 0 (a class never predicted has precision 0, a class never present recall 0).
- ``CP``/``CR``: per-class precision / recall, averaged over all M classes. ``CF1`` is the
  harmonic mean of CP and CR (the ML-GCN / CNN-RNN convention), not the mean per-class F1;
  that one is ``macro_F1`` (sklearn ``f1_score(average="macro", zero_division=0)``).
- ``OP``/``OR``/``OF1``: micro precision / recall / F1 over all (sample, label) pairs.
- ``hamming_loss``: fraction of wrong (sample, label) pairs.
- ``ranking_loss``: sklearn ``label_ranking_loss``: a tied relevant/irrelevant pair is wrong; a
  row with no relevant or no irrelevant label scores 0 (and counts in the mean).
- ``one_error``: fraction of rows whose top label (``np.argmax``, first index on ties) is not
  relevant; a row without a positive label is an error.
- ``coverage``: 0-based: worst rank of a relevant label minus 1, rank of label j being the
  number of labels scoring ``>= score_j``; a row without a positive scores 0.
- ``average_precision``: sklearn ``label_ranking_average_precision_score`` (a row with no or all
  labels relevant scores 1).
- ``mAP``: mean over classes with a positive of sklearn's step-wise ``average_precision_score``
  (precision taken at each distinct score); ``nan`` when no class has a positive.

- ``ignore`` (optional (N, M) bool, e.g. VOC's "difficult" objects): an ignored (image, label)
  entry is left out of every metric, as if that label did not exist for that image: out of the
  counts of the thresholded metrics, out of the ranking of its row (a row's label count is its
  non-ignored labels) and out of its class's AP.

Lower is better for the keys in ``LOWER_IS_BETTER``; higher for the rest.
"""

from __future__ import annotations

from typing import Any

import numpy as np

METRIC_KEYS = (
    "CP", "CR", "CF1", "OP", "OR", "OF1", "hamming_loss", "ranking_loss", "one_error",
    "coverage", "average_precision", "mAP", "macro_F1",
)
LOWER_IS_BETTER = frozenset({"hamming_loss", "ranking_loss", "one_error", "coverage"})


def _to_numpy(x: Any) -> np.ndarray:
    """A numpy view of an array-like or a (possibly CUDA, possibly bf16) torch tensor."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().double().numpy()
    return np.asarray(x)


def _check_ignore(ignore: Any, shape: tuple[int, int]) -> np.ndarray:
    """``ignore`` as a (N, M) bool array; ValueError when its shape differs or it leaves a row empty."""
    mask = _to_numpy(ignore)
    if mask.shape != shape:
        raise ValueError(f"expected ignore of shape {shape} like y_true, got {mask.shape}")
    mask = mask.astype(bool)
    if mask.all(axis=1).any():
        row = int(np.flatnonzero(mask.all(axis=1))[0])
        raise ValueError(f"ignore leaves row {row} without any label to score; drop that row instead")
    return mask


def _check_threshold(threshold: Any, m: int) -> float | np.ndarray:
    """``threshold`` as a float or a (1, M) float64 row; ValueError for another shape or a NaN."""
    th = _to_numpy(threshold)
    if th.ndim == 0:
        return float(th)  # the scalar path stays exactly what it always was
    if th.shape != (m,):
        raise ValueError(f"expected threshold to be a number or an array of shape ({m},), one per class, "
                         f"got shape {th.shape}")
    th = th.astype(np.float64)
    if np.isnan(th).any():
        bad = int(np.flatnonzero(np.isnan(th))[0])
        raise ValueError(f"expected thresholds without NaN, got a NaN at class {bad}")
    return th[None, :]  # (1, M)


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise num / den with 0/0 (any x/0) → 0."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def _counts_at_positives(
    scores: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each positive of each group (row) of ``scores``, count who scores at least as high.

    Each row is sorted once; a positive's tie run starts at ``b``, so the entries scoring
    ``>= score`` are those from ``b`` to the row's end (ties take the worst rank).

    Args:
        scores: (G, L) float64, one group per row.
        labels: (G, L) bool.

    Returns:
        ``(g, a, t)``, each (P,) for the P positives in group-major, ascending-score order:
        the group, the number of entries and the number of positives of that group scoring
        ``>=`` the positive's score.
    """
    n_groups, length = scores.shape
    order = np.argsort(scores, axis=1)  # (G, L) ascending within each group
    flat = (order + (np.arange(n_groups) * length)[:, None]).ravel()  # (G*L,)
    sv = scores.ravel()[flat]  # (G*L,) sorted scores, group after group
    q = np.flatnonzero(labels.ravel()[flat])  # (P,) sorted positions of the positives
    starts = np.empty(sv.shape, dtype=bool)  # (G*L,) first entry of a run of equal scores
    starts[0] = True
    np.not_equal(sv[1:], sv[:-1], out=starts[1:])
    starts[::length] = True  # runs never cross groups
    run_idx = np.flatnonzero(starts)  # (R,)
    b = run_idx[np.searchsorted(run_idx, q, side="right") - 1]  # (P,) start of each run
    g = q // length  # (P,)
    g_end = (g + 1) * length  # (P,) one past the group's last position
    a = g_end - b  # entries of the group at or after b
    t = np.searchsorted(q, g_end) - np.searchsorted(q, b)  # positives at or after b
    return g, a, t


def _check(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert inputs to (bool (N, M), float64 (N, M)); ValueError otherwise."""
    t, s = _to_numpy(y_true), _to_numpy(y_score)
    if t.ndim != 2 or s.shape != t.shape or t.size == 0:
        raise ValueError(
            f"expected y_true and y_score of one 2-D shape (N, M) with N, M >= 1, "
            f"got y_true {t.shape} and y_score {s.shape}"
        )
    if t.dtype != np.bool_ and not np.all((t == 0) | (t == 1)):
        r, c = np.argwhere(~((t == 0) | (t == 1)))[0]
        raise ValueError(f"expected y_true of 0/1 values, got the value {t[r, c].item()!r} at row {r}, class {c}")
    s = s.astype(np.float64, copy=False)
    if np.isnan(s).any():
        r, c = np.argwhere(np.isnan(s))[0]
        raise ValueError(f"expected y_score without NaN, got a NaN at row {r}, class {c}")
    return t.astype(bool, copy=False), s


def _class_ap(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per-class AP of checked (N, M) bool labels and float scores (ignored entries at -inf):
    sklearn's ``average_precision_score`` per class = the sum over its positives of the precision
    t / a at the positive's score (one threshold per distinct score), over its P_j positives.

    Returns:
        (M,) float64; nan for a class without a positive.
    """
    m = y.shape[1]
    gc, ac, tc = _counts_at_positives(np.ascontiguousarray(s.T), np.ascontiguousarray(y.T))
    n_pos = np.count_nonzero(y, axis=0)  # (M,)
    ap = _div(np.bincount(gc, weights=tc / ac, minlength=m), n_pos)  # (M,)
    return np.where(n_pos > 0, ap, np.nan)


def average_precision_per_class(y_true: Any, y_score: Any, ignore: Any = None) -> np.ndarray:
    """Each class's AP (the terms of ``mAP``), with the same conventions as :func:`evaluate`.

    Args:
        y_true: (N, M) 0/1 labels.
        y_score: (N, M) scores.
        ignore: optional (N, M) bool, entries left out.

    Returns:
        (M,) float64; nan for a class without a (kept) positive.
    """
    y, s = _check(y_true, y_score)  # (N, M) bool, (N, M) float64
    if ignore is not None:
        keep = ~_check_ignore(ignore, y.shape)
        y, s = y & keep, np.where(keep, s, -np.inf)
    return _class_ap(y, s)


def evaluate(y_true: Any, y_score: Any, threshold: float | Any = 0.5, ignore: Any = None) -> dict[str, float]:
    """Compute every metric of ``METRIC_KEYS`` (conventions in the module docstring).

    Args:
        y_true: (N, M) 0/1 labels (bool, int or float; numpy array or torch tensor).
        y_score: (N, M) scores, e.g. probabilities (numpy array or torch tensor).
        threshold: a label is predicted positive where its score is ``>= threshold``: one number,
            or (M,) per-class thresholds (``y_score >= threshold[None, :]``).
        ignore: optional (N, M) bool, entries left out of every metric (module docstring).

    Returns:
        A dict from each key of ``METRIC_KEYS`` to a Python float (``mAP`` is nan when no class
        has a positive).

    Raises:
        ValueError: the shapes differ or are not 2-D, an input is empty, y_true holds a value
            other than 0/1, y_score holds a NaN, or threshold is neither a number nor (M,).
    """
    y, s = _check(y_true, y_score)  # (N, M) bool, (N, M) float64
    n, m = y.shape
    threshold = _check_threshold(threshold, m)  # float or (1, M)
    keep = np.ones_like(y) if ignore is None else ~_check_ignore(ignore, y.shape)  # (N, M) bool
    y = y & keep
    # An ignored entry scores -inf: below every kept one, so it never counts as scoring ">=" one.
    s = np.where(keep, s, -np.inf)  # (N, M)
    m_row = np.count_nonzero(keep, axis=1)  # (N,) labels that count in each row
    out: dict[str, Any] = {}  # numpy scalars, turned into floats on return

    # Thresholded metrics from per-class counts.
    pred = (s >= threshold) & keep  # (N, M)
    tp = np.count_nonzero(pred & y, axis=0)  # (M,)
    n_pred = np.count_nonzero(pred, axis=0)  # (M,)
    n_pos = np.count_nonzero(y, axis=0)  # (M,)
    prec_c, rec_c = _div(tp, n_pred), _div(tp, n_pos)  # (M,) each, 0/0 → 0
    cp, cr = prec_c.mean(), rec_c.mean()
    out["CP"], out["CR"] = cp, cr  # per-class P/R averaged over all M classes
    out["CF1"] = _div(2 * cp * cr, cp + cr)  # ML-GCN: harmonic mean of CP and CR
    op, orec = _div(tp.sum(), n_pred.sum()), _div(tp.sum(), n_pos.sum())
    out["OP"], out["OR"] = op, orec  # micro P/R over all (sample, label) pairs
    out["OF1"] = _div(2 * op * orec, op + orec)  # harmonic mean of OP and OR
    out["hamming_loss"] = np.count_nonzero(pred != y) / keep.sum()  # sklearn hamming_loss

    # Ranking metrics: for each relevant label r of row i, a = #labels and t = #relevant
    # labels scoring >= s_ir (ties counted, i.e. worst rank).
    g, a, t = _counts_at_positives(s, y)  # (P,) each, P = number of positives
    k = np.bincount(g, minlength=n)  # (N,) relevant labels per row
    # sklearn label_ranking_loss: pairs (relevant r, irrelevant i) with s_i >= s_r are wrong.
    wrong = np.bincount(g, weights=a - t, minlength=n)  # (N,)
    out["ranking_loss"] = _div(wrong, k * (m_row - k)).mean()  # no or all relevant → 0
    # one-error: top label (first index on ties) not relevant; no positive → error.
    top = np.argmax(s, axis=1)  # (N,)
    out["one_error"] = 1.0 - np.count_nonzero(y[np.arange(n), top]) / n
    # 0-based coverage: worst rank of a relevant label minus 1, i.e. a - 1 at the row's
    # lowest-scored relevant label (its first positive in ascending order); no positive → 0.
    first_pos = (np.cumsum(k) - k)[k > 0]  # (rows with a positive,)
    out["coverage"] = (a[first_pos] - 1).sum() / n
    # sklearn LRAP: mean over relevant r of t / a; a row with no or all labels relevant → 1.
    lrap = _div(np.bincount(g, weights=t / a, minlength=n), k)  # (N,)
    lrap[(k == 0) | (k == m_row)] = 1.0
    out["average_precision"] = lrap.mean()

    ap = _class_ap(y, s)  # (M,), nan for a class without a positive
    has_pos = n_pos > 0
    out["mAP"] = ap[has_pos].mean() if has_pos.any() else float("nan")
    # sklearn f1_score(average="macro", zero_division=0): mean of 2TP / (2TP + FP + FN).
    out["macro_F1"] = _div(2 * tp, n_pred + n_pos).mean()

    return {key: float(out[key]) for key in METRIC_KEYS}
