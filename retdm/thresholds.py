"""Decision thresholds tuned on the validation part, saved beside the model, applied by ``retdm predict``.

Legend: N rows, M labels.

A label is predicted where its score is ``>= threshold``. The metrics of the comparison table use
the fixed 0.5 (``retdm.metrics``); per-class thresholds (or one global one) tuned to maximise F1
often do better on the label-based metrics (C-F1, O-F1). They are tuned on exactly the validation
part a run carved from its training split (``retdm.data.split.split_validation`` with the seed and
``data.val_fraction`` of the checkpoint's config), never on the test split.

A feature method's estimator (``mlknn`` …) is fitted on the fit part only
(``retdm.train.features.fit_estimator`` carves the same validation part), so every method's
thresholds are tuned on the same rows, none of which its model was fitted on. An estimator
fitted on every training row (a checkpoint without ``num_val``, from before that) is refused.

``thresholds.json``::

    {"format": "retdm-thresholds-1", "mode": "per_class", "thresholds": {"<label>": t, ...},
     "tuned_on": {"checkpoint", "checkpoint_sha256", "method", "split": "validation", "rows",
                  "image_ids_sha256", "seed", "val_fraction", "table", "table_sha256", ...}}
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retdm import __version__
from retdm.checkpoint import load_checkpoint, load_model
from retdm.data.split import split_validation
from retdm.data.table import LabelTable, ignore_mask, read_label_table
from retdm.errors import DataError
from retdm.files import atomic_write
from retdm.inference import check_trained_labels, estimator_predict, final_checkpoint, fitted_estimator, score_table
from retdm.methods import METHODS
from retdm.provenance import file_sha256
from retdm.revision import code_revision

MODES = ("per_class", "global")
FORMAT = "retdm-thresholds-1"
FILENAME = "thresholds.json"
DEFAULT = 0.5  # the threshold of a class that has no positive to tune on


# --- 1. tuning ---------------------------------------------------------------------------------

def f1_sweep(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each class's F1 at every candidate threshold: the per-class F1 sweep, vectorised.

    Column j sorted by descending score; at the last entry of each run of equal scores t, the rows
    scoring ``>= t`` are the ones up to it, so cumulative counts give TP(t) and #predicted(t), and
    F1(t) = 2 TP / (#predicted + #positives) (= 2TP / (2TP + FP + FN), ``retdm.metrics``' per-class
    F1 of ``macro_F1``, evaluated at every threshold at once).

    Args:
        labels: (N, M) bool.
        scores: (N, M) float64, finite; an entry at ``-inf`` is left out (never predicted, no candidate).

    Returns:
        (t, f1, valid), each (N, M): candidate thresholds (column-wise descending), F1 there, and
        whether the position is a candidate (last of its tie run, finite).
    """
    order = np.argsort(-scores, axis=0, kind="stable")  # (N, M) descending per class
    t = np.take_along_axis(scores, order, axis=0)  # (N, M)
    y = np.take_along_axis(labels, order, axis=0)  # (N, M)
    tp = np.cumsum(y, axis=0)  # (N, M) positives scoring >= t
    n_pred = np.arange(1, len(t) + 1)[:, None]  # (N, 1) rows scoring >= t (at a run's last entry)
    f1 = 2 * tp / (n_pred + tp[-1:])  # (N, M); tp[-1] = #positives, > 0 where it matters
    valid = np.isfinite(t)
    valid[:-1] &= t[:-1] != t[1:]  # only the last entry of a tie run counts all of the run
    return t, f1, valid


