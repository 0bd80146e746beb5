"""The ``voc2007`` importer: PASCAL VOC 2007 classification (20 classes) → a label table.

Official layout (the trainval and test tars extract into the same folder)::

    VOCdevkit/VOC2007/JPEGImages/000005.jpg …
    VOCdevkit/VOC2007/ImageSets/Main/<class>_trainval.txt   # lines "000005 -1", "000007  1", "000009  0"
    VOCdevkit/VOC2007/ImageSets/Main/<class>_test.txt

A class file value is 1 (present), −1 (absent) or 0 (present only as "difficult" objects).
``difficult="negative"`` labels difficult pairs 0; ``difficult="ignore"`` labels them 0 too and
lists them in the table's file metadata under ``retdm.ignore`` (JSON ``{class: [image_id, …]}``) so
evaluation can skip them. trainval becomes ``train`` and test ``test``. Images stay where they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from retdm.data.registry import DATASETS
from retdm.data.table import IGNORE_KEY, LabelTable, read_text, write_imported
from retdm.errors import ConfigError, DataError

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
DIFFICULT = ("negative", "ignore")
PARTS = (("trainval", "train"), ("test", "test"))


@DATASETS.register("voc2007", help="PASCAL VOC 2007 (9,963 images, 20 classes, official trainval/test split): "
                                   "VOCdevkit/VOC2007/{JPEGImages,ImageSets/Main}")
def import_voc2007(root: str | os.PathLike, out: str | os.PathLike | None = None, *, difficult: str = "negative",
                   test_fraction: float = 0.2, seed: int = 0, name: str | None = None) -> LabelTable:
    """Import PASCAL VOC 2007 below ``root`` into ``out`` (default ``<root>/labels.parquet``).

    Args:
        root: the folder holding ``VOCdevkit/``, or ``VOCdevkit/`` itself, or ``VOC2007/`` itself.
        out: where to write the Parquet label table.
        difficult: ``"negative"`` (difficult pairs are 0) or ``"ignore"`` (0 as well, and listed under
            ``retdm.ignore`` in the file metadata).
        test_fraction: unused (VOC has an official split); accepted so every importer takes it.
        seed: unused, as ``test_fraction``.
        name: dataset name; defaults to ``"voc2007"``.

    Returns:
        The written label table: trainval rows then test rows, in the class files' order.

    Raises:
        ConfigError: ``difficult`` is not one of ``DIFFICULT``.
        DataError: the VOC2007 folder, a class file or an image is missing, a class file line is
            malformed, or the class files of one set list different images.
    """
    if difficult not in DIFFICULT:
        raise ConfigError(f"difficult must be one of {DIFFICULT}, got {difficult!r}")
    root = Path(root)
    out = Path(out) if out is not None else root / "labels.parquet"
    voc = _find_voc2007(root)
    main, images_dir = voc / "ImageSets" / "Main", voc / "JPEGImages"
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: image folder not found; extract VOCtrainval_06-Nov-2007.tar into {root}")
    needed = [main / f"{c}_{part}.txt" for part, _ in PARTS for c in VOC_CLASSES]
    absent = [p for p in needed if not p.is_file()]
    if absent:
        raise DataError(f"{absent[0]}: class file not found ({len(absent)} of {len(needed)} missing); extract both "
                        f"VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar into the same folder")
    ids, splits, blocks = [], [], []
    for part, split in PARTS:
        part_ids, values = _read_part(main, part)  # (N_part,), (N_part, 20) in {-1, 0, 1}
        ids += part_ids
        splits += [split] * len(part_ids)
        blocks.append(values)
    values = np.concatenate(blocks)  # (N, 20)
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise DataError(f"{main}: image {dup} is in both the trainval and the test class files; use the official "
                        f"ImageSets/Main")
    on_disk = {e.name for e in os.scandir(images_dir)}
    for image_id, split in zip(ids, splits):
        if f"{image_id}.jpg" not in on_disk:
            tar = "VOCtrainval_06-Nov-2007.tar" if split == "train" else "VOCtest_06-Nov-2007.tar"
            raise DataError(f"{main}: image {image_id} has no file {images_dir / f'{image_id}.jpg'}; re-extract {tar}")
    labels = (values == 1).astype(np.uint8)  # (N, 20)
    hard = values == 0
    ignore = {c: [ids[i] for i in np.flatnonzero(hard[:, j])] for j, c in enumerate(VOC_CLASSES)}
    rel = os.path.relpath(images_dir, out.parent)
    frame = pd.DataFrame({"image_id": ids, "path": [os.path.join(rel, f"{i}.jpg") for i in ids], "split": splits})
    is_test = np.asarray(splits) == "test"
    source = {
        "importer": "voc2007", "root": str(root), "voc2007_dir": str(voc), "images_dir": str(images_dir),
        "class_files": [f"ImageSets/Main/<class>_{part}.txt" for part, _ in PARTS], "label_order": list(VOC_CLASSES),
        "difficult": difficult, "difficult_meaning": "value 0 in a class file: labelled 0"
        + (f", pairs listed under {IGNORE_KEY}" if difficult == "ignore" else ""),
        "split": {"official": True, "train": "trainval", "test": "test"},
        "counts": {"dropped": 0, "difficult_pairs": int(hard.sum()), "difficult_pairs_train": int(hard[~is_test].sum()),
                   "difficult_pairs_test": int(hard[is_test].sum())},
    }
    return write_imported(out, name or "voc2007", VOC_CLASSES, frame, labels, source,
                          ignore=ignore if difficult == "ignore" else None)




def _find_voc2007(root: Path) -> Path:
    """The VOC2007 folder, given it, ``VOCdevkit/`` or the folder holding ``VOCdevkit/``."""
    for candidate in (root / "VOCdevkit" / "VOC2007", root / "VOC2007", root):
        if (candidate / "ImageSets").is_dir() or (candidate / "JPEGImages").is_dir():
            return candidate
    raise DataError(f"{root}: no VOC2007 folder found; pass the folder holding VOCdevkit/, VOCdevkit/ itself or "
                    f"VOCdevkit/VOC2007/ (with JPEGImages/ and ImageSets/Main/)")


def _read_part(main: Path, part: str) -> tuple[list[str], np.ndarray]:
    """Image ids of one set (``trainval``/``test``) and their (N, 20) values in {−1, 0, 1}.

    Every class file of the set must list the same images in the same order.
    """
    ids, columns = None, []
    for c in VOC_CLASSES:
        path = main / f"{c}_{part}.txt"
        file_ids, vals = [], []
        for line_no, line in enumerate(read_text(path, "use the official ImageSets/Main").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("-1", "0", "1"):
                raise DataError(f"{path}, line {line_no}: expected '<image id> <-1|0|1>', got {line!r}")
            file_ids.append(fields[0])
            vals.append(int(fields[1]))
        if ids is None:
            ids = file_ids
        elif file_ids != ids:
            k = next((k for k, (a, b) in enumerate(zip(ids, file_ids)) if a != b), min(len(ids), len(file_ids)))
            first = main / f"{VOC_CLASSES[0]}_{part}.txt"
            raise DataError(f"{path}: lists {len(file_ids)} images, {first} {len(ids)}; they first differ at entry "
                            f"{k + 1}; every class file of a set lists the same images in the same order")
        columns.append(vals)
    if not ids:
        raise DataError(f"{main / f'{VOC_CLASSES[0]}_{part}.txt'}: lists no image; use the official ImageSets/Main")
    return ids, np.array(columns, dtype=np.int8).T
