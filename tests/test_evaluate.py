"""Evaluation helpers: exported features, method evaluation with provenance, the comparison table."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from retdm.compare import HEADERS, TABLE_METRICS, comparison_markdown, comparison_table
from retdm.data.table import read_label_table
from retdm.errors import DataError
from retdm.evaluate import evaluate_method, metrics_frame
from retdm.train.features import export_features


@pytest.fixture
def trained(tiny_table, tiny_cfg, tmp_path):
    import dataclasses

    from retdm.train.run import train_method

    cfg = dataclasses.replace(tiny_cfg, pretrain=dataclasses.replace(tiny_cfg.pretrain, epochs=1))
    train_method(tiny_table, tmp_path / "runs", cfg, "bce", progress=False)
    return tmp_path / "runs"


def test_exported_features_are_a_feature_label_table(trained, tiny_table, tmp_path):
    ckpt = trained / "bce/pretrain/best.pt"
    export_features(ckpt, tiny_table, tmp_path / "features.parquet")
    feats, table = read_label_table(tmp_path / "features.parquet"), read_label_table(tiny_table)
    assert not feats.has_images and len(feats.feature_columns) == 32
    assert feats.frame["image_id"].tolist() == table.frame["image_id"].tolist()
    assert np.array_equal(feats.labels(), table.labels()) and feats.label_names == table.label_names
    assert json.loads(feats.source)["features_of"] == str(ckpt)
    assert np.isfinite(feats.frame[feats.feature_columns].to_numpy()).all()


def test_evaluate_method_writes_metrics_and_predictions_with_provenance(trained, tiny_table, tmp_path):
    frame = evaluate_method(trained, "bce", tiny_table, tmp_path / "m.parquet", tmp_path / "p.parquet",
                            extra={"params": {"seed": 0}})
    assert set(frame["metric"]) >= {"CF1", "mAP"} and (frame["method"] == "bce").all()
    meta = json.loads(pq.read_schema(tmp_path / "m.parquet").metadata[b"retdm"])
    assert meta["params"] == {"seed": 0} and meta["dataset"] == "synthetic" and len(meta["checkpoint_sha256"]) == 64
    assert len(pd.read_parquet(tmp_path / "p.parquet")) == 24
    with pytest.raises(DataError, match="no trained model for method 'retdm'.*retdm train --method retdm"):
        evaluate_method(trained, "retdm", tiny_table, tmp_path / "x.parquet", tmp_path / "y.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_comparison_averages_seeds_and_marks_the_best():
    rows = [metrics_frame({"CF1": v, "coverage": c, "mAP": v}, dataset="d", method=m, seed=s)
            for m, s, v, c in [("bce", 0, 0.5, 2.0), ("bce", 1, 0.7, 3.0), ("retdm", 0, 0.65, 1.5)]]
    table = comparison_table(pd.concat(rows), method_order=["bce", "retdm"])
    assert table["method"].tolist() == ["bce", "retdm"] and table["seeds"].tolist() == [2, 1]
    bce = table.iloc[0]
    assert bce["CF1"] == pytest.approx(0.6) and bce["CF1_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    text = comparison_markdown(table)
    rows = {line.split(" | ")[0][2:]: line.strip("| ").split(" | ")[1:] for line in text.splitlines()
            if line.startswith("| bce") or line.startswith("| retdm")}
    columns = [HEADERS[m] for m in TABLE_METRICS]
    cf1, coverage, hamming = columns.index(HEADERS["CF1"]), columns.index(HEADERS["coverage"]), columns.index(HEADERS["hamming_loss"])
    assert rows["retdm"][cf1] == "**0.6500**" and rows["bce"][cf1] == "0.6000 ± 0.1414"  # higher is better
    assert rows["retdm"][coverage] == "**1.5000**" and rows["bce"][coverage] == "2.5000 ± 0.7071"  # lower
    assert rows["bce"][hamming] == "–"  # not reported


def test_fit_refuses_features_of_another_table(trained, tiny_table, tmp_path):
    from retdm.data.table import resplit_table
    from retdm.train.features import fit_estimator

    features = tmp_path / "features.parquet"
    export_features(trained / "bce/pretrain/best.pt", tiny_table, features)
    other = resplit_table(tiny_table, tmp_path / "other.parquet", test_fraction=0.3, seed=5)
    with pytest.raises(DataError, match="exported from another label table.*re-run the features stage"):
        fit_estimator(features, tmp_path / "fit", "mlknn", {}, 0, 0.2, table_path=other)
    assert not (tmp_path / "fit").exists()
    assert fit_estimator(features, tmp_path / "fit", "mlknn", {}, 0, 0.2, table_path=tiny_table).is_file()
