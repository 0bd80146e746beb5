"""The ``coco`` importer: MS-COCO 2014 (80 categories) → a label table with the official split.

Official layout below the root::

    train2014/COCO_train2014_000000000009.jpg …
    val2014/COCO_val2014_000000000042.jpg …
    annotations/instances_train2014.json
    annotations/instances_val2014.json

An image carries a category when at least one of its instance annotations (crowd ones included)
has that category. Columns are the category names, ordered by ascending category id. train2014
becomes ``train`` and val2014 ``test``. Images without any annotation are dropped unless
``keep_unannotated``; the counts per split go into ``retdm.source``. Images stay where they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from retdm.data.registry import DATASETS
from retdm.data.table import LabelTable, check_label_names, write_imported
from retdm.errors import DataError

PARTS = (("train2014", "train"), ("val2014", "test"))


@DATASETS.register("coco", help="MS-COCO 2014 (123k images, 80 categories, official train/val split): "
                                "train2014/, val2014/ and annotations/instances_*2014.json")
def import_coco(root: str | os.PathLike, out: str | os.PathLike | None = None, *, keep_unannotated: bool = False,
                test_fraction: float = 0.2, seed: int = 0, name: str | None = None) -> LabelTable:
    """Import MS-COCO 2014 below ``root`` into ``out`` (default ``<root>/labels.parquet``).

    Args:
        root: folder holding ``train2014/``, ``val2014/`` and ``annotations/``.
        out: where to write the Parquet label table.
        keep_unannotated: keep images with no instance annotation (all-zero labels); dropped by default.
        test_fraction: unused (COCO has an official split); accepted so every importer takes it.
        seed: unused, as ``test_fraction``.
        name: dataset name; defaults to ``"coco"``.

    Returns:
        The written label table: train2014 rows then val2014 rows, each in the json's image order.

    Raises:
        DataError: an annotation file or image folder is missing or malformed, the two files disagree
            on the categories, an annotation names an unknown image or category, or an image is missing.
    """
    root = Path(root)
    out = Path(out) if out is not None else root / "labels.parquet"
    parts, categories, counts, files = [], None, {}, {}
    for folder, split in PARTS:
        ann_path = root / "annotations" / f"instances_{folder}.json"
        if not ann_path.is_file():
            raise DataError(f"{ann_path}: annotation file not found; extract annotations_trainval2014.zip into {root} "
                            f"so that annotations/instances_{folder}.json is there")
        images_dir = root / folder
        if not images_dir.is_dir():
            raise DataError(f"{images_dir}: image folder not found; extract {folder}.zip into {root}")
        cats, names, labels = _read_instances(ann_path)
        if categories is None:
            categories = cats
        elif cats != categories:
            raise DataError(f"{ann_path}: its categories differ from instances_{PARTS[0][0]}.json's; use the official "
                            f"2014 annotation files")
        on_disk = {e.name for e in os.scandir(images_dir)}
        missing = [n for n in names if n not in on_disk]
        if missing:
            raise DataError(f"{ann_path}: {len(missing)} listed image(s) missing from {images_dir}, first "
                            f"{images_dir / missing[0]}; re-extract {folder}.zip")
        annotated = labels.any(axis=1)
        keep = annotated | keep_unannotated
        rel = os.path.relpath(images_dir, out.parent)
        kept_names = [n for n, k in zip(names, keep) if k]
        frame = pd.DataFrame({"image_id": [Path(n).stem for n in kept_names],
                              "path": [os.path.join(rel, n) for n in kept_names], "split": split})
        parts.append((frame, labels[keep]))
        counts[split] = {"folder": folder, "images_listed": len(names), "unannotated": int((~annotated).sum()),
                         "dropped_unannotated": int((~keep).sum()), "images": int(keep.sum())}
        files[split] = {"annotations": str(ann_path), "images_dir": str(images_dir)}
    label_names = [n for _, n in categories]
    labels = np.concatenate([lab for _, lab in parts])  # (N, 80)
    frame = pd.concat([f for f, _ in parts], ignore_index=True)
    if len(frame) == 0:
        raise DataError(f"{root}: no annotated image in either split; check the annotation files")
    source = {
        "importer": "coco", "root": str(root), "files": files, "keep_unannotated": keep_unannotated,
        "category_ids": {str(i): n for i, n in categories}, "label_order": label_names,
        "label_order_rule": "category id ascending", "crowd_annotations": "counted as labels",
        "image_id": "file_name stem", "split": {"official": True, "train": "train2014", "test": "val2014"},
        "counts": counts,
    }
    return write_imported(out, name or "coco", tuple(label_names), frame, labels, source)


def _read_instances(path: Path) -> tuple[list[tuple[int, str]], list[str], np.ndarray]:
    """Categories (id, name) by ascending id, image file names, and their (N, M) uint8 labels."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}); re-extract annotations_trainval2014.zip") from err
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or k not in data]
    if missing:
        raise DataError(f"{path}: keys {missing} missing; expected a COCO instances file with images, annotations "
                        f"and categories")
    try:
        categories = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
        image_ids = np.array([int(im["id"]) for im in data["images"]], dtype=np.int64)
        names = [str(im["file_name"]) for im in data["images"]]
        ann_image = np.array([a["image_id"] for a in data["annotations"]], dtype=np.int64)
        ann_cat = np.array([a["category_id"] for a in data["annotations"]], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: an image, annotation or category entry lacks a field or has a bad value ({err!r}); "
                        f"use the official COCO instances file") from err
    if not categories:
        raise DataError(f"{path}: no categories; use the official COCO instances file")
    cat_ids = np.array([i for i, _ in categories], dtype=np.int64)
    if len(np.unique(cat_ids)) != len(cat_ids) or len({n for _, n in categories}) != len(categories):
        raise DataError(f"{path}: category ids or names repeat; use the official COCO instances file")
    check_label_names(tuple(n for _, n in categories), str(path))
    order = np.argsort(image_ids, kind="stable")
    sorted_ids = image_ids[order]
    if len(np.unique(sorted_ids)) != len(sorted_ids):
        raise DataError(f"{path}: image ids repeat in 'images'; use the official COCO instances file")
    rows = _lookup(sorted_ids, ann_image, path, "image_id", "images")
    cols = _lookup(cat_ids, ann_cat, path, "category_id", "categories")
    labels = np.zeros((len(image_ids), len(cat_ids)), dtype=np.uint8)  # (N, M)
    labels[order[rows], cols] = 1
    return categories, names, labels


def _lookup(keys: np.ndarray, values: np.ndarray, path: Path, field: str, where: str) -> np.ndarray:
    """Positions of ``values`` in the sorted ``keys``; an absent value raises naming the annotation."""
    pos = np.searchsorted(keys, values)
    pos_clipped = np.minimum(pos, max(len(keys) - 1, 0))
    bad = (pos >= len(keys)) | (keys[pos_clipped] != values) if len(keys) else np.ones(len(values), dtype=bool)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: annotations[{k}] has {field} {int(values[k])}, which is not in '{where}'; use the "
                        f"official COCO instances file")
    return pos
