"""The ``folder`` importer: a directory of images plus a CSV of labels → a label table.

Two CSV layouts are accepted:

- wide: ``image,label_a,label_b,…`` with 0/1 in every label column;
- list: ``image,labels`` where ``labels`` holds label names joined by ``separator``
  (default a space; an empty cell means no label). Label order is sorted by name.

An optional ``split`` column (``train``/``test``) is kept; otherwise a seeded 80/20 split is drawn.
Paths in the table are relative to the directory of the written table.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from retdm.data.images import find_unreadable_images, unreadable_message
from retdm.data.registry import DATASETS
from retdm.data.split import assign_split
from retdm.data.table import LabelTable, check_label_names, write_imported
from retdm.errors import ConfigError, DataError


def _read_csv(csv_path: Path) -> pd.DataFrame:
    """The label CSV as strings, its header checked: every column named once, an ``image`` column,
    at least one row (``DataError`` naming the file and the fix otherwise)."""
    try:  # the header as a row: pandas would rename a repeated column ("image.1") or a blank one ("Unnamed: 2")
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False, header=None)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        # strip: pandas ends some messages with a newline, and a DataError is one line
        raise DataError(f"{csv_path}: not a readable CSV ({str(err).strip()})") from err
    header = list(raw.iloc[0])
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DataError(f"{csv_path}: column(s) {repeated} appear more than once in the header; give every column "
                        f"its own name (image, an optional split, one column per label)")
    blank = [i + 1 for i, c in enumerate(header) if not c.strip()]
    if blank:
        raise DataError(f"{csv_path}: header column(s) {blank} (counting from 1) have no name; name every column")
    raw = raw.iloc[1:].set_axis(header, axis=1).reset_index(drop=True)
    if "image" not in raw.columns:
        raise DataError(f"{csv_path}: no 'image' column; the header must start image,<labels…> (got {list(raw.columns)})")
    if len(raw) == 0:
        raise DataError(f"{csv_path}: the dataset is empty (no rows below the header); add one row per image")
    return raw


@DATASETS.register("folder", help="your own images: a folder plus a CSV (image,label_a,… as 0/1, or image,labels)")
def import_folder(images_dir: str | os.PathLike, csv_path: str | os.PathLike, out: str | os.PathLike | None = None, *,
                  separator: str = " ", test_fraction: float = 0.2, seed: int = 0, name: str | None = None,
                  workers: int | None = None) -> LabelTable:
    """Import a folder of images and its label CSV into ``out`` (default ``<images_dir>/labels.parquet``).

    Args:
        images_dir: directory the CSV's ``image`` column is relative to.
        csv_path: the label CSV (wide or list layout, see the module docstring).
        out: where to write the Parquet label table.
        separator: joins label names in the list layout.
        test_fraction: test share of the seeded split when the CSV has no ``split`` column.
        seed: seed of that split.
        name: dataset name; defaults to the folder's name.
        workers: threads that decode every image to check it (``retdm.data.images.decode_workers``).

    Returns:
        The written label table.

    Raises:
        ConfigError: ``separator`` is empty.
        DataError: naming the CSV line and column of the first bad value, the missing image, or
            every image that does not decode (truncated, corrupt, not an image).
    """
    if not separator:
        raise ConfigError("separator must be a non-empty string (e.g. ' ' or '|') that joins label names in a "
                          "'labels' column")
    images_dir, csv_path = Path(images_dir), Path(csv_path)
    out = Path(out) if out is not None else images_dir / "labels.parquet"
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: image folder not found; pass the directory that holds your images")
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: label CSV not found; give a CSV with an 'image' column and labels")
    raw = _read_csv(csv_path)
    label_cols = [c for c in raw.columns if c not in ("image", "split")]
    if label_cols == ["labels"]:
        label_names, labels = _from_list(raw["labels"], separator, csv_path)
        layout = "list"
    else:
        label_names, labels = _from_wide(raw, label_cols, csv_path)
        layout = "wide"
    check_label_names(tuple(label_names), str(csv_path))
    repeated = raw["image"].duplicated(keep=False).to_numpy()
    if repeated.any():
        first = raw["image"].iloc[int(np.flatnonzero(repeated)[0])]
        lines = (np.flatnonzero(raw["image"].to_numpy() == first) + 2).tolist()
        raise DataError(f"{csv_path}, lines {lines}: image {first!r} is listed more than once; keep one row per image")
    for line, image in enumerate(raw["image"], start=2):
        if not (images_dir / image).is_file():
            raise DataError(f"{csv_path}, line {line}: image file {str(images_dir / image)!r} does not exist; fix the "
                            "name or add the file")
    bad = find_unreadable_images(images_dir, raw["image"], workers)
    if bad:  # a truncated or corrupt file would otherwise fail a training, or the features stage, much later
        raise DataError(f"{csv_path}: {unreadable_message(bad, len(raw))} (under {images_dir}); replace those files, "
                        f"or remove them and their CSV lines")
    if "split" in raw.columns:
        split = raw["split"].to_numpy(dtype=object)
        bad = ~np.isin(split, ("train", "test"))
        if bad.any():
            line = int(np.flatnonzero(bad)[0]) + 2
            raise DataError(f"{csv_path}, line {line}: column 'split' must be train or test, got {split[line - 2]!r}")
    else:
        split = assign_split(len(raw), test_fraction, seed)
    rel = [os.path.relpath(images_dir / image, out.parent) for image in raw["image"]]
    frame = pd.DataFrame({"image_id": raw["image"].to_numpy(), "path": rel, "split": split})
    source = {"importer": "folder", "csv": str(csv_path), "layout": layout, "separator": separator,
              "test_fraction": test_fraction, "seed": seed, "split_from_csv": "split" in raw.columns}
    return write_imported(out, name or images_dir.name, tuple(label_names), frame, labels, source)


def _from_wide(raw: pd.DataFrame, label_cols: list[str], csv_path: Path) -> tuple[list[str], np.ndarray]:
    if not label_cols:
        raise DataError(f"{csv_path}: no label columns; add one 0/1 column per label, or a 'labels' column")
    values = raw[label_cols].to_numpy(dtype=object)  # (N, M) strings
    ok = np.isin(values, ("0", "1"))
    if not ok.all():
        row, col = (int(a[0]) for a in np.nonzero(~ok))
        raise DataError(
            f"{csv_path}, line {row + 2}, column {label_cols[col]!r}: expected 0 or 1, got {values[row, col]!r}; "
            "label columns hold 0/1 only (for a list of label names use a single 'labels' column)"
        )
    return label_cols, (values == "1").astype(np.uint8)


def _from_list(cells: pd.Series, separator: str, csv_path: Path) -> tuple[list[str], np.ndarray]:
    sets = [[t for t in cell.split(separator) if t.strip()] if cell.strip() else [] for cell in cells]
    names = sorted({t.strip() for s in sets for t in s})
    if not names:
        raise DataError(f"{csv_path}: the 'labels' column names no label at all; list label names separated by "
                        f"{separator!r}")
    col = {n: j for j, n in enumerate(names)}
    labels = np.zeros((len(sets), len(names)), dtype=np.uint8)  # (N, M)
    for i, s in enumerate(sets):
        labels[i, [col[t.strip()] for t in s]] = 1
    return names, labels
