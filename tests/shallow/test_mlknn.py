"""ML-kNN against a slow loop written straight from Zhang & Zhou (2007), Fig. 1; the shared
neighbour search and input checks."""

import io
import math

import numpy as np
import pytest
import torch
from topic_problems import topic_problem

from retdm.metrics import evaluate
from retdm.shallow import MLkNN
from retdm.shallow.base import nearest_neighbours

torch.set_num_threads(1)


def slow_mlknn(x_train, y_train, x_test, k, s):
    """Python loops over points, labels and counts, in float64, from the paper's formulas."""
    n, m = len(y_train), len(y_train[0])

    def knn(x, skip):
        d = [(math.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(x, x_train[i]))), i)
             for i in range(n) if i != skip]
        return [i for _, i in sorted(d)[:k]]  # ties: lower index first

    prior = [(s + sum(int(y_train[i][l]) for i in range(n))) / (s * 2 + n) for l in range(m)]
    nbrs = [knn(x_train[i], i) for i in range(n)]
    like1, like0 = [], []
    for l in range(m):
        c, c_ = [0] * (k + 1), [0] * (k + 1)
        for i in range(n):
            delta = sum(int(y_train[a][l]) for a in nbrs[i])
            if y_train[i][l] == 1:
                c[delta] += 1
            else:
                c_[delta] += 1
        like1.append([(s + c[j]) / (s * (k + 1) + sum(c)) for j in range(k + 1)])
        like0.append([(s + c_[j]) / (s * (k + 1) + sum(c_)) for j in range(k + 1)])
    out = []
    for x in x_test:
        nn = knn(x, None)
        row = []
        for l in range(m):
            cnt = sum(int(y_train[a][l]) for a in nn)
            on, off = prior[l] * like1[l][cnt], (1 - prior[l]) * like0[l][cnt]
            row.append(on / (on + off))
        out.append(row)
    return np.array(out)


@pytest.mark.parametrize("k,s", [(10, 1.0), (3, 0.5)])
def test_matches_slow_reference(k, s):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(55, 6))
    y = (rng.random((55, 4)) < 0.4).astype(np.uint8)
    x_tr, y_tr, x_te = x[:40], y[:40], x[40:]
    got = MLkNN(k=k, s=s).fit(x_tr, y_tr).predict_scores(x_te, dtype=np.float64)
    want = slow_mlknn(x_tr.tolist(), y_tr.tolist(), x_te.tolist(), k, s)
    assert got.shape == (15, 4) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_neighbour_ties_go_to_lower_index():
    g = torch.Generator().manual_seed(0)
    keys = torch.randint(0, 3, (40, 2), generator=g).double()  # many exact ties
    for exclude_self, queries in [(True, keys), (False, torch.randint(0, 3, (9, 2), generator=g).double())]:
        idx, dist = nearest_neighbours(queries, keys, 7, exclude_self=exclude_self, block_elems=100)
        for qi, q in enumerate(queries.tolist()):
            ref = sorted((sum((a - b) ** 2 for a, b in zip(q, keys[i].tolist())), i)
                         for i in range(40) if not (exclude_self and i == qi))[:7]
            assert idx[qi].tolist() == [i for _, i in ref]
            np.testing.assert_allclose(dist[qi].numpy(), [math.sqrt(d) for d, _ in ref], atol=1e-12)


def test_beats_label_prior():
    x_tr, y_tr, x_te, y_te = topic_problem()
    prior = evaluate(y_te, np.tile(y_tr.mean(0), (len(y_te), 1)))
    scores = MLkNN().fit(x_tr, y_tr).predict_scores(x_te)
    assert scores.shape == y_te.shape and scores.dtype == np.float32
    assert scores.min() >= 0 and scores.max() <= 1
    got = evaluate(y_te, scores)
    assert got["average_precision"] > prior["average_precision"] + 0.05
    assert got["mAP"] > prior["mAP"] + 0.1
    assert np.array_equal(MLkNN().fit(x_tr, y_tr).predict(x_te), scores >= 0.5)


def test_state_dict_round_trip_and_determinism():
    x_tr, y_tr, x_te, _ = topic_problem(n_train=120, n_test=20)
    model = MLkNN(k=5).fit(x_tr, y_tr, seed=0)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    back = MLkNN.from_state(torch.load(buf, weights_only=True))
    assert back.k == 5 and back.s == 1.0
    assert np.array_equal(back.predict_scores(x_te), model.predict_scores(x_te))
    assert np.array_equal(MLkNN(k=5).fit(x_tr, y_tr, seed=3).predict_scores(x_te), model.predict_scores(x_te))


