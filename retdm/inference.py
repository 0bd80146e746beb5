"""Reading a trained run: find its final checkpoint, load it, and score images or feature rows.

This is the floor that evaluation, threshold tuning, the report, ``retdm predict`` and the sweep's
reading side stand on; none of them imports ``retdm.train``. Networks score under their own
checkpoint's preprocessing (image transforms, or the standardisation of a feature table); a feature
method's ``fit`` checkpoint holds an estimator, which scores the rows of the feature table it was
fitted on.

Legend: N items, D embedding width, M labels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from retdm import distributed
from retdm.checkpoint import load_checkpoint, load_model
from retdm.data.dataset import FeatureSpec, FeatureTableDataset, LabelTableDataset, eval_dataset
from retdm.data.table import LabelTable, read_label_table
from retdm.data.transforms import TransformSpec
from retdm.errors import DataError
from retdm.hardware import pick_device, torch_threads
from retdm.log import bar
from retdm.methods import METHODS, stage_dir
from retdm.models.retdm_net import RETDMNet
from retdm.provenance import file_sha256


def final_checkpoint(out_dir: str | os.PathLike, method: str) -> Path:
    """The checkpoint a method is evaluated from: ``best.pt`` of its last stage."""
    return stage_dir(Path(out_dir), method, METHODS.get(method).final_stage) / "best.pt"


@torch.no_grad()
def forward_images(model: RETDMNet, dataset: LabelTableDataset | FeatureTableDataset, *, batch_size: int = 128,
                   device: torch.device | None = None, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Φcnn(image) and σ(Φcls(Φcnn(image))) for every item (image or feature vector), in dataset order.

    Under torchrun each process scores a contiguous, disjoint share of the items and every process
    gets all of them back in dataset order (no padded or repeated item).

    Returns:
        (N, D) float32 image embeddings and (N, M) float32 scores.
    """
    device = device or torch.device("cpu")
    model.eval().to(device)
    world = distributed.world()
    if len(dataset) < world.size:
        raise DataError(f"{len(dataset)} items cannot be shared among {world.size} processes; score them in one")
    embeddings, scores = [], []
    loader = DataLoader(Subset(dataset, distributed.shard(len(dataset), world)), batch_size=batch_size, shuffle=False)
    for images, _, _ in bar(loader, show=progress and world.main, desc="predict"):
        f_img, logits = model(images.to(device))  # (B, D), (B, M)
        embeddings.append(f_img.float())
        scores.append(torch.sigmoid(logits.float()))
    return tuple(distributed.gather_shards(torch.cat(x)).cpu().numpy() for x in (embeddings, scores))


def fitted_estimator(checkpoint: str | os.PathLike, record: dict) -> tuple[Any, LabelTable]:
    """The estimator of a ``fit`` checkpoint's ``record`` and the whole feature table it was fitted on.

    Raises:
        DataError: the feature table is missing or changed since the fit.
    """
    features = record["data_path"]
    if not Path(features).is_file() or file_sha256(features) != record["data_sha256"]:
        raise DataError(f"{features}: missing or changed since {checkpoint} was fitted on it; "
                        f"re-run the features and fit stages")
    estimator = METHODS.get(record["method"]).estimator_class().from_state(record["estimator"])
    return estimator, read_label_table(features)


def estimator_predict(estimator: Any, part: LabelTable) -> np.ndarray:
    """(N, M) scores of an estimator on the feature rows of ``part``, on one thread (small tensors:
    see torch_threads; also the same bits on every machine)."""
    with torch_threads(1):
        return estimator.predict_scores(part.frame[part.feature_columns].to_numpy(np.float32))


