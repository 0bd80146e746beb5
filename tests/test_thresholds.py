"""Threshold tuning against a slow loop written from the definition of F1; the validation part it
tunes on; thresholds.json; the tuned metrics of an evaluation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from retdm.data.table import read_label_table
from retdm.errors import DataError
from retdm.metrics import evaluate
from retdm.thresholds import (
    FILENAME,
    load_thresholds,
    resolve_thresholds,
    save_thresholds,
    score_validation,
    tune_method,
    tune_thresholds,
    validation_scores,
)


def f1_at(y, s, t):
    """F1 of predicting ``s >= t`` against 0/1 ``y``, from TP, FP, FN (0 when 2TP + FP + FN = 0)."""
    pred = s >= t
    tp, fp, fn = int(np.sum(pred & y)), int(np.sum(pred & ~y)), int(np.sum(~pred & y))
    return 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0


def slow_best(y, s):
    """The distinct score of highest F1; ties → closest to 0.5, then the higher; 0.5 with no positive."""
    if not y.any():
        return 0.5
    return max(sorted(set(s.tolist())), key=lambda t: (f1_at(y, s, t), -abs(t - 0.5), t))


def slow_tune(y, s, mode, ignore=None):
    y = y.astype(bool)
    keep = np.ones_like(y) if ignore is None else ~ignore
    if mode == "global":
        return np.full(y.shape[1], slow_best(y[keep], s[keep]))
    return np.array([slow_best(y[keep[:, j], j], s[keep[:, j], j]) for j in range(y.shape[1])])


def make_case(seed, decimals, n=40, m=6):
    rng = np.random.default_rng(seed)
    s = rng.random((n, m))
    if decimals is not None:
        s = np.round(s, decimals)  # many tied scores
    y = (rng.random((n, m)) < 0.35).astype(np.uint8)
    y[:, 1] = 0  # a class with no positive
    y[:, 2] = 1  # a class where every row is positive
    return y, s


@pytest.mark.parametrize("mode", ["per_class", "global"])
@pytest.mark.parametrize("decimals", [None, 1, 2])
@pytest.mark.parametrize("seed", range(6))
def test_tuning_matches_the_slow_loop(seed, decimals, mode):
    y, s = make_case(seed, decimals)
    assert np.array_equal(tune_thresholds(y, s, mode), slow_tune(y, s, mode))


@pytest.mark.parametrize("mode", ["per_class", "global"])
def test_tuning_leaves_ignored_entries_out(mode):
    y, s = make_case(3, 1)
    ignore = np.random.default_rng(0).random(y.shape) < 0.2
    ignore[:, 0] = False
    assert np.array_equal(tune_thresholds(y, s, mode, ignore=ignore), slow_tune(y, s, mode, ignore))


def test_ties_go_to_the_threshold_closest_to_half_then_the_higher():
    # class 0: t = 0.95 and t = 0.4 both give the best F1, 2/3: 0.4 is closer to 0.5; class 1: 0.9 and 0.1
    # tie on F1 and on distance: the higher wins; class 2 has no positive and keeps 0.5, whatever its scores.
    y = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 0], [1, 1, 0]])
    s = np.array([[0.95, 0.9, 0.9], [0.6, 0.6, 0.1], [0.5, 0.3, 0.3], [0.4, 0.1, 0.8]])
    assert [f1_at(y[:, 0] == 1, s[:, 0], t) for t in (0.95, 0.6, 0.5, 0.4)] == [2 / 3, 1 / 2, 2 / 5, 2 / 3]
    assert [f1_at(y[:, 1] == 1, s[:, 1], t) for t in (0.9, 0.1)] == [2 / 3, 2 / 3]
    assert tune_thresholds(y, s).tolist() == [0.4, 0.9, 0.5]
    assert tune_thresholds(np.zeros((3, 2)), np.full((3, 2), 0.9), "global").tolist() == [0.5, 0.5]


def test_tuned_thresholds_beat_any_global_one_on_macro_f1_and_are_scores():
    y, s = make_case(1, None, n=80)
    tuned = tune_thresholds(y, s)  # (M,)
    best = evaluate(y, s, threshold=tuned)["macro_F1"]
    assert all(best >= evaluate(y, s, threshold=t)["macro_F1"] for t in np.unique(s))
    has_pos = y.any(axis=0)
    assert all(t in s[:, j] for j, t in enumerate(tuned) if has_pos[j])
    glob = tune_thresholds(y, s, "global")
    assert len(set(glob)) == 1 and all(evaluate(y, s, threshold=glob[0])["OF1"] >= evaluate(y, s, threshold=t)["OF1"]
                                       for t in np.unique(s))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="valid modes are: per_class, global"):
        tune_thresholds(np.ones((2, 2)), np.ones((2, 2)), "micro")
    with pytest.raises(ValueError, match="one 2-D shape"):
        tune_thresholds(np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="finite scores"):
        tune_thresholds(np.ones((2, 2)), np.array([[0.1, np.nan], [0.2, 0.3]]))


@pytest.fixture(scope="module")
def runs(tiny_table, tmp_path_factory):
    """A 1-epoch bce run and an mlknn fitted on its features."""
    from retdm.config import load_config
    from retdm.train.run import train_method

    cfg = load_config("cpu", {  # conftest's tiny_cfg (function-scoped), one epoch
        "data.image_size": 32, "data.resize": 36, "data.batch_size": 16, "data.val_fraction": 0.2,
        "model.embed_dim": 32, "model.label_hidden": 32, "loss.k": 3, "pretrain.epochs": 1})
    out = tmp_path_factory.mktemp("runs")
    train_method(tiny_table, out, cfg, "mlknn", progress=False)  # pretrain (= bce), features, fit
    return out


def test_validation_scores_are_the_runs_validation_rows(runs, tiny_table):
    from retdm.checkpoint import load_model
    from retdm.data.split import split_validation
    from retdm.inference import estimator_scores, score_table

    table = read_label_table(tiny_table)
    train = table.split("train")
    _, val_rows = split_validation(len(train), 0.2, 0)  # TINY's data.val_fraction and the default seed
    expected = train.frame["image_id"].to_numpy()[val_rows]
    v = score_validation(runs, "bce", tiny_table)
    assert np.array_equal(v.part.frame["image_id"].to_numpy(), expected) and len(expected) == 19
    assert not set(expected) & set(table.split("test").frame["image_id"])
    assert len(v.part) == v.record["num_val"]
    model, spec, _, _ = load_model(runs / "bce/pretrain/best.pt")
    assert np.array_equal(v.scores, score_table(model, spec, v.part))
    labels, scores = validation_scores(runs, "bce", tiny_table)
    assert np.array_equal(labels, train.labels()[val_rows]) and np.array_equal(scores, v.scores)
    # a feature method: its estimator on the features of the same rows
    labels, scores = validation_scores(runs, "mlknn", tiny_table)
    all_train, _, _ = estimator_scores(runs / "mlknn/fit/best.pt", split="train")
    assert np.array_equal(labels, train.labels()[val_rows]) and np.array_equal(scores, all_train[val_rows])


def test_a_feature_methods_thresholds_are_tuned_on_rows_its_estimator_was_not_fitted_on(runs, tiny_table, tmp_path):
    """The fit stage holds out the deep stages' validation part: ML-kNN keeps its fit rows
    (``x_train``), which are exactly the fit part of the features, none of the tuning rows."""
    from retdm.checkpoint import load_checkpoint, save_checkpoint
    from retdm.data.split import split_validation

    v = score_validation(runs, "mlknn", tiny_table)
    features = read_label_table(v.record["data_path"]).split("train")
    fit_rows, val_rows = split_validation(len(features), 0.2, 0)  # TINY's data.val_fraction, the default seed
    x = features.frame[features.feature_columns].to_numpy(np.float32)  # (N, D)
    fitted = v.record["estimator"]["x_train"].numpy()  # (N_fit, D)
    assert np.array_equal(fitted, x[fit_rows])
    assert np.array_equal(v.part.frame["image_id"].to_numpy(), features.frame["image_id"].to_numpy()[val_rows])
    assert not (x[val_rows][:, None, :] == fitted[None]).all(axis=2).any()  # no tuning row among the fitted ones
    bce = load_checkpoint(runs / "bce/pretrain/best.pt")
    counts = (v.record["num_fit"], v.record["num_val"])
    assert counts == (bce["num_fit"], bce["num_val"]) == (len(fit_rows), len(v.part))
    # an estimator fitted on every training row (before the fit stage held the part out) is refused
    old = {k: val for k, val in v.record.items() if k != "num_val"}
    save_checkpoint(tmp_path / "mlknn/fit/best.pt", old)
    with pytest.raises(DataError, match="fitted on every training row.*re-run its fit stage"):
        score_validation(tmp_path, "mlknn", tiny_table)


def test_another_table_is_refused(runs, tiny_table, tmp_path):
    from retdm.data.table import resplit_table

    other = resplit_table(tiny_table, tmp_path / "other.parquet", test_fraction=0.3, seed=5)
    with pytest.raises(DataError, match="not the label table .* was trained on"):
        score_validation(runs, "bce", other)
    with pytest.raises(DataError, match="exported from another label table"):
        score_validation(runs, "mlknn", other)
    with pytest.raises(DataError, match="no trained model for method 'retdm'"):
        score_validation(runs, "retdm", tiny_table)


def test_tune_method_saves_beside_the_checkpoint_and_loads_back(runs, tiny_table, tmp_path):
    tuned = tune_method(runs, "bce", tiny_table, tmp_path / FILENAME)
    labels, scores = validation_scores(runs, "bce", tiny_table)
    assert np.array_equal(tuned.values, tune_thresholds(labels, scores))
    back = load_thresholds(tmp_path / FILENAME)
    assert np.array_equal(back.values, tuned.values) and back.label_names == tuned.label_names
    on = back.provenance
    assert on["split"] == "validation" and on["rows"] == 19 and len(on["checkpoint_sha256"]) == 64
    assert on["seed"] == 0 and on["val_fraction"] == 0.2
    # exact round trip: a tuned threshold is one of the float32 scores
    assert all(t == 0.5 or t in scores[:, j] for j, t in enumerate(back.values))
    default = tune_method(runs, "mlknn", tiny_table, mode="global")
    assert (runs / "mlknn/fit" / FILENAME).is_file() and len(set(default.values)) == 1
    loaded = resolve_thresholds("tuned", runs / "mlknn/fit/best.pt", default.label_names)
    assert loaded.mode == "global" and np.array_equal(loaded.values, default.values)
    with pytest.raises(DataError, match="tuned on another checkpoint"):
        resolve_thresholds(str(runs / "mlknn/fit" / FILENAME), runs / "bce/pretrain/best.pt", default.label_names)
    with pytest.raises(DataError, match="thresholds for labels"):
        resolve_thresholds(str(tmp_path / FILENAME), runs / "bce/pretrain/best.pt", ("a", "b"))


def test_thresholds_file_errors_name_the_file_and_the_fix(tmp_path):
    path = tmp_path / FILENAME
    with pytest.raises(DataError, match=f"{path}: no tuned thresholds; create them with `retdm thresholds"):
        load_thresholds(path)
    save_thresholds(path, np.array([0.3, 0.7]), ("a", "b"), "per_class", {"rows": 3})
    doc = json.loads(path.read_text())
    assert doc["thresholds"] == {"a": 0.3, "b": 0.7} and doc["tuned_on"] == {"rows": 3}
    doc["thresholds"]["b"] = "high"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"key 'thresholds.b': expected a number in \[0, 1\].*, got 'high'"):
        load_thresholds(path)
    for bad in (1.5, -0.1):
        doc["thresholds"]["b"] = bad
        path.write_text(json.dumps(doc))
        with pytest.raises(DataError, match=rf"{path}: key 'thresholds.b': expected a number in \[0, 1\].*got {bad}"):
            load_thresholds(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="not a JSON file"):
        load_thresholds(path)
    with pytest.raises(DataError, match="expected a number .* 'tuned' or the path of a thresholds.json, got 'high'"):
        resolve_thresholds("high", tmp_path / "best.pt", ("a", "b"))
    assert resolve_thresholds("0.25", tmp_path / "best.pt", ("a", "b")).values.tolist() == [0.25, 0.25]
    assert resolve_thresholds("1", tmp_path / "best.pt", ("a", "b")).values.tolist() == [1.0, 1.0]
    for bad in ("1.5", "-0.5", "nan", "inf"):
        with pytest.raises(DataError, match=rf"--thresholds: expected a number in \[0, 1\].*got '{bad}'"):
            resolve_thresholds(bad, tmp_path / "best.pt", ("a", "b"))


def test_evaluation_writes_metrics_at_the_tuned_thresholds(runs, tiny_table, tmp_path):
    from retdm.evaluate import evaluate_method

    tuned = tune_method(runs, "bce", tiny_table, tmp_path / FILENAME)
    frame = evaluate_method(runs, "bce", tiny_table, tmp_path / "m.parquet", tmp_path / "p.parquet",
                            tuned=tuned, tuned_metrics_out=tmp_path / "mt.parquet")
    fixed, at_tuned = pd.read_parquet(tmp_path / "m.parquet"), pd.read_parquet(tmp_path / "mt.parquet")
    assert list(at_tuned.columns) == list(fixed.columns) and at_tuned["metric"].tolist() == frame["metric"].tolist()
    test = read_label_table(tiny_table).split("test")
    scores = pd.read_parquet(tmp_path / "p.parquet")[list(test.label_names)].to_numpy()
    expected = evaluate(test.labels(), scores, threshold=tuned.values)
    assert dict(zip(at_tuned["metric"], at_tuned["value"])) == pytest.approx(expected, abs=0)
    ranking = ["mAP", "ranking_loss", "coverage"]  # threshold-free: the same at both
    fixed_values, tuned_values = (f.set_index("metric")["value"][ranking].tolist() for f in (fixed, at_tuned))
    assert fixed_values == tuned_values
    meta = json.loads(pq.read_schema(tmp_path / "mt.parquet").metadata[b"retdm"])
    assert meta["threshold"] == "tuned" and meta["thresholds"] == tuned.as_dict()
    assert meta["thresholds_tuned_on"]["split"] == "validation"
    assert json.loads(pq.read_schema(tmp_path / "m.parquet").metadata[b"retdm"])["threshold"] == 0.5