def test_neighbour_count_bounds_and_their_messages():
    keys = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=torch.float64)
    idx, dist = nearest_neighbours(keys, keys, 1, exclude_self=True)  # k = 1 is allowed
    assert idx[:, 0].tolist() == [1, 0, 1, 2] and dist[:, 0].tolist() == [1.0, 1.0, 2.0, 4.0]
    idx, _ = nearest_neighbours(keys[:2], keys, 4)  # k = N is allowed without exclude_self
    assert idx.tolist() == [[0, 1, 2, 3], [1, 0, 2, 3]]
    idx, _ = nearest_neighbours(keys, keys, 3, exclude_self=True)  # and k = N - 1 with it
    assert idx[3].tolist() == [2, 1, 0]
    with pytest.raises(ValueError, match=r"^expected 1 <= k <= 3 \(keys - 1, self excluded\), got k=4$"):
        nearest_neighbours(keys, keys, 4, exclude_self=True)
    with pytest.raises(ValueError, match=r"^expected 1 <= k <= 4 \(keys\), got k=5$"):
        nearest_neighbours(keys[:2], keys, 5)
    with pytest.raises(ValueError, match=r"^expected 1 <= k <= 4 \(keys\), got k=0$"):
        nearest_neighbours(keys[:2], keys, 0)
    with pytest.raises(ValueError, match=r"^exclude_self needs queries == keys, got 2 queries and 4 keys$"):
        nearest_neighbours(keys[:2], keys, 1, exclude_self=True)


def test_shallow_predict_thresholds_scores_at_greater_or_equal():
    """``ShallowEstimator.predict`` (LMMO-kNN, MLSPL, C2AE): a score equal to the threshold is positive."""
    from retdm.shallow.base import ShallowEstimator

    class Fixed(ShallowEstimator):
        def predict_scores(self, X):
            return np.array([[0.5, 0.4999, 0.7, 0.3]])

    assert Fixed().predict(None).tolist() == [[True, False, True, False]]
    assert Fixed().predict(None, threshold=0.3).tolist() == [[True, True, True, True]]


def test_check_labels_width_and_default_name():
    from retdm.shallow.base import check_labels

    assert check_labels(np.ones((4, 1)), 4).dtype == np.uint8  # one label is a label matrix
    assert check_labels(np.ones((4, 3)), 4, width=3).shape == (4, 3)
    with pytest.raises(ValueError, match=r"^Y: expected a 0/1 matrix of shape \(4, 3\) \(N from X\), got shape \(4, 2\)$"):
        check_labels(np.ones((4, 2)), 4, width=3)
    with pytest.raises(ValueError, match=r"^Y: expected a 0/1 matrix of shape \(4, M\) \(N from X\), got shape \(4, 0\)$"):
        check_labels(np.ones((4, 0)), 4)


def test_check_features_keeps_float32_and_float64_widens_float16_and_reads_tensors():
    from retdm.shallow.base import check_features

    x = np.random.default_rng(0).normal(size=(5, 1))  # one feature is a feature matrix
    for dtype in (np.float32, np.float64):
        got = check_features(x.astype(dtype))
        assert got.dtype == dtype and np.array_equal(got, x.astype(dtype))
    assert check_features(x.astype(np.float16)).dtype == np.float32
    assert np.array_equal(check_features(torch.from_numpy(x)), x)
    with pytest.raises(ValueError, match=r"^X: expected a 2-D float array of shape \(N, F\) with N >= 1, got shape \(0, 1\)$"):
        check_features(x[:0])


def test_mlknn_reads_tensors_as_their_arrays():
    x_tr, y_tr, x_te, _ = topic_problem(n_train=60, n_test=10)
    want = MLkNN(k=4).fit(x_tr, y_tr).predict_scores(x_te)
    got = MLkNN(k=4).fit(torch.from_numpy(x_tr), torch.from_numpy(y_tr)).predict_scores(torch.from_numpy(x_te))
    assert np.array_equal(got, want)


@pytest.mark.parametrize("s", [True, "1", float("inf")])
def test_smoothing_must_be_a_finite_number(s):
    with pytest.raises(ValueError, match=r"^s: expected a finite number > 0, got "):
        MLkNN(s=s)


def test_a_state_that_is_not_a_dict_is_named_by_its_type():
    with pytest.raises(ValueError, match=r"expected the state_dict of method 'mlknn', got 'list'"):
        MLkNN.from_state([1, 2])


def test_state_dict_round_trip_keeps_s_and_every_array_with_its_dtype():
    x_tr, y_tr, x_te, _ = topic_problem(n_train=60, n_test=10)
    model = MLkNN(k=4, s=0.5).fit(x_tr, y_tr)
    back = MLkNN.from_state(model.state_dict())
    assert back.s == 0.5
    assert np.array_equal(back.predict_scores(x_te), model.predict_scores(x_te))
    want = model.state_dict()
    for key, value in back.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert value.dtype == want[key].dtype and torch.equal(value, want[key]), key
        else:
            assert value == want[key], key


