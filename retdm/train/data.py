"""What a training run reads: the fit and validation parts and their label neighbours.

Legend: N items, M labels, K neighbours. The validation part is carved from the training split
with the run's seed; it picks the best epoch and drives the learning-rate plateau. The test
split is never read here. Neighbours are mined among the label sets of the fit part only.

A feature table (``feat_*`` columns, e.g. a MULAN dataset) gives feature datasets instead of
image ones, standardised by the fit part's mean and std (a ``FeatureSpec``, which the run stores
in its checkpoints as it stores an image ``TransformSpec``); it needs a feature backbone (``mlp``),
and an image table an image backbone: :func:`check_backbone`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from retdm.config import ModelConfig
from retdm.data.dataset import FeatureSpec, FeatureTableDataset, LabelTableDataset, image_loader
from retdm.data.split import split_validation
from retdm.data.table import LabelTable
from retdm.data.transforms import TestTransform, TrainTransform, TransformSpec
from retdm.errors import ConfigError, DataError
from retdm.models.backbones import BACKBONES, FEATURE_BACKBONES, is_feature_backbone
from retdm.neighbours import LabelNeighbours, label_neighbours, query_neighbours


@dataclass
class PartNeighbours:
    """Per-item neighbour label sets of one part: (N, K) indices into ``LabelNeighbours.sets``."""

    index: Tensor  # (N, K) int64
    mask: Tensor   # (N, K) bool


@dataclass
class TrainingData:
    """The fit and validation parts, their neighbours, and a test-transformed view of the fit part.

    The parts are image datasets of an image table or feature datasets of a feature table;
    ``preprocess`` is what they apply, stored in the checkpoints.
    """

    fit: LabelTableDataset | FeatureTableDataset
    fit_eval: LabelTableDataset | FeatureTableDataset   # the fit items, test view (filling the bank)
    val: LabelTableDataset | FeatureTableDataset
    neighbours: LabelNeighbours
    fit_nbr: PartNeighbours
    val_nbr: PartNeighbours
    sets: Tensor                  # (S, M) float: distinct fit label sets, the inputs of Φdnn
    preprocess: TransformSpec | FeatureSpec | None = None

    @property
    def num_labels(self) -> int:
        return self.sets.shape[1]



def check_backbone(table: LabelTable, model: ModelConfig) -> None:
    """Refuse a backbone that cannot read ``table``'s items: images need an image backbone, feature
    vectors a feature one (``mlp``). Never swapped silently: the config says what trains.

    Raises:
        ConfigError: naming the dataset, what it holds, the backbone and which to use.
    """
    if table.has_images and is_feature_backbone(model.backbone):
        raise ConfigError(f"dataset {table.name!r} holds images, but model.backbone is {model.backbone!r}, which "
                          f"reads feature vectors; pick an image backbone: {', '.join(BACKBONES.names())}")
    if not table.has_images and not is_feature_backbone(model.backbone):
        raise ConfigError(f"dataset {table.name!r} holds feature vectors ({len(table.feature_columns)} feat_* "
                          f"columns), which image backbone {model.backbone!r} cannot read; set model.backbone to "
                          f"{' or '.join(FEATURE_BACKBONES.names())} (e.g. --set model.backbone=mlp)")


def build_training_data(table: LabelTable, spec: TransformSpec | None, *, val_fraction: float, k: int, seed: int,
                        cache: bool, progress: bool = False, image_cache: str | os.PathLike | None = None
                        ) -> TrainingData:
    """Split the training rows of ``table`` into fit/val parts and mine their neighbours.

    Args:
        table: the whole label table (both splits); only ``split == "train"`` rows are used.
        spec: the image transforms; ``None`` for a feature table, whose standardisation is fitted
            here on the fit part (returned as ``TrainingData.preprocess``).
        val_fraction: share of the training rows held out for validation.
        k: neighbours per label set.
        seed: the run's seed (fixes the validation part).
        cache: decode images once into memory (image tables only).
        progress: show progress bars.
        image_cache: an image cache of the table at ``spec.source_size``, read instead of the files.

    Raises:
        DataError: no training rows, or a label with no positive among them.
    """
    train = table.split("train")
    if len(train) == 0:
        raise DataError(f"dataset {table.name!r} has no rows with split == 'train'; assign a split first")
    absent = [name for name, n in zip(table.label_names, train.labels().sum(axis=0)) if n == 0]
    if absent:  # never learned, and the per-class metrics of such a label are undefined
        raise DataError(f"dataset {table.name!r}: label(s) {absent} have no positive in the train split "
                        f"({len(train)} rows); drop those label columns from the table, or re-split so that "
                        f"train holds a positive of every label")
    fit_rows, val_rows = split_validation(len(train), val_fraction, seed)
    fit_table, val_table = train.take(fit_rows), train.take(val_rows)
    if table.has_images:
        if not isinstance(spec, TransformSpec):
            raise ConfigError(f"dataset {table.name!r} holds images; build_training_data needs their TransformSpec, "
                              f"got {spec!r}")
        fit_load, val_load = (image_loader(part, spec, image_cache) for part in (fit_table, val_table))
        fit = LabelTableDataset(fit_table, TrainTransform(spec), cache=cache, progress=progress, loader=fit_load)
        fit_eval = LabelTableDataset(fit_table, TestTransform(spec), cache=False, loader=fit_load)
        fit_eval.cached = fit.cached  # share the decoded images
        val = LabelTableDataset(val_table, TestTransform(spec), cache=cache, progress=progress, loader=val_load)
    else:
        spec = FeatureSpec.fit(fit_table)  # the fit part only: validation and test rows are never looked at
        fit = FeatureTableDataset(fit_table, spec)
        fit_eval = fit  # no augmentation: the train and test views are the same vectors
        val = FeatureTableDataset(val_table, spec)
    neigh, fit_nbr, val_nbr = part_neighbours(fit_table.labels(), val_table.labels(), k)
    return TrainingData(fit, fit_eval, val, neigh, fit_nbr, val_nbr, torch.from_numpy(neigh.sets).float(), spec)


def part_neighbours(fit_labels: np.ndarray, val_labels: np.ndarray, k: int
                    ) -> tuple[LabelNeighbours, PartNeighbours, PartNeighbours]:
    """The fit part's label-neighbour table (k per label set), each fit item's neighbour sets (its
    own set's), and each validation item's, queried from the fit part's table."""
    neigh = label_neighbours(fit_labels, k)
    fit_nbr = PartNeighbours(torch.from_numpy(neigh.index[neigh.set_of_item]),
                             torch.from_numpy(neigh.mask[neigh.set_of_item]))
    val_index, val_mask = query_neighbours(neigh, val_labels)
    return neigh, fit_nbr, PartNeighbours(torch.from_numpy(val_index), torch.from_numpy(val_mask))
