"""MLSPL (our reimplementation of Li et al., IEEE TNNLS 2018): the self-paced pieces against
their formulas, the curriculum, and the model end to end."""

import io
import math

import numpy as np
import pytest
import torch
from topic_problems import topic_problem

from retdm.metrics import evaluate
from retdm.shallow import MLSPL
from retdm.shallow.mlspl import initial_pace, pair_losses, self_paced_loss, self_paced_weights

torch.set_num_threads(1)


def test_self_paced_pieces_match_their_formulas():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (6, 3), generator=g).double()
    losses = pair_losses(logits, y)
    for i in range(6):
        for l in range(3):
            p = 1 / (1 + math.exp(-logits[i, l].item()))
            want = -math.log(p) if y[i, l] == 1 else -math.log(1 - p)
            assert losses[i, l].item() == pytest.approx(want, abs=1e-12)
    pace = torch.tensor([0.5, 0.7, 0.9], dtype=torch.float64)
    v = self_paced_weights(losses, pace)
    assert v.tolist() == [[float(losses[i, l] < pace[l]) for l in range(3)] for i in range(6)]
    admitted = [losses[i, l].item() for i in range(6) for l in range(3) if v[i, l]]
    assert self_paced_loss(losses, v).item() == pytest.approx(sum(admitted) / max(1, len(admitted)), abs=1e-12)


def test_initial_pace_admits_the_start_fraction():
    losses = torch.rand(1000, 4, generator=torch.Generator().manual_seed(0))
    losses[:, 3] *= 10  # one hard label
    overall = initial_pace(losses, 0.5, per_label=False)
    assert torch.all(overall == overall[0])
    assert self_paced_weights(losses, overall).mean().item() == pytest.approx(0.5, abs=1e-3)
    per = self_paced_weights(losses, initial_pace(losses, 0.3, per_label=True))  # (N, M)
    np.testing.assert_allclose(per.mean(0).numpy(), 0.3, atol=2e-3)  # every label enters, the hard one too


def test_nothing_admitted_gives_zero_in_graph():
    logits = torch.randn(4, 3, requires_grad=True)
    loss = self_paced_loss(pair_losses(logits, torch.ones(4, 3)), torch.zeros(4, 3))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_curriculum_grows_from_half_to_all():
    x_tr, y_tr, _, _ = topic_problem(n_train=200)
    model = MLSPL(epochs=20).fit(x_tr, y_tr, seed=0)
    assert model.admitted[0] == pytest.approx(0.5, abs=0.01)
    assert all(b >= a - 0.02 for a, b in zip(model.admitted, model.admitted[1:]))  # θ moves, so not strictly
    assert model.admitted[-1] > 0.99


@pytest.mark.parametrize("kwargs", [{}, {"hidden": 16}, {"admission": "per_label"}])
def test_beats_label_prior(kwargs):
    x_tr, y_tr, x_te, y_te = topic_problem()
    prior = evaluate(y_te, np.tile(y_tr.mean(0), (len(y_te), 1)))
    scores = MLSPL(**kwargs).fit(x_tr, y_tr, seed=0).predict_scores(x_te)
    assert scores.shape == y_te.shape and scores.dtype == np.float32
    assert scores.min() >= 0 and scores.max() <= 1
    got = evaluate(y_te, scores)
    assert got["average_precision"] > prior["average_precision"] + 0.05
    assert got["mAP"] > prior["mAP"] + 0.1


@pytest.mark.parametrize("hidden", [0, 8])
def test_state_dict_round_trip_and_determinism(hidden):
    x_tr, y_tr, x_te, _ = topic_problem(n_train=150, n_test=20)
    model = MLSPL(hidden=hidden, epochs=5, batch_size=32).fit(x_tr, y_tr, seed=0)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    back = MLSPL.from_state(torch.load(buf, weights_only=True))
    assert (back.hidden, back.epochs, back.batch_size, back.admitted) == (hidden, 5, 32, model.admitted)
    scores = model.predict_scores(x_te)
    assert np.array_equal(back.predict_scores(x_te), scores)
    again = MLSPL(hidden=hidden, epochs=5, batch_size=32).fit(x_tr, y_tr, seed=0)
    assert np.array_equal(again.predict_scores(x_te), scores)
    other = MLSPL(hidden=hidden, epochs=5, batch_size=32).fit(x_tr, y_tr, seed=1)
    assert not np.array_equal(other.predict_scores(x_te), scores)


def test_input_validation():
    x, y = np.zeros((20, 3), np.float32), np.zeros((20, 2), np.uint8)
    with pytest.raises(ValueError, match=r"expected a 2-D float array of shape \(N, F\).*got shape \(0, 3\)"):
        MLSPL().fit(x[:0], y[:0])
    with pytest.raises(ValueError, match="expected a float32/float64 array, got dtype bool"):
        MLSPL().fit(x.astype(bool), y)
    with pytest.raises(ValueError, match=r"Y: expected a 0/1 matrix of shape \(20, M\).*got shape \(21, 2\)"):
        MLSPL().fit(x, np.zeros((21, 2)))
    with pytest.raises(ValueError, match=r"admission: expected one of \['global', 'per_label'\], got 'label'"):
        MLSPL(admission="label")
    with pytest.raises(ValueError, match=r"start_fraction: expected a number in \(0, 1\], got 1.5"):
        MLSPL(start_fraction=1.5)
    with pytest.raises(ValueError, match="growth: expected a number >= 1"):
        MLSPL(growth=0.9)
    with pytest.raises(RuntimeError, match="not fitted"):
        MLSPL().predict_scores(x)
    model = MLSPL(epochs=1).fit(np.random.default_rng(0).normal(size=(20, 3)), y)
    with pytest.raises(ValueError, match=r"shape \(N, 3\).*got shape \(5, 1\)"):
        model.predict_scores(np.zeros((5, 1)))
    with pytest.raises(ValueError, match="expected the state_dict of method 'mlspl', got 'mlknn'"):
        MLSPL.from_state({**model.state_dict(), "method": "mlknn"})
