"""The report's figures: valid, non-blank PNGs, byte-identical for identical inputs, clear errors on bad input."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from retdm.errors import ConfigError, DataError
from retdm.report import embedding as E
from retdm.report import figures as F

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _epochs() -> pd.DataFrame:
    rows = []
    for method, stages in {"retdm": [("pretrain", 2), ("embed", 3), ("finetune", 3)], "bce": [("finetune", 5)]}.items():
        for stage, count in stages:
            for epoch in range(1, count + 1):
                rows.append({"method": method, "stage": stage, "epoch": epoch, "train_loss": 1 / epoch,
                             "val_loss": np.nan if stage == "embed" else 1.2 / epoch,
                             "val_mAP": 0.4 + 0.05 * epoch if stage == "finetune" else np.nan})
    return pd.DataFrame(rows)


def _grid() -> pd.DataFrame:
    return pd.DataFrame([{"alpha": a, "beta": b, "CF1": 0.6 + 0.01 * i + 0.02 * j, "OF1": 0.7 - 0.01 * i}
                         for i, a in enumerate([0.001, 0.01, 0.1]) for j, b in enumerate([0.5, 1.0])])


def _embedding():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    kind = np.array(["image"] * 34 + ["label set"] * 6)
    group = np.array([f"a,b{i % 12}" for i in range(40)])
    return x, kind, group


def _examples():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size=(24, 30, 3), dtype=np.uint8) for _ in range(5)]
    true = [["cat"], ["dog", "person"], [], ["car"], ["bus"]]
    predicted = [["cat"], ["dog"], ["cat"], ["car", "bus"], []]
    return images, true, predicted


CASES = {
    "convergence": lambda: F.convergence_figure(_epochs(), "Convergence"),
    "sensitivity": lambda: F.sensitivity_heatmaps(_grid(), "Sensitivity"),
    "embedding_pca": lambda: E.embedding_map(E.project_2d(_embedding()[0]), *_embedding()[1:], "Embedding"),
    "per_class_ap": lambda: F.per_class_ap_figure(pd.DataFrame(
        [{"method": m, "label": lab, "AP": 0.1 * (i + 1) + 0.05 * j} for j, m in enumerate(["retdm", "bce"])
         for i, lab in enumerate(["cat", "dog", "person"])]), "AP"),
    "examples": lambda: F.prediction_examples(*_examples(), "Examples"),
    "threshold": lambda: F.threshold_effect_figure(pd.DataFrame(
        [{"method": m, "setting": s, "CF1": 0.5 + 0.1 * i, "OF1": 0.6 + 0.05 * i}
         for m in ["retdm", "bce"] for i, s in enumerate(["0.5", "tuned"])]), "Thresholds"),
}


def _decode(png: bytes) -> np.ndarray:
    assert png.startswith(PNG_SIGNATURE)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_figure_is_a_deterministic_nonblank_png(name):
    png = CASES[name]()
    pixels = _decode(png)  # (H, W, 3)
    assert 700 <= pixels.shape[1] <= 1000
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 2
    assert CASES[name]() == png


def test_tsne_projection_is_seeded():
    x = _embedding()[0]
    first, again = E.project_2d(x, "tsne", seed=3), E.project_2d(x, "tsne", seed=3)
    assert first.shape == (40, 2)
    np.testing.assert_array_equal(first, again)


def test_pca_matches_svd_up_to_sign():
    x = _embedding()[0]
    out = E.project_2d(x)  # (N, 2)
    centred = x - x.mean(axis=0)
    reference = centred @ np.linalg.svd(centred)[2][:2].T
    np.testing.assert_allclose(np.abs(out), np.abs(reference), atol=1e-9)
    assert E.project_2d(x[:, :1]).shape == (40, 2)  # one feature: second axis is zero


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(DataError, match="missing column.*val_mAP"):
        F.convergence_figure(_epochs().drop(columns="val_mAP"), "t")
    with pytest.raises(DataError, match="more than once"):
        F.sensitivity_heatmaps(pd.concat([_grid(), _grid().head(1)]), "t")
    with pytest.raises(ConfigError, match="choose one of"):
        E.project_2d(np.zeros((5, 3)), "umap")
    with pytest.raises(DataError, match="'image' or 'label set'"):
        E.embedding_map(np.zeros((2, 2)), np.array(["image", "set"]), np.array(["a", "a"]), "t")
    images, true, predicted = _examples()
    with pytest.raises(DataError, match="uint8"):
        F.prediction_examples([images[0].astype(float)], true[:1], predicted[:1], "t")
    with pytest.raises(DataError, match="equally many"):
        F.prediction_examples(images, true[:2], predicted, "t")
