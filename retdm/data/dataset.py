"""A torch Dataset over a label table.

Legend: M labels. Items are ``(image, labels, index)``: a transformed (3, S, S) float image,
(M,) float multi-hot labels and the row index (the key of the way-2 pools and the bank).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from retdm.data.table import LabelTable
from retdm.errors import DataError


def read_image(path: Path, where: str = "") -> Tensor:
    """Decode an image file to a uint8 (3, H, W) RGB tensor.

    Raises:
        DataError: naming the file (and ``where``, e.g. the table row) when it is missing or
            cannot be decoded.
    """
    if not path.is_file():
        raise DataError(f"{where}image file {path} does not exist; fix the path column or restore the file")
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))  # (H, W, 3) uint8
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{where}image file {path} cannot be decoded ({err}); replace or remove it") from err
    return torch.from_numpy(array.copy()).permute(2, 0, 1)  # (3, H, W)


class LabelTableDataset(Dataset):
    """Images and labels of a label table.

    Args:
        table: the (already split) label table.
        transform: callable on a uint8 (3, H, W) tensor; see ``retdm.data.transforms``.
        cache: decode every image once, up front, into memory. Also checks that every image
            decodes before training starts.
        progress: show a progress bar while caching.
    """

    def __init__(self, table: LabelTable, transform: Callable[[Tensor], Tensor], cache: bool = False,
                 progress: bool = False) -> None:
        if not table.has_images:
            raise DataError(f"dataset {table.name!r} holds feature vectors, not image paths; use a feature model")
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
        if cache:
            self.cached = [self._load(i) for i in tqdm(range(len(self.paths)), desc="decode images",
                                                       disable=not progress, leave=False)]

    def _load(self, i: int) -> Tensor:
        return read_image(self.paths[i], f"image_id {self.table.frame['image_id'].iloc[i]!r}: ")

    def raw(self, i: int) -> Tensor:
        """The decoded, untransformed uint8 image of row ``i``."""
        return self.cached[i] if self.cached is not None else self._load(i)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int]:
        return self.transform(self.raw(i)), self.labels[i], i

    def images(self, rows: Tensor) -> Tensor:
        """Transformed images of many rows at once, stacked: (len(rows), 3, S, S)."""
        return torch.stack([self.transform(self.raw(int(i))) for i in rows.reshape(-1)])
