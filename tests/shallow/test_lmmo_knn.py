"""LMMO-kNN (our reimplementation of Liu & Tsang, AAAI 2015): the loss against a slow loop from
its formula, target mining, the vote, and the model end to end."""

import io

import numpy as np
import pytest
import torch
from topic_problems import topic_problem

from retdm.metrics import evaluate
from retdm.shallow import LMMOkNN
from retdm.shallow.lmmo_knn import (
    label_hamming,
    large_margin_triplet_loss,
    target_neighbours,
    weighted_vote_scores,
)

torch.set_num_threads(1)


def slow_loss(za, zj, ya, yj, mu):
    """Python loops over anchors and candidates, in float64, from the module's J(L)."""
    b, m = len(za), len(ya[0])

    def d(u, v):
        return sum((p - q) ** 2 for p, q in zip(u, v))

    def ham(u, v):
        return sum(p != q for p, q in zip(u, v)) / m

    pull = sum(d(za[i], zj[i]) for i in range(b)) / b
    hinges = [max(0.0, ham(ya[i], ya[l]) + d(za[i], zj[i]) - d(za[i], za[l]))
              for i in range(b) for l in range(b) if ham(ya[i], ya[l]) > ham(ya[i], yj[i])]
    push = sum(hinges) / len(hinges) if hinges else 0.0
    return mu * pull + (1 - mu) * push


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_matches_slow_reference(seed):
    g = torch.Generator().manual_seed(seed)
    za, zj = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)
    ya, yj = torch.randint(0, 2, (7, 5), generator=g).double(), torch.randint(0, 2, (7, 5), generator=g).double()
    got = large_margin_triplet_loss(za, zj, (ya != yj).double().mean(1), label_hamming(ya, ya), 0.3)
    want = slow_loss(za.tolist(), zj.tolist(), ya.tolist(), yj.tolist(), 0.3)
    assert got.item() == pytest.approx(want, abs=1e-12)


def test_no_valid_triplet_gives_zero_push_in_graph():
    za = torch.randn(4, 3, requires_grad=True)
    y = torch.ones(4, 2)  # every label set equal: no candidate differs more than the target
    loss = large_margin_triplet_loss(za, za.detach() + 1.0, torch.zeros(4), label_hamming(y, y), mu=0.0)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.isfinite(za.grad).all()


def test_targets_by_label_hamming_ties_to_lower_index():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (30, 4), generator=g).float()
    got = target_neighbours(y, 5)
    for i in range(30):
        ref = sorted((int((y[i] != y[j]).sum()), j) for j in range(30) if j != i)[:5]
        assert got[i].tolist() == [j for _, j in ref]


def test_weighted_vote():
    dist = torch.tensor([[0.0, 1.0, 3.0]])
    labels = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    w = [1 / 1e-6, 1 / (1e-6 + 1), 1 / (1e-6 + 3)]
    want = [(w[0] + w[2]) / sum(w), (w[1] + w[2]) / sum(w)]
    np.testing.assert_allclose(weighted_vote_scores(dist, labels).numpy()[0], want, rtol=1e-6)


def test_beats_label_prior():
    x_tr, y_tr, x_te, y_te = topic_problem()
    prior = evaluate(y_te, np.tile(y_tr.mean(0), (len(y_te), 1)))
    scores = LMMOkNN().fit(x_tr, y_tr, seed=0).predict_scores(x_te)
    assert scores.shape == y_te.shape and scores.dtype == np.float32
    assert scores.min() >= 0 and scores.max() <= 1
    got = evaluate(y_te, scores)
    assert got["average_precision"] > prior["average_precision"] + 0.05
    assert got["mAP"] > prior["mAP"] + 0.1


def test_learned_metric_beats_its_initial_metric():
    x_tr, y_tr, x_te, y_te = topic_problem(noise=2.0, distract=16)
    learned = evaluate(y_te, LMMOkNN().fit(x_tr, y_tr, seed=0).predict_scores(x_te))
    initial = evaluate(y_te, LMMOkNN(epochs=0).fit(x_tr, y_tr, seed=0).predict_scores(x_te))
    assert learned["mAP"] > initial["mAP"] + 0.03
    assert learned["average_precision"] > initial["average_precision"] + 0.01


def test_state_dict_round_trip_and_determinism():
    x_tr, y_tr, x_te, _ = topic_problem(n_train=150, n_test=20)
    model = LMMOkNN(k=5, dim=8, epochs=3, batch_size=64).fit(x_tr, y_tr, seed=0)
    assert model.L.shape == (8, 32) and model.z_train.shape == (150, 8)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    back = LMMOkNN.from_state(torch.load(buf, weights_only=True))
    assert (back.k, back.dim, back.epochs, back.batch_size) == (5, 8, 3, 64)
    scores = model.predict_scores(x_te)
    assert np.array_equal(back.predict_scores(x_te), scores)
    again = LMMOkNN(k=5, dim=8, epochs=3, batch_size=64).fit(x_tr, y_tr, seed=0)
    assert torch.equal(again.L, model.L) and np.array_equal(again.predict_scores(x_te), scores)
    other = LMMOkNN(k=5, dim=8, epochs=3, batch_size=64).fit(x_tr, y_tr, seed=1)
    assert not torch.equal(other.L, model.L)


def test_input_validation():
    x, y = np.zeros((20, 3), np.float32), np.zeros((20, 2), np.uint8)
    with pytest.raises(ValueError, match=r"expected a 2-D float array of shape \(N, F\).*got shape \(2, 20, 3\)"):
        LMMOkNN().fit(x[None].repeat(2, 0), y)
    with pytest.raises(ValueError, match=r"Y: expected a 0/1 matrix of shape \(20, M\).*got shape \(20,\)"):
        LMMOkNN().fit(x, y[:, 0])
    with pytest.raises(ValueError, match="expected only 0 and 1, got 0.5"):
        LMMOkNN().fit(x, np.full((20, 2), 0.5))
    with pytest.raises(ValueError, match="dim: expected d <= F = 3, got 4"):
        LMMOkNN(dim=4).fit(x, y)
    with pytest.raises(ValueError, match=r"mu: expected a number in \[0, 1\], got 1.5"):
        LMMOkNN(mu=1.5)
    with pytest.raises(RuntimeError, match="not fitted"):
        LMMOkNN().predict_scores(x)
    rng = np.random.default_rng(0)
    model = LMMOkNN(k=3, epochs=1).fit(rng.normal(size=(20, 3)).astype(np.float32), (rng.random((20, 2)) < 0.5))
    with pytest.raises(ValueError, match=r"shape \(N, 3\).*got shape \(5, 2\)"):
        model.predict_scores(np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match=r"missing \['L'\]"):
        LMMOkNN.from_state({k: v for k, v in model.state_dict().items() if k != "L"})
