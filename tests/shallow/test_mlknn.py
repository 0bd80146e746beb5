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
from retdm.shallow.mlknn import nearest_neighbours

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


def test_input_validation():
    x, y = np.zeros((20, 3), np.float32), np.zeros((20, 2), np.uint8)
    with pytest.raises(ValueError, match=r"expected a 2-D float array of shape \(N, F\).*got shape \(20,\)"):
        MLkNN().fit(x[:, 0], y)
    with pytest.raises(ValueError, match="expected a float32/float64 array, got dtype int64"):
        MLkNN().fit(x.astype(np.int64), y)
    with pytest.raises(ValueError, match=r"expected finite values, got .*nan.* at row 2, column 1"):
        MLkNN().fit(np.where(np.arange(60).reshape(20, 3) == 7, np.nan, x), y)
    with pytest.raises(ValueError, match=r"Y: expected a 0/1 matrix of shape \(20, M\).*got shape \(19, 2\)"):
        MLkNN().fit(x, y[:19])
    with pytest.raises(ValueError, match="expected only 0 and 1, got 2 at row 0, column 1"):
        MLkNN().fit(x, np.array([[0, 2]] * 20))
    with pytest.raises(ValueError, match="expected more than k=10 rows"):
        MLkNN().fit(x[:10], y[:10])
    with pytest.raises(ValueError, match="k: expected an integer >= 1, got 0"):
        MLkNN(k=0)
    with pytest.raises(ValueError, match="s: expected a finite number > 0, got 0"):
        MLkNN(s=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        MLkNN().predict_scores(x)
    model = MLkNN(k=3).fit(np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32), y)
    with pytest.raises(ValueError, match=r"expected a 2-D float array of shape \(N, 3\).*got shape \(5, 4\)"):
        model.predict_scores(np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match="expected the state_dict of method 'mlknn', got 'mlspl'"):
        MLkNN.from_state({**model.state_dict(), "method": "mlspl"})