def _best(t: np.ndarray, f1: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per column: the candidate of highest F1; ties → closest to 0.5, then the higher one. (M,)."""
    f1 = np.where(valid, f1, -1.0)  # (N, M)
    top = valid & (f1 == f1.max(axis=0, keepdims=True))  # (N, M) equal floats: equal ratios of integers
    dist = np.where(top, np.abs(t - DEFAULT), np.inf)
    top &= dist == dist.min(axis=0, keepdims=True)
    return np.where(top, t, -np.inf).max(axis=0)  # (M,)


def tune_thresholds(labels: Any, scores: Any, mode: str = "per_class", ignore: Any = None) -> np.ndarray:
    """The thresholds that maximise F1 on the given (validation) rows.

    ``per_class``: for each class, the threshold maximising that class's F1; ``global``: one
    threshold for every class maximising the micro F1 (O-F1) over all (row, label) entries. The
    candidates are the distinct scores (threshold t predicts ``score >= t``). Among thresholds of
    equal F1 the one closest to 0.5 wins, and of two equally close the higher one. A class with no
    positive in these rows (``global``: no positive at all) keeps 0.5: there is nothing to tune.

    Args:
        labels: (N, M) 0/1 labels.
        scores: (N, M) finite scores.
        mode: ``per_class`` or ``global``.
        ignore: optional (N, M) bool, entries left out (as ``retdm.metrics.evaluate`` does).

    Returns:
        (M,) float64 thresholds (``global``: one value repeated M times). Each is one of the scores
        exactly (or 0.5), so ``scores >= thresholds`` reproduces the tuned predictions.

    Raises:
        ValueError: unknown mode, shapes that differ or are not 2-D, labels other than 0/1, or
            non-finite scores.
    """
    if mode not in MODES:
        raise ValueError(f"unknown threshold mode {mode!r}; valid modes are: {', '.join(MODES)}")
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if y.ndim != 2 or s.shape != y.shape or y.size == 0:
        raise ValueError(f"expected labels and scores of one 2-D shape (N, M), got {y.shape} and {s.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"expected 0/1 labels, got the value {y[(y != 0) & (y != 1)].ravel()[0]!r}")
    if not np.isfinite(s).all():
        raise ValueError(f"expected finite scores, got {s[~np.isfinite(s)].ravel()[0]} in scores {s.shape}")
    y = y.astype(bool)
    if ignore is not None:
        keep = ~np.asarray(ignore, dtype=bool)  # (N, M)
        if keep.shape != y.shape:
            raise ValueError(f"expected ignore of shape {y.shape} like labels, got {keep.shape}")
        y, s = y & keep, np.where(keep, s, -np.inf)
    m = y.shape[1]
    if mode == "global":
        y, s = y.reshape(-1, 1), s.reshape(-1, 1)  # (N*M, 1): micro F1 is one column's F1
    best = _best(*f1_sweep(y, s))  # (M,) or (1,)
    best = np.where(y.any(axis=0), best, DEFAULT)  # no positive: nothing to tune
    return np.broadcast_to(best, (m,)).astype(np.float64)  # (M,)


# --- 2. the validation part --------------------------------------------------------------------

@dataclass
class ValidationScores:
    """A method's scores on its run's validation part, and what they came from."""

    labels: np.ndarray       # (N, M) uint8
    scores: np.ndarray       # (N, M) float32
    part: LabelTable         # the validation rows of the label table
    ignore: np.ndarray | None  # (N, M) bool, entries the table marks as ignored
    checkpoint: Path
    record: dict[str, Any]   # the checkpoint's record
    seed: int
    val_fraction: float


def validation_part(table: LabelTable, seed: int, val_fraction: float) -> LabelTable:
    """The rows a run with ``seed`` and ``val_fraction`` validated on: carved from the training split
    by ``retdm.data.split.split_validation``, as ``build_training_data`` does."""
    train = table.split("train")
    _, val_rows = split_validation(len(train), val_fraction, seed)
    return train.take(val_rows)


def _run_settings(record: dict[str, Any], checkpoint: Path) -> tuple[int, float]:
    """The seed and ``data.val_fraction`` a checkpoint's config recorded."""
    config = record.get("config")
    if not isinstance(config, dict) or "seed" not in config or "val_fraction" not in config.get("data", {}):
        raise DataError(f"{checkpoint}: records no config with seed and data.val_fraction, so its validation part "
                        f"cannot be reproduced; retrain it with `retdm train`")
    return int(config["seed"]), float(config["data"]["val_fraction"])


def score_validation(runs_dir: str | os.PathLike, method: str, table_path: str | os.PathLike, *,
                     batch_size: int = 128, device: str = "auto", progress: bool = False,
                     image_cache: str | os.PathLike | None = None) -> ValidationScores:
    """Score the validation part of ``method``'s run with its final checkpoint.

    A network method scores the rows with the checkpoint's own preprocessing (``retdm.inference``);
    a feature method runs its estimator on those rows of the feature table it was fitted on.

    Raises:
        DataError: no trained model; the table is not the one the run trained on (its hash, labels
            or validation size differ), or the feature table changed since the fit.
    """
    checkpoint = final_checkpoint(runs_dir, method)
    if not checkpoint.is_file():
        raise DataError(f"{checkpoint}: no trained model for method {method!r}; train it first "
                        f"(retdm train --method {method})")
    table = read_label_table(table_path)
    table_sha = file_sha256(table_path)
    if METHODS.get(method).estimator is None:
        model, spec, names, record = load_model(checkpoint)
        check_trained_labels(table, names, table_path, checkpoint)
        if record.get("data_sha256") != table_sha:
            raise DataError(f"{table_path}: not the label table {checkpoint} was trained on ({record.get('data_path')},"
                            f" another sha256), so its validation part cannot be reproduced; pass that table")
        seed, val_fraction = _run_settings(record, checkpoint)
        part = validation_part(table, seed, val_fraction)
        if "num_val" in record and record["num_val"] != len(part):
            raise DataError(f"{checkpoint}: validated on {record['num_val']} rows, but the validation part of "
                            f"{table_path} has {len(part)}; pass the table it was trained on")
        scores = score_table(model, spec, part, batch_size=batch_size, device=device, progress=progress,
                             image_cache=image_cache)
    else:
        record = load_checkpoint(checkpoint)
        seed, val_fraction = _run_settings(record, checkpoint)
        if "num_val" not in record:
            raise DataError(f"{checkpoint}: fitted on every training row, the validation part included, so "
                            f"thresholds tuned there would be tuned on rows it has seen; re-run its fit stage "
                            f"(retdm train --method {method} --stage fit), which holds the validation part out")
        scores, part = _estimator_validation(checkpoint, record, table, table_path, table_sha, seed, val_fraction)
        if record["num_val"] != len(part):
            raise DataError(f"{checkpoint}: held out {record['num_val']} rows, but the validation part of "
                            f"{table_path} has {len(part)}; pass the table it was fitted on")
    return ValidationScores(part.labels(), scores, part, ignore_mask(table_path, part), checkpoint, record,
                            seed, val_fraction)


def _estimator_validation(checkpoint: Path, record: dict[str, Any], table: LabelTable, table_path: str | os.PathLike,
                          table_sha: str, seed: int, val_fraction: float) -> tuple[np.ndarray, LabelTable]:
    """A fitted estimator's (N, M) scores on the validation rows of its feature table, and those rows."""
    estimator, feature_table = fitted_estimator(checkpoint, record)
    if json.loads(feature_table.source or "{}").get("table_sha256") != table_sha:
        raise DataError(f"{record['data_path']}: exported from another label table than {table_path}; pass the "
                        f"table the run trained on, or re-run the features and fit stages")
    part = validation_part(feature_table, seed, val_fraction)
    expected = validation_part(table, seed, val_fraction)
    assert np.array_equal(part.frame["image_id"].to_numpy(), expected.frame["image_id"].to_numpy())
    return np.asarray(estimator_predict(estimator, part), dtype=np.float32), expected  # (N, M)


def validation_scores(runs_dir: str | os.PathLike, method: str, table_path: str | os.PathLike,
                      **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N, M) uint8, scores (N, M) float32) of ``method``'s final checkpoint on its run's
    validation part; ``kwargs`` as :func:`score_validation`, which also returns the rows and checkpoint."""
    v = score_validation(runs_dir, method, table_path, **kwargs)
    return v.labels, v.scores


# --- 3. the file -------------------------------------------------------------------------------

def _in_range(value: float) -> bool:
    """Whether ``value`` can be a threshold: scores are probabilities, so a threshold lies in [0, 1]
    (NaN does not); outside it every label would be predicted for every image, or none."""
    return 0.0 <= value <= 1.0


@dataclass(frozen=True)
class Thresholds:
    """Per-class thresholds with the labels they apply to and what they were tuned on."""

    values: np.ndarray                  # (M,) float64
    label_names: tuple[str, ...]
    mode: str                           # "per_class", "global" (tuned) or "fixed"
    provenance: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """label → threshold."""
        return {name: float(v) for name, v in zip(self.label_names, self.values)}

    def check_for(self, checkpoint: str | os.PathLike, label_names: tuple[str, ...], path: Any = None) -> None:
        """Refuse thresholds tuned for other labels or another checkpoint than ``checkpoint``.

        Raises:
            DataError: naming the file (``path``), what differs and how to re-tune.
        """
        where = path or "thresholds"
        if tuple(label_names) != self.label_names:
            raise DataError(f"{where}: thresholds for labels {list(self.label_names)}, but {checkpoint} predicts "
                            f"{list(label_names)}; tune them for it with `retdm thresholds`")
        tuned_sha = self.provenance.get("checkpoint_sha256")
        if tuned_sha is not None and tuned_sha != file_sha256(checkpoint):
            raise DataError(f"{where}: tuned on another checkpoint ({self.provenance.get('checkpoint')}, sha256 "
                            f"{tuned_sha[:12]}…) than {checkpoint}; re-tune with `retdm thresholds`")


def save_thresholds(path: str | os.PathLike, thresholds: np.ndarray, label_names: tuple[str, ...], mode: str,
                    provenance: dict[str, Any]) -> Path:
    """Write ``thresholds.json`` atomically (layout in the module docstring).

    Args:
        path: the file.
        thresholds: (M,) thresholds.
        label_names: the M labels, in order.
        mode: ``per_class`` or ``global``.
        provenance: what they were tuned on (recorded under ``tuned_on``).

    Returns:
        ``path`` as a Path.
    """
    values = np.asarray(thresholds, dtype=np.float64)
    if values.shape != (len(label_names),):
        raise ValueError(f"expected {len(label_names)} thresholds, one per label, got shape {values.shape}")
    if mode not in MODES:
        raise ValueError(f"unknown threshold mode {mode!r}; valid modes are: {', '.join(MODES)}")
    doc = {"format": FORMAT, "mode": mode,
           "thresholds": {name: float(v) for name, v in zip(label_names, values)}, "tuned_on": provenance}
    path = Path(path)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=2, default=str) + "\n"))
    return path


def load_thresholds(path: str | os.PathLike) -> Thresholds:
    """Read a ``thresholds.json`` written by :func:`save_thresholds`.

    Raises:
        DataError: the file is missing (saying how to create it), is not JSON, lacks or mistypes a key,
            or holds a threshold outside [0, 1].
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no tuned thresholds; create them with `retdm thresholds --data TABLE --runs RUNS "
                        f"-m METHOD` (tuned on the validation part, saved beside the final checkpoint)")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a JSON file ({err}); re-create it with `retdm thresholds`") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f"{path}: not a retdm thresholds file (expected format {FORMAT!r}); "
                        f"re-create it with `retdm thresholds`")
    values, mode = doc.get("thresholds"), doc.get("mode")
    if not isinstance(values, dict) or not values:
        raise DataError(f"{path}: expected 'thresholds' to map each label to a number, got {values!r}")
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not _in_range(v):
            raise DataError(f"{path}: key 'thresholds.{name}': expected a number in [0, 1] (scores are "
                            f"probabilities), got {v!r}; re-create the file with `retdm thresholds`")
    if mode not in MODES:
        raise DataError(f"{path}: key 'mode': expected one of {', '.join(MODES)}, got {mode!r}")
    return Thresholds(np.array(list(values.values()), dtype=np.float64), tuple(values), mode,
                      doc.get("tuned_on") or {})


