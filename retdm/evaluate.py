"""Scores and metrics of a trained checkpoint on a split of a label table.

The preprocessing comes from the checkpoint (image transforms, or the standardisation of a feature
table), never redefined here. Metrics are written in long form (dataset, method, seed, metric,
value, lower_is_better), predictions as image × label.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from retdm import __version__
from retdm.data.dataset import FeatureTableDataset, LabelTableDataset, eval_dataset
from retdm.data.table import LabelTable, ignore_mask, read_label_table
from retdm.errors import DataError
from retdm.methods import METHODS
from retdm.metrics import LOWER_IS_BETTER, METRIC_KEYS, evaluate
from retdm.models.retdm_net import RETDMNet
from retdm.provenance import file_sha256, write_parquet
from retdm.revision import code_revision
from retdm.train.checkpoint import load_model
from retdm.train.features import estimator_scores, forward_images
from retdm.train.hardware import pick_device
from retdm.train.run import final_checkpoint


def predict_scores(model: RETDMNet, dataset: LabelTableDataset | FeatureTableDataset, **kwargs: Any) -> np.ndarray:
    """σ(Φcls(Φcnn(x))) for every item (image or feature vector): (N, M) float32 scores in dataset order."""
    return forward_images(model, dataset, **kwargs)[1]


def evaluate_checkpoint(checkpoint: str | os.PathLike, table_path: str | os.PathLike, *, split: str = "test",
                        threshold: float = 0.5, batch_size: int = 128, device: str = "auto",
                        progress: bool = False, image_cache: str | os.PathLike | None = None
                        ) -> tuple[dict[str, float], np.ndarray, LabelTable, dict[str, Any]]:
    """Metrics of ``checkpoint`` on ``split`` of the table at ``table_path``. ``image_cache`` is read
    instead of the image files when the checkpoint's preprocessing resizes a source (``data.image_cache``).

    Returns:
        (metrics, scores (N, M), the evaluated part of the table, the checkpoint record).

    Raises:
        DataError: the table's labels differ from those the model was trained on.
    """
    model, spec, names, record = load_model(checkpoint)
    table = read_label_table(table_path)
    if table.label_names != names:
        raise DataError(f"{table_path}: labels {list(table.label_names)} differ from the {len(names)} labels "
                        f"{list(names)} that {checkpoint} was trained on; evaluate on the same dataset")
    part = table.split(split)
    dataset = eval_dataset(part, spec, image_cache)
    scores = predict_scores(model, dataset, batch_size=batch_size, device=pick_device(device), progress=progress)
    return score_part(part, scores, table_path, threshold), scores, part, record


def score_part(part: LabelTable, scores: np.ndarray, table_path: str | os.PathLike, threshold: float
               ) -> dict[str, float]:
    """The metrics of ``scores`` on ``part`` of the table at ``table_path``, leaving out the entries
    the table marks as ignored (e.g. VOC's difficult objects with ``difficult: ignore``)."""
    return evaluate(part.labels(), scores, threshold=threshold, ignore=ignore_mask(table_path, part))


def metrics_frame(metrics: dict[str, float], *, dataset: str, method: str, seed: int) -> pd.DataFrame:
    """Long-form rows: dataset, method, seed, metric, value, lower_is_better."""
    keys = [k for k in METRIC_KEYS if k in metrics]
    return pd.DataFrame({
        "dataset": dataset, "method": method, "seed": seed, "metric": keys,
        "value": [float(metrics[k]) for k in keys], "lower_is_better": [k in LOWER_IS_BETTER for k in keys],
    })


def predictions_frame(part: LabelTable, scores: np.ndarray) -> pd.DataFrame:
    """One row per image: image_id, then one score column per label."""
    frame = pd.DataFrame(scores, columns=list(part.label_names))
    frame.insert(0, "image_id", part.frame["image_id"].to_numpy())
    return frame


def provenance(checkpoint: str | os.PathLike, record: dict[str, Any], split: str, threshold: float) -> dict[str, Any]:
    """What produced a result: checkpoint hash, data hash, config, code version, split, threshold."""
    return {
        "checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint), "dataset": record.get("dataset"),
        "data_path": record.get("data_path"), "data_sha256": record.get("data_sha256"),
        "method": record.get("method"), "stage": record.get("stage"), "config": record.get("config"),
        "transform": record.get("transform"), "neighbours": record.get("neighbours"),
        "split": split, "threshold": threshold, "retdm_version": __version__,
        "code_revision": code_revision(), "trained_code_revision": record.get("code_revision"),
    }


def evaluate_method(runs_dir: str | os.PathLike, method: str, table_path: str | os.PathLike,
                    metrics_out: str | os.PathLike, predictions_out: str | os.PathLike, *, threshold: float = 0.5,
                    extra: dict[str, Any] | None = None, image_cache: str | os.PathLike | None = None) -> pd.DataFrame:
    """Evaluate a trained method's final checkpoint on the test split and write both Parquet files.

    Args:
        runs_dir: the run directory of ``retdm.train.run.train_method``.
        method: a registered method name.
        table_path: the label table it was trained on.
        metrics_out: long-form metrics (dataset, method, seed, metric, value, lower_is_better).
        predictions_out: image × label scores.
        threshold: score threshold of the label-based metrics.
        extra: more provenance to record (e.g. the pipeline params that apply).
        image_cache: the table's image cache (see :func:`evaluate_checkpoint`).

    Returns:
        The metrics frame. Both files carry the provenance of :func:`provenance` plus ``extra``.
    """
    checkpoint = final_checkpoint(runs_dir, method)
    if not checkpoint.is_file():
        raise DataError(f"{checkpoint}: no trained model for method {method!r}; train it first "
                        f"(retdm train --method {method})")
    if METHODS.get(method).estimator is None:
        metrics, scores, part, record = evaluate_checkpoint(checkpoint, table_path, threshold=threshold,
                                                             image_cache=image_cache)
    else:  # a feature method: its scores come from the feature table it was fitted on
        scores, part, record = estimator_scores(checkpoint)
        expected = read_label_table(table_path).split("test")
        if not np.array_equal(part.frame["image_id"].to_numpy(), expected.frame["image_id"].to_numpy()):
            raise DataError(f"{record['data_path']}: its test images differ from those of {table_path}; "
                            f"re-run the features stage")
        metrics = score_part(part, scores, table_path, threshold)
    ignored = ignore_mask(table_path, part)
    info = {**provenance(checkpoint, record, "test", threshold), **(extra or {}),
            "ignored_entries": 0 if ignored is None else int(ignored.sum())}
    frame = metrics_frame(metrics, dataset=part.name, method=method, seed=record["config"]["seed"])
    write_parquet(predictions_frame(part, scores), predictions_out, info)
    write_parquet(frame, metrics_out, info)
    return frame
