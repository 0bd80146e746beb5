"""The ``mirflickr`` importer: MIRFLICKR-25000 → a label table with its 24 "potential" concepts.

Official layout below the root::

    mirflickr/im1.jpg … im25000.jpg
    mirflickr25k_annotations_v080/<concept>.txt      # 1-based image numbers, one per line
    mirflickr25k_annotations_v080/<concept>_r1.txt   # the stricter "relevant" annotations
    mirflickr25k_annotations_v080/README.txt

Labels are the potential concepts (the files without ``_r1``), in sorted order; the ``_r1`` files
are ignored and listed in ``retdm.source``. The dataset has no official split, so a seeded one
is drawn. Images stay where they are.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from retdm.data.registry import DATASETS
from retdm.data.split import assign_split
from retdm.data.table import LabelTable, check_label_names, read_text, write_imported
from retdm.errors import DataError

IMAGES = "mirflickr"
ANNOTATIONS = "mirflickr25k_annotations_v080"
_IMAGE = re.compile(r"im([0-9]+)\.jpg")


@DATASETS.register("mirflickr", help="MIRFLICKR-25000 (25,000 images, 24 potential concepts): mirflickr/im*.jpg "
                                     "plus mirflickr25k_annotations_v080/")
def import_mirflickr(root: str | os.PathLike, out: str | os.PathLike | None = None, *,
                     drop_unlabelled: bool = False, test_fraction: float = 0.2, seed: int = 0,
                     name: str | None = None) -> LabelTable:
    """Import MIRFLICKR-25000 below ``root`` into ``out`` (default ``<root>/labels.parquet``).

    Args:
        root: folder holding ``mirflickr/`` and ``mirflickr25k_annotations_v080/``.
        out: where to write the Parquet label table.
        drop_unlabelled: drop images that carry none of the potential concepts (counted either way).
        test_fraction: test share of the seeded split.
        seed: seed of that split.
        name: dataset name; defaults to ``"mirflickr"``.

    Returns:
        The written label table: one row per ``im<k>.jpg`` kept, ordered by k, labels sorted by name.

    Raises:
        DataError: a folder is missing, no concept file is found, an annotation line is not an image
            number, or it names an image that is not in ``mirflickr/``.
    """
    root = Path(root)
    out = Path(out) if out is not None else root / "labels.parquet"
    images_dir, ann_dir = root / IMAGES, root / ANNOTATIONS
    for folder, what in ((images_dir, "the images im1.jpg … im25000.jpg (mirflickr25k.zip)"),
                         (ann_dir, "the annotations (mirflickr25k_annotations_v080.zip)")):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found; extract {what} into {root}")
    numbers = sorted(int(m.group(1)) for e in os.scandir(images_dir) if (m := _IMAGE.fullmatch(e.name)))
    if not numbers:
        raise DataError(f"{images_dir}: no image named im<number>.jpg; extract mirflickr25k.zip into {root}")
    row_of = np.full(numbers[-1] + 1, -1, dtype=np.int64)  # image number → row
    row_of[numbers] = np.arange(len(numbers))
    texts = sorted(p.name for p in ann_dir.glob("*.txt"))
    concepts = [t[:-4] for t in texts if t != "README.txt" and not t.endswith("_r1.txt")]
    relevant = [t[:-4] for t in texts if t.endswith("_r1.txt")]
    if not concepts:
        raise DataError(f"{ann_dir}: no concept file <concept>.txt; extract mirflickr25k_annotations_v080.zip there")
    check_label_names(tuple(concepts), str(ann_dir))
    labels = np.zeros((len(numbers), len(concepts)), dtype=np.uint8)  # (N, M)
    for j, concept in enumerate(concepts):
        rows = _read_numbers(ann_dir / f"{concept}.txt", row_of, images_dir)
        labels[rows, j] = 1
    per_image = labels.sum(axis=1)
    unlabelled = per_image == 0
    keep = ~unlabelled if drop_unlabelled else np.ones(len(numbers), dtype=bool)
    if not keep.any():
        raise DataError(f"{ann_dir}: no image carries a potential concept, so nothing is left with "
                        f"drop_unlabelled=True; check the annotation files")
    kept = np.asarray(numbers)[keep]
    labels = labels[keep]
    rel = os.path.relpath(images_dir, out.parent)
    split = assign_split(len(kept), test_fraction, seed)
    frame = pd.DataFrame({"image_id": [f"im{n}" for n in kept], "path": [os.path.join(rel, f"im{n}.jpg") for n in kept],
                          "split": split})
    source = {
        "importer": "mirflickr", "root": str(root), "images_dir": str(images_dir), "annotations_dir": str(ann_dir),
        "label_order": concepts, "concept_files": [f"{c}.txt" for c in concepts],
        "concepts": "potential (files without _r1), sorted by name", "relevant_ignored": relevant,
        "drop_unlabelled": drop_unlabelled,
        "split": {"official": False, "test_fraction": test_fraction, "seed": seed},
        "counts": {
            "images_found": len(numbers), "image_numbers": [numbers[0], numbers[-1]],
            "numbers_missing_in_range": numbers[-1] - numbers[0] + 1 - len(numbers),
            "unlabelled": int(unlabelled.sum()), "dropped_unlabelled": int((~keep).sum()),
        },
    }
    return write_imported(out, name or "mirflickr", tuple(concepts), frame, labels, source)


def _read_numbers(path: Path, row_of: np.ndarray, images_dir: Path) -> np.ndarray:
    """Rows of the images one concept file lists (1-based numbers, one per line; blank lines skipped)."""
    lines = read_text(path, "re-extract mirflickr25k_annotations_v080.zip").splitlines()
    rows = []
    for line_no, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        if not (text.isascii() and text.isdigit()):  # "²".isdigit() holds, but int("²") fails
            raise DataError(f"{path}, line {line_no}: expected an image number, got {text!r}")
        n = int(text)
        if n >= len(row_of) or row_of[n] < 0:
            raise DataError(f"{path}, line {line_no}: image {n} has no file {images_dir / f'im{n}.jpg'}; restore the "
                            f"image from mirflickr25k.zip or remove the line")
        rows.append(row_of[n])
    return np.asarray(rows, dtype=np.int64)