def tune_method(runs_dir: str | os.PathLike, method: str, table_path: str | os.PathLike,
                out: str | os.PathLike | None = None, *, mode: str = "per_class", **kwargs: Any) -> Thresholds:
    """Tune ``method``'s thresholds on its run's validation part and save them.

    Args:
        runs_dir: the run directory of ``retdm.train.run.train_method``.
        method: a registered method name.
        table_path: the label table it was trained on.
        out: the ``thresholds.json`` to write (default: beside the final checkpoint).
        mode: ``per_class`` or ``global``.
        kwargs: passed to :func:`score_validation` (``image_cache``, ``device``, ...).

    Returns:
        The thresholds, with their provenance.
    """
    if mode not in MODES:
        raise DataError(f"unknown threshold mode {mode!r}; valid modes are: {', '.join(MODES)}")
    v = score_validation(runs_dir, method, table_path, **kwargs)
    values = tune_thresholds(v.labels, v.scores, mode, ignore=v.ignore)
    ids = "\n".join(map(str, v.part.frame["image_id"])).encode()
    provenance = {
        "checkpoint": str(v.checkpoint), "checkpoint_sha256": file_sha256(v.checkpoint), "method": method,
        "split": "validation", "rows": len(v.part), "image_ids_sha256": hashlib.sha256(ids).hexdigest(),
        "seed": v.seed, "val_fraction": v.val_fraction, "table": str(table_path),
        "table_sha256": file_sha256(table_path), "dataset": v.part.name,
        "ignored_entries": 0 if v.ignore is None else int(v.ignore.sum()),
        "retdm_version": __version__, "code_revision": code_revision(),
    }
    names = tuple(v.part.label_names)
    save_thresholds(out or v.checkpoint.parent / FILENAME, values, names, mode, provenance)
    return Thresholds(values, names, mode, provenance)


