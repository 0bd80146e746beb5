"""retdm.metrics.evaluate against scikit-learn and small slow references written from the
definitions, on random cases with ties, scores of exactly 0.5 and degenerate rows/classes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from retdm.metrics import LOWER_IS_BETTER, METRIC_KEYS, evaluate

TOL = 1e-12


def make_case(seed: int, variant: str, decimals: int | None, n: int = 60, m: int = 7):
    """Random (y_true, y_score) with tied scores, exact 0.5 scores and degenerate rows/classes."""
    rng = np.random.default_rng(seed)
    s = rng.random((n, m))  # (N, M)
    if decimals is not None:
        s = np.round(s, decimals)  # many ties
    s[rng.random((n, m)) < 0.1] = 0.5  # exactly on the threshold
    y = (rng.random((n, m)) < 0.3).astype(np.int64)  # (N, M)
    if variant == "rows":  # rows with no positive, a row with every label positive
        y[0] = 0
        y[1] = 1
        y[2] = 0
        s[2] = 0.5  # a negative row whose labels all tie
    else:  # a class with no positive and a class with every sample positive
        y[:, 2] = 0
        y[:, 3] = 1
    return y, s


def slow_one_error(y, s):
    return float(np.mean([y[i, np.argmax(s[i])] == 0 for i in range(len(y))]))


def slow_coverage(y, s):
    """0-based: worst rank of a relevant label minus 1, rank = #labels with score >= it."""
    total = 0
    for i in range(len(y)):
        ranks = [np.sum(s[i] >= s[i, j]) for j in range(y.shape[1]) if y[i, j]]
        total += max(ranks) - 1 if ranks else 0
    return total / len(y)


def sklearn_reference(y, s, threshold=0.5):
    """The same quantities computed with scikit-learn (plus slow loops for two of them)."""
    pred = (s >= threshold).astype(np.int64)
    p_c, r_c, _, _ = skm.precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    cp, cr = p_c.mean(), r_c.mean()
    op, orec, of1, _ = skm.precision_recall_fscore_support(
        y, pred, average="micro", zero_division=0
    )
    has = y.any(axis=1)
    cov = (skm.coverage_error(y[has], s[has]) - 1) * has.sum() / len(y) if has.any() else 0.0
    aps = [skm.average_precision_score(y[:, j], s[:, j]) for j in np.flatnonzero(y.any(axis=0))]
    return {
        "CP": cp,
        "CR": cr,
        "CF1": 2 * cp * cr / (cp + cr) if cp + cr > 0 else 0.0,
        "OP": op,
        "OR": orec,
        "OF1": of1,
        "hamming_loss": skm.hamming_loss(y, pred),
        "ranking_loss": skm.label_ranking_loss(y, s),
        "one_error": slow_one_error(y, s),
        "coverage": cov,
        "average_precision": skm.label_ranking_average_precision_score(y, s),
        "mAP": np.mean(aps) if aps else float("nan"),
        "macro_F1": skm.f1_score(y, pred, average="macro", zero_division=0),
    }


@pytest.mark.parametrize("decimals", [1, 2, None])
@pytest.mark.parametrize("variant", ["rows", "cols"])
@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn(seed, variant, decimals):
    y, s = make_case(seed, variant, decimals)
    got = evaluate(y, s)
    want = sklearn_reference(y, s)
    assert tuple(got) == METRIC_KEYS
    for key in METRIC_KEYS:
        assert isinstance(got[key], float), key
        assert got[key] == pytest.approx(want[key], abs=TOL, rel=0), key
    assert got["coverage"] == pytest.approx(slow_coverage(y, s), abs=TOL, rel=0)


@pytest.mark.parametrize("threshold", [0.3, 0.7])
def test_threshold_and_larger_case(threshold):
    rng = np.random.default_rng(123)
    y = (rng.random((500, 20)) < 0.15).astype(bool)
    s = rng.random((500, 20)).astype(np.float32)  # float32 scores, converted exactly
    got, want = evaluate(y, s, threshold=threshold), sklearn_reference(y, s, threshold)
    for key in METRIC_KEYS:
        assert got[key] == pytest.approx(want[key], abs=TOL, rel=0), key


