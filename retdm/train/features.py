"""The feature methods' two stages: ``features`` (export) and ``fit`` (a shallow estimator).

Legend: N images, D embedding width, M labels.

``features`` runs the trained BCE backbone (the ``pretrain`` stage) over every image with the
test transform (over every feature vector, standardised as in training, for a feature table such
as a MULAN dataset) and writes Φcnn(image) as a feature label table (``feat_0 … feat_{D-1}`` in
place of ``path``). ``fit`` trains one of ``retdm.shallow``'s estimators on the fit part of that
table's training split: the training rows minus the very validation part the deep stages hold out
(``retdm.data.split.split_validation`` with the run's seed and ``data.val_fraction``). So the
shallow baselines share the deep methods' backbone, split, fit rows and labels, and differ only in
what they learn on top. The estimator selects nothing on the validation part (its
hyper-parameters are fixed); the part is held out so that ``retdm.thresholds`` tunes every
method's thresholds on the same rows, none of which its model was fitted on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retdm import __version__
from retdm.checkpoint import load_model, save_checkpoint
from retdm.data.dataset import eval_dataset
from retdm.data.split import split_validation
from retdm.data.table import FEATURE_PREFIX, LabelTable, read_label_table, write_label_table
from retdm.errors import ConfigError, DataError
from retdm.hardware import pick_device, torch_threads
from retdm.inference import forward_images
from retdm.methods import METHODS
from retdm.provenance import file_sha256
from retdm.revision import code_revision


def export_features(checkpoint: str | os.PathLike, table_path: str | os.PathLike, out: str | os.PathLike, *,
                    batch_size: int = 128, device: str = "auto", progress: bool = False,
                    image_cache: str | os.PathLike | None = None) -> LabelTable:
    """The backbone embeddings Φcnn(image) of every item (the checkpoint's test preprocessing) as a feature
    label table. ``image_cache`` is read instead of the files when the checkpoint's spec resizes a source.

    ``out`` has ``feat_0 … feat_{D-1}`` in place of ``path``, the same ``image_id``, ``split``
    and labels, and the checkpoint and table hashes in its source.
    """
    model, spec, names, _ = load_model(checkpoint)
    table = read_label_table(table_path, expect_labels=names)
    feats, _ = forward_images(model, eval_dataset(table, spec, image_cache), batch_size=batch_size,
                              device=pick_device(device), progress=progress)  # (N, D)
    frame = pd.DataFrame(feats, columns=[f"{FEATURE_PREFIX}{i}" for i in range(feats.shape[1])])
    frame.insert(0, "image_id", table.frame["image_id"].to_numpy())
    frame["split"] = table.frame["split"].to_numpy()
    for name in names:
        frame[name] = table.frame[name].to_numpy()
    source = json.dumps({"features_of": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint),
                         "table": str(table_path), "table_sha256": file_sha256(table_path)})
    features = LabelTable(frame, names, Path(out).parent, table.name, source)
    write_label_table(features, out)
    return features


def fit_estimator(features_path: str | os.PathLike, out_dir: str | os.PathLike, method: str,
                  options: dict[str, Any], seed: int, val_fraction: float, config: dict[str, Any] | None = None,
                  table_path: str | os.PathLike | None = None) -> Path:
    """Fit ``method``'s estimator on the fit part of a feature table's training split; write ``best.pt``.

    The training rows are split as the network stages split them
    (``retdm.data.split.split_validation(n, val_fraction, seed)``): the estimator is fitted on the
    fit part only, and the validation part is left for ``retdm.thresholds`` to tune on. The
    checkpoint records ``num_fit`` and ``num_val`` as a network run's does.

    Args:
        features_path: a feature label table (``export_features``).
        out_dir: where ``best.pt`` goes.
        method: a registered feature method (one with an ``estimator``).
        options: keyword arguments of the estimator (``TrainConfig.estimator``).
        seed: the run's seed: the estimator's and the validation part's.
        val_fraction: share of the training rows held out as the validation part (``data.val_fraction``).
        config: the resolved training config, recorded for provenance (and read back by
            ``retdm.thresholds`` to carve the same validation part).
        table_path: if given, the label table the features must have been exported from.

    Returns:
        The checkpoint path.

    Raises:
        DataError: the feature table is not one, or was exported from another label table.
    """
    spec = METHODS.get(method)
    if spec.estimator is None:
        raise ConfigError(f"method {method!r} trains a network, not an estimator on features")
    table = read_label_table(features_path)
    if not table.feature_columns:
        raise DataError(f"{features_path}: no {FEATURE_PREFIX}* columns; export the features first")
    if table_path is not None and json.loads(table.source or "{}").get("table_sha256") != file_sha256(table_path):
        raise DataError(f"{features_path}: exported from another label table than {table_path}; "
                        f"re-run the features stage (retdm train --stage features)")
    train = table.split("train")
    fit_rows, val_rows = split_validation(len(train), val_fraction, seed)
    fit = train.take(fit_rows)
    try:
        estimator = spec.estimator_class()(**options)
    except TypeError as err:
        raise ConfigError(f"estimator options {options} of method {method!r}: {err}") from None
    with torch_threads(1):  # small tensors: see torch_threads; also the same bits on every machine
        estimator.fit(fit.frame[fit.feature_columns].to_numpy(np.float32), fit.labels(), seed=seed)
    best = Path(out_dir) / "best.pt"
    save_checkpoint(best, {
        "method": method, "stage": "fit", "estimator": estimator.state_dict(), "options": dict(options),
        "config": config, "seed": seed, "label_names": list(table.label_names), "dataset": table.name,
        "data_path": str(features_path), "data_sha256": file_sha256(features_path), "num_fit": len(fit_rows),
        "num_val": len(val_rows),
        "retdm_version": __version__, "code_revision": code_revision(),
    })
    return best


