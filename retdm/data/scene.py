"""The ``scene`` importer: MIML natural scenes (2,000 images, 5 labels) → a label table.

Two on-disk layouts are read, both with the official images ``original/1.jpg … original/2000.jpg``:

- the official download (``miml-image-data.rar``): a file ``miml data.mat`` anywhere below the root
  (officially ``processed/miml data.mat``) whose variable ``targets`` is 5 × N in {−1, +1}; column
  i holds the labels of image ``i + 1``; rows are desert, mountains, sea, sunset, trees;
- a CSV ``data.csv`` beside ``original/``: ``image,desert,mountains,sea,sunset,trees`` with 0/1.

When both are present the ``.mat`` file wins (recorded in ``retdm.source``). The dataset has no
official split, so a seeded one is drawn. Images stay where they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from retdm.data.registry import DATASETS
from retdm.data.split import assign_split
from retdm.data.table import LabelTable, write_imported
from retdm.errors import ConfigError, DataError

SCENE_LABELS = ("desert", "mountains", "sea", "sunset", "trees")
MAT_NAME = "miml data.mat"
CSV_NAME = "data.csv"
LAYOUTS = ("auto", "mat", "csv")


@DATASETS.register("scene", help="MIML natural scenes (2,000 images, 5 labels): original/*.jpg plus "
                                 "'miml data.mat' or data.csv")
def import_scene(root: str | os.PathLike, out: str | os.PathLike | None = None, *, layout: str = "auto",
                 test_fraction: float = 0.2, seed: int = 0, name: str | None = None) -> LabelTable:
    """Import the MIML scene images below ``root`` into ``out`` (default ``<root>/labels.parquet``).

    Args:
        root: folder holding ``original/`` and ``miml data.mat`` (anywhere below) or ``data.csv``.
        out: where to write the Parquet label table.
        layout: ``"auto"`` (the ``.mat`` file if found, else ``data.csv``), ``"mat"`` or ``"csv"``.
        test_fraction: test share of the seeded split.
        seed: seed of that split.
        name: dataset name; defaults to ``"scene"``.

    Returns:
        The written label table: one row per image, labels in ``SCENE_LABELS`` order.

    Raises:
        ConfigError: ``layout`` is not one of ``LAYOUTS``.
        DataError: a layout file is missing or malformed, or an image it names does not exist.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    root = Path(root)
    out = Path(out) if out is not None else root / "labels.parquet"
    images_dir = root / "original"
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: image folder not found; extract the MIML scene images so that "
                        f"{root} holds original/1.jpg … original/2000.jpg")
    mats = sorted(root.rglob(MAT_NAME)) if layout in ("auto", "mat") else []
    csv_path = root / CSV_NAME
    if len(mats) > 1:
        raise DataError(f"{root}: {len(mats)} files named {MAT_NAME!r} ({[str(m) for m in mats]}); keep one")
    if mats:
        used, kind = mats[0], "mat"
        numbers, labels = _read_mat(mats[0])  # (N,), (N, 5)
    elif layout == "mat":
        raise DataError(f"{root}: no file {MAT_NAME!r} below it; place the official processed/{MAT_NAME} there "
                        f"or pass layout='csv'")
    elif csv_path.is_file():
        used, kind = csv_path, "csv"
        numbers, labels = _read_csv(csv_path)
    else:
        raise DataError(f"{root}: neither {MAT_NAME!r} (anywhere below) nor {CSV_NAME} found; place the official "
                        f"processed/{MAT_NAME} or a CSV image,{','.join(SCENE_LABELS)} there")
    files = [f"{n}.jpg" for n in numbers]
    on_disk = {e.name for e in os.scandir(images_dir) if e.is_file()}
    for n, file in zip(numbers, files):
        if file not in on_disk:
            where = f"{used}, column {n} of 'targets'" if kind == "mat" else f"{used}, row for image {file}"
            raise DataError(f"{where}: image file {images_dir / file} does not exist; restore it from the official "
                            f"download (original/1.jpg … original/{len(numbers)}.jpg)")
    extra = sorted(on_disk.difference(files))
    rel = os.path.relpath(images_dir, out.parent)
    split = assign_split(len(numbers), test_fraction, seed)
    frame = pd.DataFrame({"image_id": [str(n) for n in numbers], "path": [os.path.join(rel, f) for f in files],
                          "split": split})
    source = {
        "importer": "scene", "root": str(root), "layout": kind, "labels_file": str(used),
        "layout_option": layout, "preferred_mat_over_csv": kind == "mat" and csv_path.is_file(),
        "label_order": list(SCENE_LABELS), "images_dir": str(images_dir),
        "split": {"official": False, "test_fraction": test_fraction, "seed": seed},
        "counts": {"dropped": 0, "files_in_original_not_labelled": len(extra),
                   "distinct_label_sets": len({row.tobytes() for row in labels})},
    }
    return write_imported(out, name or "scene", SCENE_LABELS, frame, labels, source)