def test_float32_queries_of_a_float64_model_are_its_float64_queries():
    """Queries take the training features' dtype: float32 rows are the same points in float64."""
    x_tr, y_tr, x_te, _ = topic_problem(n_train=60, n_test=10)
    model = MLkNN(k=4).fit(x_tr.astype(np.float64), y_tr)
    q32 = x_te.astype(np.float32)
    want = model.predict_scores(q32.astype(np.float64), dtype=np.float64)
    assert np.array_equal(model.predict_scores(q32, dtype=np.float64), want)


def test_map_decision_takes_a_posterior_of_exactly_one_half():
    """r = 0.5 is positive (y_t(l) = 1 where r_t(l) >= 0.5). Four points on a line, k = 1: each
    label value has one point whose neighbour carries the label and one whose does not, so the
    prior and both count likelihoods are 1/2 and every posterior is exactly 1/2."""
    x = np.array([[1.0], [0.0], [2.5], [-1.2]])  # A, B, C, D: neighbours A→B, B→A, C→A, D→B
    y = np.array([[1], [0], [1], [0]], np.uint8)
    model = MLkNN(k=1).fit(x, y)
    assert np.array_equal(model.predict_scores(x, dtype=np.float64), np.full((4, 1), 0.5))
    assert model.predict(x).all()


def test_the_map_decision_is_taken_on_the_float64_posterior():
    """A posterior 1.25e-9 below 1/2 rounds to 1/2 in float32; ``predict`` must still say no.
    Five points on a line, k = 1, two with the label: prior (s+2)/(2s+5); with one point of each
    label value whose neighbour carries it, P(E_1|H1) = (s+1)/(2s+2), P(E_1|H0) = (s+1)/(2s+3)."""
    from fractions import Fraction

    s = 1e8
    x = np.array([[0.0], [1.0], [3.0], [10.0], [10.9]])
    y = np.array([[1], [0], [1], [0], [0]], np.uint8)
    # neighbours: 0→1 (0), 1→0 (1), 2→1 (0), 3→4 (0), 4→3 (0): C = 0, 1, 0, 0, 0
    # label 1: C = 0, 0 → c1 = [2, 0]; label 0: C = 1, 0, 0 → c0 = [2, 1]
    model = MLkNN(k=1, s=s).fit(x, y)
    query = np.array([[0.9]])  # its neighbour is point 1 (no label): C = 0
    f = Fraction(s)
    prior = (f + 2) / (2 * f + 5)
    on, off = prior * (f + 2) / (2 * f + 2), (1 - prior) * (f + 2) / (2 * f + 3)
    r = on / (on + off)
    assert 0 < 0.5 - r < Fraction(1, 10**8) and np.float32(float(r)) == 0.5
    assert model.predict_scores(query, dtype=np.float64)[0, 0] == pytest.approx(float(r), abs=1e-15)
    assert not model.predict(query)[0, 0]


def test_input_validation():
    x, y = np.zeros((20, 3), np.float32), np.zeros((20, 2), np.uint8)
    with pytest.raises(ValueError, match=r"^X: expected a 2-D float array of shape \(N, F\).*got shape \(20,\)"):
        MLkNN().fit(x[:, 0], y)
    with pytest.raises(ValueError, match="^X: expected a float32/float64 array, got dtype int64"):
        MLkNN().fit(x.astype(np.int64), y)
    with pytest.raises(ValueError, match=r"expected finite values, got .*nan.* at row 2, column 1"):
        MLkNN().fit(np.where(np.arange(60).reshape(20, 3) == 7, np.nan, x), y)
    with pytest.raises(ValueError, match=r"Y: expected a 0/1 matrix of shape \(20, M\).*got shape \(19, 2\)"):
        MLkNN().fit(x, y[:19])
    with pytest.raises(ValueError, match="^Y: expected only 0 and 1, got 2 at row 0, column 1"):
        MLkNN().fit(x, np.array([[0, 2]] * 20))
    with pytest.raises(ValueError, match=r"expected more than k=10 rows \(a point is not its own neighbour\), got 10$"):
        MLkNN().fit(x[:10], y[:10])
    with pytest.raises(ValueError, match="k: expected an integer >= 1, got 0"):
        MLkNN(k=0)
    with pytest.raises(ValueError, match="s: expected a finite number > 0, got 0"):
        MLkNN(s=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        MLkNN().predict_scores(x)
    model = MLkNN(k=3).fit(np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32), y)
    with pytest.raises(ValueError, match=r"^X: expected a 2-D float array of shape \(N, 3\).*got shape \(5, 4\)"):
        model.predict_scores(np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match="expected the state_dict of method 'mlknn', got 'mlspl'"):
        MLkNN.from_state({**model.state_dict(), "method": "mlspl"})