def test_score_equal_to_threshold_is_positive():
    got = evaluate(np.array([[1, 0], [0, 1]]), np.array([[0.5, 0.2], [0.1, 0.5]]))
    assert got["OP"] == got["OR"] == got["CP"] == got["CR"] == 1.0
    assert got["hamming_loss"] == 0.0


def test_cf1_is_harmonic_mean_of_cp_cr_not_mean_f1():
    # class 0: P=1, R=1/2 ; class 1: P=1/2, R=1
    y = np.array([[1, 1], [1, 0]])
    s = np.array([[0.9, 0.9], [0.1, 0.9]])
    got = evaluate(y, s)
    assert got["CP"] == got["CR"] == 0.75
    assert got["CF1"] == pytest.approx(0.75, abs=TOL)
    assert got["macro_F1"] == pytest.approx(2 / 3, abs=TOL)


def test_perfect_predictions():
    rng = np.random.default_rng(7)
    y = (rng.random((50, 6)) < 0.4).astype(int)
    y[np.arange(50), rng.integers(0, 6, 50)] = 1  # every row has a positive
    y[0] = [1, 1, 1, 1, 1, 0]  # every class but one has a positive here ...
    y[1, 5] = 1  # ... and the last one here
    got = evaluate(y, np.where(y == 1, 0.9, 0.1))
    assert got["CP"] == got["CR"] == got["OF1"] == 1.0
    assert got["hamming_loss"] == got["ranking_loss"] == got["one_error"] == 0.0
    assert got["average_precision"] == got["mAP"] == 1.0
    assert got["coverage"] == pytest.approx(y.sum(axis=1).mean() - 1, abs=TOL)


def test_no_positive_at_all_gives_nan_map():
    got = evaluate(np.zeros((4, 3)), np.random.default_rng(0).random((4, 3)))
    assert np.isnan(got["mAP"])
    assert got["one_error"] == 1.0 and got["coverage"] == 0.0 and got["ranking_loss"] == 0.0
    assert got["average_precision"] == 1.0


@pytest.mark.parametrize(
    "t_shape, s_shape", [((3, 4), (3, 5)), ((4, 3), (3, 4)), ((6,), (6,)), ((2, 3, 4), (2, 3, 4))]
)
def test_shape_errors_name_both_shapes(t_shape, s_shape):
    with pytest.raises(ValueError) as info:
        evaluate(np.zeros(t_shape), np.zeros(s_shape))
    assert str(t_shape) in str(info.value) and str(s_shape) in str(info.value)


