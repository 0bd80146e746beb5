"""C2AE (our reimplementation of Yeh et al., AAAI 2017) on fixed features: end to end against
the label prior, the state round trip, seeding and input checks. Its losses are tested in
tests/losses/test_c2ae.py."""

import io

import numpy as np
import pytest
import torch
from topic_problems import topic_problem

from retdm.errors import ConfigError, DataError
from retdm.metrics import evaluate
from retdm.shallow import C2AE
from retdm.shallow.c2ae import mlp

torch.set_num_threads(1)

SMALL = {"hidden": 16, "epochs": 3, "batch_size": 32}


@pytest.mark.parametrize("kwargs", [{}, {"bce_weight": 0.0}, {"latent": 4, "hidden": 64}])
def test_beats_label_prior(kwargs):
    x_tr, y_tr, x_te, y_te = topic_problem()
    prior = evaluate(y_te, np.tile(y_tr.mean(0), (len(y_te), 1)))
    model = C2AE(**kwargs).fit(x_tr, y_tr, seed=0)
    scores = model.predict_scores(x_te)
    assert scores.shape == y_te.shape and scores.dtype == np.float32
    assert scores.min() >= 0 and scores.max() <= 1
    got = evaluate(y_te, scores)
    assert got["average_precision"] > prior["average_precision"] + 0.05
    assert got["mAP"] > prior["mAP"] + 0.1
    assert np.array_equal(model.predict(x_te), scores >= 0.5)


def test_thresholded_at_half_beats_label_prior():
    # The 0.5 threshold is only meaningful if the sigmoid of the decoder output is calibrated.
    x_tr, y_tr, x_te, y_te = topic_problem(seed=1)
    prior = evaluate(y_te, np.tile(y_tr.mean(0), (len(y_te), 1)))
    got = evaluate(y_te, C2AE().fit(x_tr, y_tr, seed=0).predict_scores(x_te))
    assert got["hamming_loss"] < prior["hamming_loss"] - 0.1
    assert got["CF1"] > prior["CF1"] + 0.2 and got["OF1"] > prior["OF1"] + 0.1


def test_latent_width_and_decoder_bias():
    x_tr, y_tr, _, _ = topic_problem(n_train=100)
    params = C2AE(hidden=8, epochs=0).fit(x_tr, y_tr).params
    z = mlp(params, "x", torch.zeros(3, 32))  # (3, D), D = M = 6 by default
    assert z.shape == (3, 6) and mlp(params, "e", torch.zeros(3, 6)).shape == (3, 6)
    np.testing.assert_allclose(torch.sigmoid(params["d.b2"]).numpy(), y_tr.mean(0), atol=1e-6)
    assert C2AE(latent=3, epochs=0).fit(x_tr, y_tr).params["x.w2"].shape == (3, 256)


def test_state_dict_round_trip():
    x_tr, y_tr, x_te, _ = topic_problem(n_train=150, n_test=20)
    model = C2AE(latent=5, **SMALL).fit(x_tr, y_tr, seed=0)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    back = C2AE.from_state(torch.load(buf, weights_only=True))
    assert (back.hidden, back.latent, back.epochs, back.batch_size, back.bce_weight) == (16, 5, 3, 32, 0.5)
    assert back.losses == model.losses and len(back.losses) == 3
    assert np.array_equal(back.predict_scores(x_te), model.predict_scores(x_te))


def test_seeding():
    x_tr, y_tr, x_te, _ = topic_problem(n_train=150, n_test=20)
    scores = C2AE(**SMALL).fit(x_tr, y_tr, seed=0).predict_scores(x_te)
    torch.manual_seed(123)  # the global RNG plays no part
    assert np.array_equal(C2AE(**SMALL).fit(x_tr, y_tr, seed=0).predict_scores(x_te), scores)
    assert not np.array_equal(C2AE(**SMALL).fit(x_tr, y_tr, seed=1).predict_scores(x_te), scores)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"hidden": 0}, "hidden: expected an integer >= 1, got 0"),
    ({"latent": 0}, "latent: expected an integer >= 1, got 0"),
    ({"latent": 2.0}, "latent: expected an integer >= 1, got 2.0"),
    ({"epochs": -1}, "epochs: expected an integer >= 0, got -1"),
    ({"batch_size": 1}, "batch_size: expected an integer >= 2, got 1"),
    ({"lr": 0}, "lr: expected a finite number > 0, got 0"),
    ({"alpha": float("nan")}, "alpha: expected a finite number > 0, got nan"),
    ({"ortho_weight": -0.5}, "ortho_weight: expected a finite number >= 0, got -0.5"),
    ({"bce_weight": "1"}, "bce_weight: expected a finite number >= 0, got '1'"),
    ({"weight_decay": True}, "weight_decay: expected a finite number >= 0, got True"),
])
def test_bad_hyperparameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        C2AE(**kwargs)


def test_input_validation():
    x, y = np.zeros((20, 3), np.float32), np.zeros((20, 2), np.uint8)
    with pytest.raises(DataError, match=r"X: expected a 2-D float array of shape \(N, F\).*got shape \(20,\)"):
        C2AE().fit(x[:, 0], y)
    with pytest.raises(DataError, match="X: expected a float32/float64 array, got dtype int64"):
        C2AE().fit(x.astype(np.int64), y)
    with pytest.raises(DataError, match=r"Y: expected a 0/1 matrix of shape \(20, M\).*got shape \(19, 2\)"):
        C2AE().fit(x, y[:19])
    with pytest.raises(DataError, match="Y: expected only 0 and 1, got 0.5"):
        C2AE().fit(x, np.full((20, 2), 0.5))
    with pytest.raises(DataError, match="X: expected at least 2 rows"):
        C2AE().fit(x[:1], y[:1])
    with pytest.raises(RuntimeError, match="C2AE is not fitted: call fit"):
        C2AE().predict_scores(x)
    with pytest.raises(RuntimeError, match="C2AE is not fitted"):
        C2AE().state_dict()
    rng = np.random.default_rng(0)
    model = C2AE(**SMALL).fit(rng.normal(size=(20, 3)), (rng.random((20, 2)) < 0.5))
    with pytest.raises(DataError, match=r"X: expected a 2-D float array of shape \(N, 3\).*got shape \(5, 4\)"):
        model.predict_scores(np.zeros((5, 4), np.float32))
    state = model.state_dict()
    with pytest.raises(ValueError, match="expected the state_dict of method 'c2ae', got 'mlspl'"):
        C2AE.from_state({**state, "method": "mlspl"})
    with pytest.raises(ValueError, match=r"missing \['params'\]"):
        C2AE.from_state({k: v for k, v in state.items() if k != "params"})
    with pytest.raises(DataError, match="expected params"):
        C2AE.from_state({**state, "params": {"w": torch.zeros(1)}})
