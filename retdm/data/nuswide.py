"""The ``nuswide`` importer: NUS-WIDE (81 concepts, official train/test split) → a label table.

Official layout below the root::

    Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt   # one 0/1 per line, aligned with the list
    Groundtruth/TrainTestLabels/Labels_<concept>_Test.txt
    ImageList/TrainImagelist.txt                             # lines like actor\\0001_2124494179.jpg
    ImageList/TestImagelist.txt
    ConceptsList/Concepts81.txt                              # optional: the concept order
    Flickr/<subdir>/<file>                                   # the images, wherever you keep them

Concepts follow ``Concepts81.txt`` when present (at the root or in ``ConceptsList/``), else sorted
names. NUS-WIDE downloads are often incomplete, so images missing on disk either raise
(``missing="error"``) or are dropped and counted (``missing="drop"``). Images stay where they are.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from retdm.data.registry import DATASETS
from retdm.data.table import LabelTable, check_label_names, read_text, write_imported
from retdm.errors import ConfigError, DataError

MISSING = ("error", "drop")
PARTS = (("Train", "train"), ("Test", "test"))
LABELS_DIR = Path("Groundtruth") / "TrainTestLabels"
CONCEPT_LISTS = (Path("Concepts81.txt"), Path("ConceptsList") / "Concepts81.txt")
_LABEL_FILE = re.compile(r"Labels_(.+)_(Train|Test)\.txt")


@DATASETS.register("nuswide", help="NUS-WIDE (269k images, 81 concepts, official train/test split): Groundtruth/, "
                                   "ImageList/ and your image folder (default Flickr/)")
def import_nuswide(root: str | os.PathLike, out: str | os.PathLike | None = None, *,
                   images: str | os.PathLike | None = None, missing: str = "error", drop_unlabelled: bool = False,
                   test_fraction: float = 0.2, seed: int = 0, name: str | None = None) -> LabelTable:
    """Import NUS-WIDE below ``root`` into ``out`` (default ``<root>/labels.parquet``).

    Args:
        root: folder holding ``Groundtruth/TrainTestLabels/`` and ``ImageList/``.
        out: where to write the Parquet label table.
        images: folder holding ``<subdir>/<file>`` as named by the image lists; default ``<root>/Flickr``.
        missing: ``"error"`` (an image listed but not on disk raises) or ``"drop"`` (skipped, counted).
        drop_unlabelled: drop images that carry none of the 81 concepts (counted either way).
        test_fraction: unused (NUS-WIDE has an official split); accepted so every importer takes it.
        seed: unused, as ``test_fraction``.
        name: dataset name; defaults to ``"nuswide"``.

    Returns:
        The written label table: train rows then test rows, in the image lists' order.

    Raises:
        ConfigError: ``missing`` is not one of ``MISSING``.
        DataError: a list, label file or image is missing, a label file holds a value other than
            0/1 or has a different line count than its image list, or Concepts81.txt disagrees.
    """
    if missing not in MISSING:
        raise ConfigError(f"missing must be one of {MISSING}, got {missing!r}")
    root = Path(root)
    out = Path(out) if out is not None else root / "labels.parquet"
    images_dir = Path(images) if images is not None else root / "Flickr"
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: image folder not found; pass images=<folder holding <subdir>/<file>.jpg>")
    concepts, concept_list = _concepts(root)
    check_label_names(tuple(concepts), str(concept_list or root / LABELS_DIR))
    listing: dict[str, set[str]] = {}  # subdir → file names on disk, read once per subdir
    ids, paths, splits, blocks, counts, files = [], [], [], [], {}, {}
    for part, split in PARTS:
        list_path = root / "ImageList" / f"{part}Imagelist.txt"
        entries = _read_list(list_path)  # [(line, "subdir/file")]
        values = np.zeros((len(entries), len(concepts)), dtype=np.uint8)  # (N_part, M)
        for j, concept in enumerate(concepts):
            values[:, j] = _read_labels(root / LABELS_DIR / f"Labels_{concept}_{part}.txt", list_path, len(entries))
        present = np.array([_on_disk(images_dir, rel, listing) for _, rel in entries], dtype=bool)
        if missing == "error" and not present.all():
            line, rel = entries[int(np.flatnonzero(~present)[0])]
            raise DataError(f"{list_path}, line {line}: image {images_dir / rel} does not exist "
                            f"({int((~present).sum())} of {len(entries)} missing); add the images or pass "
                            f"missing='drop'")
        unlabelled = values.sum(axis=1) == 0
        keep = present & ~unlabelled if drop_unlabelled else present
        rels = [rel for (_, rel), k in zip(entries, keep) if k]
        ids += [os.path.splitext(rel)[0] for rel in rels]
        paths += rels
        splits += [split] * len(rels)
        blocks.append(values[keep])
        counts[split] = {"listed": len(entries), "missing_on_disk": int((~present).sum()),
                         "dropped_missing": int((~present).sum()) if missing == "drop" else 0,
                         "unlabelled": int(unlabelled.sum()),
                         "dropped_unlabelled": int((present & unlabelled).sum()) if drop_unlabelled else 0,
                         "images": int(keep.sum()),
                         "missing_examples": [rel for (_, rel), p in zip(entries, present) if not p][:10]}
        files[split] = {"image_list": str(list_path), "labels": str(root / LABELS_DIR / f"Labels_<concept>_{part}.txt")}
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise DataError(f"{root / 'ImageList'}: image {dup} is listed twice (train and test lists together); use the "
                        f"official TrainImagelist.txt and TestImagelist.txt")
    labels = np.concatenate(blocks)  # (N, M)
    if len(labels) == 0:
        raise DataError(f"{images_dir}: no listed image is kept ({counts}); check images= and the image lists")
    rel_dir = os.path.relpath(images_dir, out.parent)
    frame = pd.DataFrame({"image_id": ids, "path": [os.path.join(rel_dir, p) for p in paths], "split": splits})
    source = {
        "importer": "nuswide", "root": str(root), "images_dir": str(images_dir), "files": files,
        "label_order": concepts, "concept_order_from": str(concept_list) if concept_list else "sorted label file names",
        "missing": missing, "drop_unlabelled": drop_unlabelled,
        "image_id": "<subdir>/<file stem> from the image list (backslashes read as separators)",
        "split": {"official": True, "train": "TrainImagelist.txt", "test": "TestImagelist.txt"}, "counts": counts,
    }
    return write_imported(out, name or "nuswide", tuple(concepts), frame, labels, source)


def _concepts(root: Path) -> tuple[list[str], Path | None]:
    """Concept names (Concepts81.txt order if present, else sorted) and the list file used, if any."""
    label_dir = root / LABELS_DIR
    if not label_dir.is_dir():
        raise DataError(f"{label_dir}: folder not found; extract Groundtruth.zip into {root}")
    found: dict[str, set[str]] = {part: set() for part, _ in PARTS}
    for entry in os.scandir(label_dir):
        if m := _LABEL_FILE.fullmatch(entry.name):
            found[m.group(2)].add(m.group(1))
    train, test = found["Train"], found["Test"]
    if not train | test:
        raise DataError(f"{label_dir}: no file Labels_<concept>_Train.txt; extract Groundtruth.zip into {root}")
    if train != test:
        only_train, only_test = sorted(train - test), sorted(test - train)
        concept, part = (only_train[0], "Test") if only_train else (only_test[0], "Train")
        raise DataError(f"{label_dir / f'Labels_{concept}_{part}.txt'}: label file not found; each concept needs a "
                        f"Train and a Test file; re-extract Groundtruth.zip")
    concept_list = next((root / p for p in CONCEPT_LISTS if (root / p).is_file()), None)
    if concept_list is None:
        return sorted(train), None
    listed = [line.strip() for line in read_text(concept_list, "re-extract ConceptsList.zip").splitlines()
              if line.strip()]
    if len(set(listed)) != len(listed) or set(listed) != train:
        raise DataError(f"{concept_list}: lists {len(listed)} concepts but {label_dir} has label files for "
                        f"{len(train)}; without a label file: {sorted(set(listed) - train)}, not listed: "
                        f"{sorted(train - set(listed))}; use matching Groundtruth.zip and ConceptsList.zip")
    return listed, concept_list


def _read_list(path: Path) -> list[tuple[int, str]]:
    """(line number, ``subdir/file``) for each line of an image list; backslashes are separators."""
    if not path.is_file():
        raise DataError(f"{path}: image list not found; extract ImageList.zip into {path.parent.parent}")
    entries = []
    for line_no, line in enumerate(read_text(path, "re-extract ImageList.zip").splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        parts = [p for p in text.replace("\\", "/").split("/") if p]
        if len(parts) < 2:
            raise DataError(f"{path}, line {line_no}: expected <subdir>\\<file>.jpg, got {text!r}")
        entries.append((line_no, "/".join(parts[-2:])))
    return entries


def _read_labels(path: Path, list_path: Path, n: int) -> np.ndarray:
    """One concept's (n,) uint8 labels: a 0/1 per line, as many lines as ``list_path`` has images."""
    if not path.is_file():
        raise DataError(f"{path}: label file not found; re-extract Groundtruth.zip")
    text = read_text(path, "re-extract Groundtruth.zip")
    tokens = text.split()
    lines = text.rstrip().count("\n") + 1 if text.strip() else 0
    if lines != len(tokens):  # a blank or multi-value line inside the file: find it
        for line_no, line in enumerate(text.splitlines(), start=1):
            if len(line.split()) != 1:
                raise DataError(f"{path}, line {line_no}: expected one 0 or 1, got {line!r}")
    if len(tokens) != n:
        raise DataError(f"{path} has {len(tokens)} lines but {list_path} lists {n} images; they must align line by "
                        f"line; use files from the same NUS-WIDE release")
    values = np.array(tokens)
    ok = (values == "0") | (values == "1")
    if not ok.all():
        k = int(np.flatnonzero(~ok)[0])
        raise DataError(f"{path}, line {k + 1}: expected 0 or 1, got {tokens[k]!r}")
    return (values == "1").astype(np.uint8)


def _on_disk(images_dir: Path, rel: str, listing: dict[str, set[str]]) -> bool:
    """Whether ``images_dir/rel`` exists, listing each subdir once (fast on 270k images)."""
    subdir, file = rel.rsplit("/", 1)
    if subdir not in listing:
        folder = images_dir / subdir
        listing[subdir] = {e.name for e in os.scandir(folder)} if folder.is_dir() else set()
    return file in listing[subdir]
