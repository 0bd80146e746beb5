"""Torch Datasets over a label table: its images, or its feature vectors.

Legend: N items, M labels, F features. Items are ``(x, labels, index)``: a transformed
(3, S, S) float image (:class:`LabelTableDataset`) or a standardised (F,) feature vector
(:class:`FeatureTableDataset`), (M,) float multi-hot labels and the row index (the key of the
way-2 pools and the bank). Both have ``raw(i)`` and ``images(rows)``, so training code never
asks which kind it holds. The preprocessing of either (:class:`~retdm.data.transforms.TransformSpec`
or :class:`FeatureSpec`) is stored in every checkpoint; :func:`eval_dataset` rebuilds the test
view from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from retdm.data.image_cache import ImageCache, cached_loader
from retdm.data.images import read_image
from retdm.data.table import LabelTable
from retdm.data.transforms import TestTransform, TransformSpec
from retdm.errors import DataError
from retdm.log import bar


class LabelTableDataset(Dataset):
    """Images and labels of a label table.

    Args:
        table: the (already split) label table.
        transform: callable on a uint8 (3, H, W) tensor and the row index; see ``retdm.data.transforms``.
        cache: decode every image once, up front, into memory. Also checks that every image
            decodes before training starts.
        progress: show a progress bar while caching.
        loader: row ``i`` → its uint8 image, read instead of the file (the image cache's
            ``cached_loader``); ``cache`` is then ignored.
    """

    def __init__(self, table: LabelTable, transform: Callable[[Tensor, int], Tensor], cache: bool = False,
                 progress: bool = False, loader: Callable[[int], Tensor] | None = None) -> None:
        if not table.has_images:
            raise DataError(f"dataset {table.name!r} holds feature vectors, not image paths; read it with "
                            f"FeatureTableDataset and train it with model.backbone=mlp")
        if len(table) == 0:
            raise DataError(f"dataset {table.name!r}: this part of the label table is empty; add images or change the split")
        self.table = table
        self.transform = transform
        self.paths = [table.root / p for p in table.frame["path"]]
        self.labels = torch.from_numpy(table.labels().astype(np.float32))  # (N, M)
        missing = [i for i, p in enumerate(self.paths) if not p.is_file()]
        if missing:
            i = missing[0]
            raise DataError(
                f"{len(missing)} image file(s) of dataset {table.name!r} are missing, first {self.paths[i]} "
                f"(image_id {table.frame['image_id'].iloc[i]!r}); restore them or drop their rows"
            )
        self.cached: list[Tensor] | None = None
        self.loader = loader
        if cache and loader is None:
            self.cached = [self._load(i) for i in bar(range(len(self.paths)), show=progress, desc="decode images")]

    def _load(self, i: int) -> Tensor:
        return read_image(self.paths[i], f"image_id {self.table.frame['image_id'].iloc[i]!r}: ")

    def raw(self, i: int) -> Tensor:
        """The decoded, untransformed uint8 image of row ``i``."""
        if self.loader is not None:
            return self.loader(i)
        return self.cached[i] if self.cached is not None else self._load(i)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int]:
        return self.transform(self.raw(i), i), self.labels[i], i

    def images(self, rows: Tensor) -> Tensor:
        """Transformed images of many rows at once, stacked: (len(rows), 3, S, S)."""
        return torch.stack([self.transform(self.raw(int(i)), int(i)) for i in rows.reshape(-1)])


@dataclass(frozen=True)
class FeatureSpec:
    """Standardisation of a feature table, x ↦ (x − mean) / std per ``feat_*`` column.

    Fitted on the fit part of the training split only (:meth:`fit`) and stored in every
    checkpoint, as :class:`~retdm.data.transforms.TransformSpec` is for images, so evaluation
    applies exactly what training did. A constant column (std 0) gets std 1: it is only centred.

    Attributes:
        columns: the ``feat_*`` column names, in order (F of them).
        mean: per-column mean, F floats.
        std: per-column standard deviation (population, ddof 0), F floats.
        kind: tells this spec apart from an image ``TransformSpec`` in a checkpoint.
    """

    columns: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kind: str = "standardise"

    @property
    def in_features(self) -> int:
        return len(self.columns)

    @classmethod
    def fit(cls, table: LabelTable) -> "FeatureSpec":
        """Mean and std of ``table``'s feature columns (float64 sums, so the result is order-independent)."""
        values = table.frame[table.feature_columns].to_numpy(np.float64)  # (N, F)
        std = values.std(axis=0)
        std[std <= 1e-12] = 1.0
        return cls(tuple(table.feature_columns), tuple(values.mean(axis=0).tolist()), tuple(std.tolist()))

    def apply(self, values: np.ndarray) -> np.ndarray:
        """(N, F) raw features → (N, F) float32 standardised features."""
        return ((values.astype(np.float64) - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "columns": list(self.columns), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureSpec":
        return cls(tuple(data["columns"]), tuple(data["mean"]), tuple(data["std"]), data["kind"])


def preprocessing_from_dict(data: dict[str, Any]) -> TransformSpec | FeatureSpec:
    """The preprocessing a checkpoint records: a :class:`FeatureSpec` or an image ``TransformSpec``."""
    if data.get("kind") == FeatureSpec.kind:
        return FeatureSpec.from_dict(data)
    return TransformSpec.from_dict(data)


class FeatureTableDataset(Dataset):
    """Standardised feature vectors and labels of a feature label table.

    Items are ``(x, labels, index)`` with x the (F,) standardised features. There is no data
    augmentation: training and evaluation see the same vectors.

    Args:
        table: the (already split) feature label table.
        spec: the standardisation (fitted on the fit part; read from the checkpoint at evaluation).

    Raises:
        DataError: the table holds images, is empty, or its feature columns differ from ``spec``'s.
    """

    def __init__(self, table: LabelTable, spec: FeatureSpec) -> None:
        if table.has_images:
            raise DataError(f"dataset {table.name!r} holds image paths, not feature vectors; use an image backbone "
                            f"(a checkpoint trained on images) for it")
        if len(table) == 0:
            raise DataError(f"dataset {table.name!r}: this part of the label table is empty; change the split")
        if tuple(table.feature_columns) != spec.columns:
            raise DataError(f"dataset {table.name!r} has {len(table.feature_columns)} feature columns, but the model "
                            f"was trained on {spec.in_features}; evaluate it on the table it was trained on")
        self.table = table
        self.spec = spec
        self.raw_features = torch.from_numpy(np.array(table.frame[list(spec.columns)].to_numpy(np.float32)))  # (N, F)
        self.features = torch.from_numpy(spec.apply(self.raw_features.numpy()))  # (N, F)
        self.labels = torch.from_numpy(table.labels().astype(np.float32))  # (N, M)

    def raw(self, i: int) -> Tensor:
        """The unstandardised (F,) features of row ``i``."""
        return self.raw_features[i]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int]:
        return self.features[i], self.labels[i], i

    def images(self, rows: Tensor) -> Tensor:
        """Standardised features of many rows at once (the way-2 inputs): (len(rows), F)."""
        return self.features[rows.reshape(-1).cpu()]


def eval_dataset(table: LabelTable, spec: TransformSpec | FeatureSpec,
                 image_cache: str | os.PathLike | None = None) -> LabelTableDataset | FeatureTableDataset:
    """The test-time view of ``table`` under a checkpoint's preprocessing ``spec``.

    ``image_cache``, if given and ``spec`` has a ``source_size``, is read instead of the image files.

    Raises:
        DataError: the table's kind (images or features) does not match ``spec``'s.
    """
    if isinstance(spec, FeatureSpec):
        return FeatureTableDataset(table, spec)
    return LabelTableDataset(table, TestTransform(spec), loader=image_loader(table, spec, image_cache))


def image_loader(table: LabelTable, spec: TransformSpec, image_cache: str | os.PathLike | None
                 ) -> Callable[[int], Tensor] | None:
    """Rows of ``table`` → images from ``image_cache`` at ``spec.source_size``; ``None`` when the spec
    resizes no source or no cache is given (the files are decoded).

    Raises:
        DataError: the cache is of another size or does not hold the table's images (rebuild it).
    """
    if image_cache is None or not spec.source_size:
        return None

    cache = ImageCache(image_cache, expect_size=spec.source_size, expect_table=table)
    return cached_loader(cache, table.frame["image_id"])