def _read_mat(path: Path) -> tuple[list[int], np.ndarray]:
    """Image numbers 1..N and their (N, 5) uint8 labels from the official ``targets`` (5 × N, ±1)."""
    import zlib

    import scipy.io  # only this layout needs it
    from scipy.io.matlab import MatReadError

    try:
        mat = scipy.io.loadmat(path, variable_names=["targets"])
    # scipy's reader is not hardened against damaged files: these are what it raises on them (tests/fuzz)
    except (ValueError, OSError, NotImplementedError, MatReadError, TypeError, IndexError, ZeroDivisionError,
            NameError, zlib.error, MemoryError) as err:
        raise DataError(f"{path}: not a readable MATLAB file ({err}); re-extract it from miml-image-data.rar") from err
    if "targets" not in mat:
        raise DataError(f"{path}: no variable 'targets'; expected the official 5 × 2000 matrix in {{-1, +1}}")
    targets = np.asarray(mat["targets"])
    if targets.ndim != 2 or targets.shape[0] != len(SCENE_LABELS) or targets.shape[1] == 0:
        raise DataError(f"{path}: 'targets' has shape {targets.shape}, expected ({len(SCENE_LABELS)}, N) with one "
                        f"column per image (rows {', '.join(SCENE_LABELS)}); use the official file")
    bad = ~np.isin(targets, (-1, 1))
    if bad.any():
        row, col = (int(a[0]) for a in np.nonzero(bad))
        raise DataError(f"{path}: 'targets' row {row + 1} ({SCENE_LABELS[row]}), column {col + 1} (image "
                        f"{col + 1}.jpg) holds {targets[row, col].item()!r}, expected -1 or +1; use the official file")
    labels = (targets.T == 1).astype(np.uint8)  # (N, 5)
    return list(range(1, labels.shape[0] + 1)), labels


def _read_csv(path: Path) -> tuple[list[int], np.ndarray]:
    """Image numbers and their (N, 5) uint8 labels from ``image,desert,…,trees`` with 0/1 cells."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        # strip: pandas ends some messages with a newline, and a DataError is one line
        raise DataError(f"{path}: not a readable CSV ({str(err).strip()})") from err
    header = ["image", *SCENE_LABELS]
    if list(raw.columns) != header:
        raise DataError(f"{path}: header is {','.join(map(str, raw.columns))}, expected {','.join(header)}")
    if len(raw) == 0:
        raise DataError(f"{path}: no rows below the header; add one row per image")
    values = raw[list(SCENE_LABELS)].to_numpy(dtype=object)  # (N, 5) strings
    ok = np.isin(values, ("0", "1"))
    if not ok.all():
        row, col = (int(a[0]) for a in np.nonzero(~ok))
        raise DataError(f"{path}, line {row + 2}, column {SCENE_LABELS[col]!r}: expected 0 or 1, "
                        f"got {values[row, col]!r}")
    numbers = []
    for line, image in enumerate(raw["image"], start=2):
        stem, dot, ext = image.partition(".")
        if not (stem.isascii() and stem.isdigit() and dot and ext == "jpg"):  # not "²", which int() refuses
            raise DataError(f"{path}, line {line}: image {image!r} is not of the form <number>.jpg as in original/")
        numbers.append(int(stem))
    if len(set(numbers)) != len(numbers):
        seen: set[int] = set()
        dup = next(n for n in numbers if n in seen or seen.add(n))
        raise DataError(f"{path}: image {dup}.jpg is listed more than once; keep one row per image")
    return numbers, (values == "1").astype(np.uint8)