def estimator_scores(checkpoint: str | os.PathLike, split: str = "test") -> tuple[np.ndarray, LabelTable, dict]:
    """Scores of a fitted estimator on ``split`` of the feature table it was fitted on.

    Returns:
        (N, M) float32 scores, that part of the feature table, and the checkpoint record.

    Raises:
        DataError: the feature table changed since the fit.
    """
    record = load_checkpoint(checkpoint)
    estimator, features = fitted_estimator(checkpoint, record)
    part = features.split(split)
    return estimator_predict(estimator, part), part, record


def predict_scores(model: RETDMNet, dataset: LabelTableDataset | FeatureTableDataset, **kwargs: Any) -> np.ndarray:
    """σ(Φcls(Φcnn(x))) for every item (image or feature vector): (N, M) float32 scores in dataset order."""
    return forward_images(model, dataset, **kwargs)[1]


def check_trained_labels(table: LabelTable, names: tuple[str, ...], table_path: str | os.PathLike,
                         checkpoint: str | os.PathLike) -> None:
    """Refuse a table whose labels differ from the ``names`` a checkpoint was trained on.

    Raises:
        DataError: naming both label lists.
    """
    if table.label_names != names:
        raise DataError(f"{table_path}: labels {list(table.label_names)} differ from the {len(names)} labels "
                        f"{list(names)} that {checkpoint} was trained on; evaluate on the same dataset")


def score_table(model: RETDMNet, spec: TransformSpec | FeatureSpec, part: LabelTable, *, batch_size: int = 128,
                device: str = "auto", progress: bool = False, image_cache: str | os.PathLike | None = None
                ) -> np.ndarray:
    """(N, M) float32 scores of the rows of ``part`` under a checkpoint's own preprocessing ``spec``
    (``retdm.checkpoint.load_model``), in row order."""
    dataset = eval_dataset(part, spec, image_cache)
    return predict_scores(model, dataset, batch_size=batch_size, device=pick_device(device), progress=progress)


def checkpoint_scores(checkpoint: str | os.PathLike, table_path: str | os.PathLike, *, split: str = "test",
                      method: str | None = None, batch_size: int = 128, device: str = "auto", progress: bool = False,
                      image_cache: str | os.PathLike | None = None) -> tuple[np.ndarray, LabelTable, dict[str, Any]]:
    """Scores of any method's checkpoint on ``split`` of the table at ``table_path``.

    A network (``pretrain``/``embed``/``finetune`` checkpoint, image or feature backbone) scores the
    rows under its own preprocessing. A feature method's ``fit`` checkpoint holds an estimator, not
    a network: its estimator scores the same rows of the feature table it was fitted on, which must
    hold exactly the table's rows of ``split``.

    Args:
        checkpoint: a ``best.pt``.
        table_path: the label table to score.
        split: ``test`` or ``train``.
        method: the checkpoint's method when the caller knows it; otherwise the checkpoint is read
            once to tell whether it holds an estimator (and read again to build a network).
        batch_size, device, progress, image_cache: as :func:`score_table` (networks only).

    Returns:
        ((N, M) float32 scores, the ``split`` part of the label table, the checkpoint record).

    Raises:
        DataError: the table's labels differ from those the model was trained on, or (a feature
            method) the feature table's rows of ``split`` are not the table's.
    """
    method = method or load_checkpoint(checkpoint)["method"]
    table = read_label_table(table_path)
    part = table.split(split)
    if METHODS.get(method).estimator is None:
        model, spec, names, record = load_model(checkpoint)
        check_trained_labels(table, names, table_path, checkpoint)
        scores = score_table(model, spec, part, batch_size=batch_size, device=device, progress=progress,
                             image_cache=image_cache)
        return scores, part, record
    scores, features, record = estimator_scores(checkpoint, split)
    check_trained_labels(table, tuple(record["label_names"]), table_path, checkpoint)
    if not np.array_equal(features.frame["image_id"].to_numpy(), part.frame["image_id"].to_numpy()):
        raise DataError(f"{record['data_path']}: its {split} rows differ from those of {table_path}; "
                        f"re-run the features and fit stages on that table")
    return scores, part, record