def test_non_binary_labels_and_nan_scores_raise():
    with pytest.raises(ValueError, match="0/1"):
        evaluate(np.array([[0, 2], [1, 0]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        evaluate(np.array([[0, 1], [1, 0]]), np.array([[0.1, np.nan], [0.2, 0.3]]))


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    y, s = make_case(3, "rows", 2)
    s32 = s.astype(np.float32)
    got = evaluate(torch.from_numpy(y).bool(), torch.from_numpy(s32).requires_grad_())
    want = evaluate(y, s32)
    assert got == want


def test_constants():
    assert len(METRIC_KEYS) == len(set(METRIC_KEYS)) == 13
    assert LOWER_IS_BETTER == {"hamming_loss", "ranking_loss", "one_error", "coverage"}
    assert LOWER_IS_BETTER <= set(METRIC_KEYS)


def test_module_does_not_import_sklearn():
    root = Path(__file__).resolve().parents[1]
    code = "import sys, retdm.metrics; assert not any(m.startswith('sklearn') for m in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ignored_entries_are_as_if_absent(seed):
    """With an ignore mask, every metric equals the unmasked metric of the problem without those
    entries: per row for the ranking metrics, per class for the class metrics, over all kept
    (image, label) pairs for the overall ones."""
    rng = np.random.default_rng(seed)
    n, m = 40, 6
    y = rng.random((n, m)) < 0.35
    s = np.round(rng.random((n, m)), 1)  # ties on purpose
    ignore = rng.random((n, m)) < 0.15
    ignore[ignore.all(axis=1), 0] = False
    got = evaluate(y, s, ignore=ignore)
    rows = [evaluate(y[i, ~ignore[i]][None], s[i, ~ignore[i]][None]) for i in range(n)]
    for key in ("ranking_loss", "one_error", "coverage", "average_precision"):
        assert got[key] == pytest.approx(np.mean([r[key] for r in rows])), key
    cols = [evaluate(y[~ignore[:, j], j][:, None], s[~ignore[:, j], j][:, None]) for j in range(m)]
    for key in ("CP", "CR", "macro_F1"):
        assert got[key] == pytest.approx(np.mean([c[key] for c in cols])), key
    assert got["mAP"] == pytest.approx(np.mean([c["mAP"] for c in cols if not np.isnan(c["mAP"])]))
    flat = evaluate(y[~ignore][:, None], s[~ignore][:, None])
    for key in ("OP", "OR", "OF1", "hamming_loss"):
        assert got[key] == pytest.approx(flat[key]), key
    assert evaluate(y, s, ignore=np.zeros_like(ignore)) == evaluate(y, s)


def test_ignore_must_match_and_leave_something_to_score():
    y, s = np.eye(3, dtype=bool), np.eye(3)
    with pytest.raises(ValueError, match=r"ignore of shape \(3, 3\).*\(2, 3\)"):
        evaluate(y, s, ignore=np.zeros((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="row 1 without any label"):
        evaluate(y, s, ignore=np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], dtype=bool))


def test_per_class_ap_are_the_terms_of_map():
    from retdm.metrics import average_precision_per_class

    rng = np.random.default_rng(3)
    y = rng.random((50, 5)) < 0.3
    y[:, 4] = False  # a class without a positive
    s = np.round(rng.random((50, 5)), 1)
    ap = average_precision_per_class(y, s)
    for j in range(4):
        assert ap[j] == pytest.approx(skm.average_precision_score(y[:, j], s[:, j]))
    assert np.isnan(ap[4]) and np.nanmean(ap) == pytest.approx(evaluate(y, s)["mAP"])


def test_per_class_ap_with_ignore_is_the_ap_of_the_kept_entries():
    """An ignored entry leaves its class's AP as if that image did not exist for the class, even
    an ignored positive or an ignored negative scoring above every positive."""
    from retdm.metrics import average_precision_per_class

    rng = np.random.default_rng(5)
    y = rng.random((40, 5)) < 0.35
    s = np.round(rng.random((40, 5)), 1)
    ignore = rng.random((40, 5)) < 0.2
    ignore[ignore.all(axis=1), 0] = False
    ignore[0, 1], y[0, 1], s[0, 1] = True, False, 2.0  # an ignored negative above every score
    ignore[1, 2], y[1, 2] = True, True  # an ignored positive
    ap = average_precision_per_class(y, s, ignore=ignore)
    for j in range(5):
        kept = ~ignore[:, j]
        assert ap[j] == pytest.approx(skm.average_precision_score(y[kept, j], s[kept, j]), abs=TOL), j
    assert np.nanmean(ap) == pytest.approx(evaluate(y, s, ignore=ignore)["mAP"], abs=TOL)
    with pytest.raises(ValueError, match=r"ignore of shape \(40, 5\) like y_true, got \(40, 4\)"):
        average_precision_per_class(y, s, ignore=ignore[:, :4])


def test_per_class_thresholds():
    """An (M,) threshold predicts ``y_score >= threshold[None, :]``; equal entries give the scalar result."""
    y, s = make_case(4, "classes", 1)
    m = y.shape[1]
    assert evaluate(y, s, threshold=np.full(m, 0.3)) == evaluate(y, s, threshold=0.3)
    th = np.linspace(0.2, 0.8, m)
    got = evaluate(y, s, threshold=th)
    pred = s >= th[None, :]
    assert got["macro_F1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0), abs=TOL)
    assert got["OF1"] == pytest.approx(skm.f1_score(y, pred, average="micro", zero_division=0), abs=TOL)
    assert got["hamming_loss"] == pytest.approx(skm.hamming_loss(y, pred), abs=TOL)
    for j in range(m):  # each class's counts are those of its own threshold
        one = evaluate(y[:, [j]], s[:, [j]], threshold=th[j])
        assert one["CP"] == pytest.approx(skm.precision_score(y[:, j], pred[:, j], zero_division=0), abs=TOL)
    for key in ("mAP", "ranking_loss", "coverage", "one_error", "average_precision"):  # threshold-free
        assert got[key] == evaluate(y, s)[key]
    with pytest.raises(ValueError, match=rf"a number or an array of shape \({m},\), one per class, got shape \(3,\)"):
        evaluate(y, s, threshold=np.full(3, 0.5))


def test_input_errors_name_the_offending_value_and_class():
    with pytest.raises(ValueError, match=r"got the value 2 at row 0, class 2$"):  # the first value not 0/1
        evaluate(np.array([[0, 1, 2], [1, 0, 3]]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"got the value -1 at row 1, class 1$"):
        evaluate(np.array([[1, 0], [0, -1]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"got the value 0\.5 at row 1, class 0$"):
        evaluate(np.array([[1, 0], [0.5, 1]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"y_score without NaN, got a NaN at row 1, class 0$"):
        evaluate(np.eye(2), np.array([[0.1, 0.2], [np.nan, np.nan]]))
    with pytest.raises(ValueError, match=r"NaN at class 2$"):  # the first class whose threshold is NaN
        evaluate(np.eye(3), np.eye(3), threshold=np.array([0.5, 0.5, np.nan]))
    with pytest.raises(ValueError, match=r"NaN at class 0$"):
        evaluate(np.eye(3), np.eye(3), threshold=np.array([np.nan, 0.5, np.nan]))
    with pytest.raises(ValueError, match="N, M >= 1"):
        evaluate(np.zeros((0, 3)), np.zeros((0, 3)))


def test_one_item_one_label_is_a_valid_input():
    got = evaluate(np.array([[1]]), np.array([[0.9]]))
    assert got["mAP"] == 1.0 and got["hamming_loss"] == 0.0


def test_a_class_with_a_single_positive_has_its_ap():
    """A class with one positive item has an AP (sklearn's); only a class with none has NaN."""
    from retdm.metrics import average_precision_per_class

    y = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0], [0, 1, 0]])
    s = np.array([[0.2, 0.1, 0.3], [0.9, 0.8, 0.1], [0.1, 0.7, 0.2], [0.5, 0.2, 0.4], [0.3, 0.6, 0.9]])
    ap = average_precision_per_class(y, s)
    assert ap[0] == pytest.approx(skm.average_precision_score(y[:, 0], s[:, 0]), abs=TOL) and ap[0] < 1
    assert ap[1] == pytest.approx(skm.average_precision_score(y[:, 1], s[:, 1]), abs=TOL)
    assert np.isnan(ap[2])


def test_map_averages_every_class_with_a_positive_even_a_single_one():
    y = np.array([[1, 0], [0, 1], [0, 1], [0, 0]])
    s = np.array([[0.2, 0.9], [0.9, 0.8], [0.1, 0.7], [0.5, 0.2]])
    aps = [skm.average_precision_score(y[:, j], s[:, j]) for j in range(2)]
    assert evaluate(y, s)["mAP"] == pytest.approx(np.mean(aps), abs=TOL) and aps[0] < 1