def resolve_thresholds(spec: str, checkpoint: str | os.PathLike, label_names: tuple[str, ...]) -> Thresholds:
    """What ``retdm predict --thresholds`` means: a number (one for every class), ``tuned`` (the
    ``thresholds.json`` beside ``checkpoint``) or the path of a ``thresholds.json``.

    Raises:
        DataError: ``spec`` is none of these (a number outside [0, 1] included), the file is missing
            (naming it and the command that creates it), or it was tuned for other labels or another
            checkpoint.
    """
    try:
        value = float(spec)
    except ValueError:
        value = None
    if value is not None:
        if not _in_range(value):
            raise DataError(f"--thresholds: expected a number in [0, 1] (scores are probabilities), 'tuned' or a "
                            f"thresholds.json, got {spec!r}")
        return Thresholds(np.full(len(label_names), value), tuple(label_names), "fixed", {})
    if spec == "tuned":
        path = Path(checkpoint).parent / FILENAME
    elif spec.endswith(".json"):
        path = Path(spec)
    else:
        raise DataError(f"--thresholds: expected a number (e.g. 0.5), 'tuned' or the path of a thresholds.json, "
                        f"got {spec!r}")
    if not path.is_file():
        raise DataError(f"{path}: no tuned thresholds for {checkpoint}; create them with `retdm thresholds --data "
                        f"TABLE --runs RUNS -m METHOD` (written beside the final checkpoint), or pass a number")
    thresholds = load_thresholds(path)
    thresholds.check_for(checkpoint, tuple(label_names), path)
    return thresholds
