"""Scores and metrics of a trained checkpoint on a split of a label table.

The preprocessing comes from the checkpoint (image transforms, or the standardisation of a feature
table), never redefined here. Metrics are written in long form (dataset, method, seed, metric,
value, lower_is_better), predictions as image × label. ``retdm predict``'s outputs (scores, the labels
at given thresholds, the thresholds used) are written by :func:`write_predictions`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from retdm import __version__
from retdm.data.table import LabelTable, ignore_mask
from retdm.errors import DataError
from retdm.files import atomic_write
from retdm.inference import checkpoint_scores, final_checkpoint
from retdm.metrics import LOWER_IS_BETTER, METRIC_KEYS, evaluate
from retdm.provenance import file_sha256, write_parquet
from retdm.revision import code_revision

if TYPE_CHECKING:
    from retdm.thresholds import Thresholds

PREDICTION_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".json": "json"}



def evaluate_checkpoint(checkpoint: str | os.PathLike, table_path: str | os.PathLike, *, split: str = "test",
                        threshold: float = 0.5, method: str | None = None, batch_size: int = 128,
                        device: str = "auto", progress: bool = False, image_cache: str | os.PathLike | None = None
                        ) -> tuple[dict[str, float], np.ndarray, LabelTable, dict[str, Any]]:
    """Metrics of any method's ``checkpoint`` (a network or a fitted estimator: :func:`checkpoint_scores`)
    on ``split`` of the table at ``table_path``. ``image_cache`` is read instead of the image files
    when the checkpoint's preprocessing resizes a source (``data.image_cache``).

    Returns:
        (metrics, scores (N, M), the evaluated part of the table, the checkpoint record).

    Raises:
        DataError: as :func:`checkpoint_scores`.
    """
    scores, part, record = checkpoint_scores(checkpoint, table_path, split=split, method=method,
                                             batch_size=batch_size, device=device, progress=progress,
                                             image_cache=image_cache)
    return score_part(part, scores, table_path, threshold), scores, part, record


def score_part(part: LabelTable, scores: np.ndarray, table_path: str | os.PathLike,
               threshold: float | np.ndarray) -> dict[str, float]:
    """The metrics of ``scores`` on ``part`` of the table at ``table_path``, leaving out the entries
    the table marks as ignored (e.g. VOC's difficult objects with ``difficult: ignore``). ``threshold``
    is one number or (M,) per-class thresholds."""
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
                    extra: dict[str, Any] | None = None, image_cache: str | os.PathLike | None = None,
                    tuned: Thresholds | None = None, tuned_metrics_out: str | os.PathLike | None = None
                    ) -> pd.DataFrame:
    """Evaluate a trained method's final checkpoint on the test split and write both Parquet files
    (and, given ``tuned``, a third: the metrics at those per-class thresholds).

    Args:
        runs_dir: the run directory of ``retdm.train.run.train_method``.
        method: a registered method name.
        table_path: the label table it was trained on.
        metrics_out: long-form metrics (dataset, method, seed, metric, value, lower_is_better).
        predictions_out: image × label scores.
        threshold: score threshold of the label-based metrics.
        extra: more provenance to record (e.g. the pipeline params that apply).
        image_cache: the table's image cache (see :func:`evaluate_checkpoint`).
        tuned: thresholds tuned on the validation part (``retdm.thresholds.tune_method``) for this
            checkpoint; the metrics at them go to ``tuned_metrics_out`` (same long form), whose
            provenance records the thresholds and what they were tuned on.
        tuned_metrics_out: where those go; required with ``tuned``.

    Returns:
        The metrics frame at ``threshold``. Every file carries the provenance of :func:`provenance`
        plus ``extra``.

    Raises:
        DataError: no trained model, the feature table's test images differ from the table's, or
            ``tuned`` is for other labels or another checkpoint.
    """
    if (tuned is None) != (tuned_metrics_out is None):
        raise ValueError("evaluate_method: give tuned and tuned_metrics_out together, or neither")
    checkpoint = final_checkpoint(runs_dir, method)
    if not checkpoint.is_file():
        raise DataError(f"{checkpoint}: no trained model for method {method!r}; train it first "
                        f"(retdm train --method {method})")
    metrics, scores, part, record = evaluate_checkpoint(checkpoint, table_path, threshold=threshold, method=method,
                                                         image_cache=image_cache)
    ignored = ignore_mask(table_path, part)
    info = {**provenance(checkpoint, record, "test", threshold), **(extra or {}),
            "ignored_entries": 0 if ignored is None else int(ignored.sum())}
    frame = metrics_frame(metrics, dataset=part.name, method=method, seed=record["config"]["seed"])
    if tuned is not None:
        tuned.check_for(checkpoint, part.label_names)
        tuned_frame = metrics_frame(score_part(part, scores, table_path, tuned.values), dataset=part.name,
                                    method=method, seed=record["config"]["seed"])
        tuned_info = {**info, "threshold": "tuned", "thresholds": tuned.as_dict(), "thresholds_mode": tuned.mode,
                      "thresholds_tuned_on": tuned.provenance}
    write_parquet(predictions_frame(part, scores), predictions_out, info)
    write_parquet(frame, metrics_out, info)
    if tuned is not None:
        write_parquet(tuned_frame, tuned_metrics_out, tuned_info)
    return frame


def predicted_labels(scores: np.ndarray, label_names: tuple[str, ...], thresholds: np.ndarray) -> list[list[str]]:
    """The labels of each row whose score is ``>= `` its class's threshold.

    Args:
        scores: (N, M) scores.
        label_names: the M label names.
        thresholds: (M,) per-class thresholds (a global one repeated M times).

    Returns:
        N lists of label names, in label order.
    """
    pred = scores >= np.asarray(thresholds, dtype=np.float64)[None, :]  # (N, M)
    names = np.asarray(label_names, dtype=object)
    return [names[row].tolist() for row in pred]


def prediction_format(out: str | os.PathLike, fmt: str | None = None) -> str:
    """``fmt``, or the format ``out``'s suffix names (``.parquet``/``.pq``, ``.csv``, ``.json``).

    Raises:
        DataError: ``fmt`` is not a known format, or it is ``None`` and the suffix names none.
    """
    valid = ("parquet", "csv", "json")
    if fmt is not None:
        if fmt not in valid:
            raise DataError(f"unknown predictions format {fmt!r}; valid formats are: {', '.join(valid)}")
        return fmt
    suffix = Path(out).suffix.lower()
    if suffix not in PREDICTION_FORMATS:
        raise DataError(f"{out}: cannot tell the predictions format from the suffix {suffix or '(none)'!r}; "
                        f"name the file *.parquet, *.csv or *.json, or pass --format {'|'.join(valid)}")
    return PREDICTION_FORMATS[suffix]


def write_predictions(frame: pd.DataFrame, out: str | os.PathLike, fmt: str, info: dict[str, Any]) -> Path:
    """Write ``retdm predict``'s rows atomically: ``image``, one score column per label, ``labels`` (a list).

    Args:
        frame: the rows.
        out: the file to write.
        fmt: ``parquet`` (``info`` in the file metadata, as :func:`retdm.provenance.write_parquet`),
            ``csv`` (labels joined by ``;``; a CSV file has no place for ``info``) or ``json``
            (``{"thresholds": info["thresholds"], "provenance": info, "predictions": [row, ...]}``).
        info: the provenance, with the thresholds used under ``thresholds`` (label → threshold).

    Returns:
        ``out`` as a Path.
    """
    out = Path(out)
    if fmt == "parquet":
        return write_parquet(frame, out, info)
    if fmt == "csv":
        flat = frame.assign(labels=[";".join(labels) for labels in frame["labels"]])
        atomic_write(out, lambda tmp: flat.to_csv(tmp, index=False))
        return out
    if fmt == "json":
        rows = json.loads(frame.to_json(orient="records", double_precision=15))
        doc = {"thresholds": info.get("thresholds"), "provenance": info, "predictions": rows}
        atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1, default=str) + "\n"))
        return out
    raise DataError(f"unknown predictions format {fmt!r}; valid formats are: parquet, csv, json")
