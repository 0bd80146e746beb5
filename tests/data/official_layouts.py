"""Fixture builders: tiny datasets written in exactly the official on-disk layouts.

Each ``make_*`` writes 8×8 JPEGs and the official annotation files (same names, folders and text
formats as the real downloads) below ``root`` and returns ``root``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

SCENE_LABELS = ("desert", "mountains", "sea", "sunset", "trees")
MIRFLICKR_POTENTIAL = ("animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor", "lake",
                       "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky", "structures",
                       "sunset", "transport", "tree", "water")
MIRFLICKR_RELEVANT = ("baby", "bird", "car", "clouds", "dog", "female", "flower", "male", "night", "people",
                      "portrait", "river", "sea", "tree")
# A few real COCO categories: ids are not contiguous and the json does not list them in id order.
COCO_CATEGORIES = ({"supercategory": "vehicle", "id": 3, "name": "car"},
                   {"supercategory": "person", "id": 1, "name": "person"},
                   {"supercategory": "indoor", "id": 90, "name": "toothbrush"},
                   {"supercategory": "animal", "id": 18, "name": "dog"},
                   {"supercategory": "vehicle", "id": 2, "name": "bicycle"})
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def jpg(path: Path, value: int = 0) -> None:
    """An 8×8 grey JPEG at ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value % 256, np.uint8)).save(path, format="JPEG")


def make_scene(root: Path, targets: np.ndarray, *, mat: bool = True, csv: bool = False,
               mat_dir: str = "processed") -> Path:
    """MIML scene: ``original/1.jpg … N.jpg`` plus ``<mat_dir>/miml data.mat`` and/or ``data.csv``.

    Args:
        targets: (5, N) in {−1, +1} (or anything, to test errors), written as the .mat's ``targets``.
    """
    n = targets.shape[1]
    for i in range(1, n + 1):
        jpg(root / "original" / f"{i}.jpg", i * 20)
    if mat:
        (root / mat_dir).mkdir(parents=True, exist_ok=True)
        bags = np.empty((n, 1), dtype=object)  # a cell array of 9×15 instance features, as in the official file
        for i in range(n):
            bags[i, 0] = np.full((9, 15), i, dtype=np.float64)
        scipy.io.savemat(root / mat_dir / "miml data.mat", {"bags": bags, "targets": targets.astype(np.float64)})
    if csv:
        rows = ["image," + ",".join(SCENE_LABELS)]
        rows += [f"{i + 1}.jpg," + ",".join(str(int(v == 1)) for v in targets[:, i]) for i in range(n)]
        (root / "data.csv").write_text("\n".join(rows) + "\n")
    return root


def make_mirflickr(root: Path, n: int, potential: dict[str, list[int]],
                   relevant: dict[str, list[int]] | None = None) -> Path:
    """MIRFLICKR-25000: ``mirflickr/im1.jpg … im<n>.jpg`` and ``mirflickr25k_annotations_v080/``.

    Args:
        potential: concept → 1-based image numbers; every one of the 24 concept files is written.
        relevant: the same for the 14 ``_r1`` files (default: each lists image 1).
    """
    for i in range(1, n + 1):
        jpg(root / "mirflickr" / f"im{i}.jpg", i * 10)
    (root / "mirflickr" / "doc").mkdir()  # the official zip also holds doc/ and meta/
    (root / "mirflickr" / "doc" / "license.txt").write_text("images under Creative Commons licenses\n")
    ann = root / "mirflickr25k_annotations_v080"
    ann.mkdir(parents=True)
    (ann / "README.txt").write_text("MIRFLICKR-25000 annotations v0.80\npotential and relevant (_r1) labels\n")
    relevant = relevant if relevant is not None else {c: [1] for c in MIRFLICKR_RELEVANT}
    for concept in MIRFLICKR_POTENTIAL:
        (ann / f"{concept}.txt").write_text("".join(f"{k}\n" for k in potential.get(concept, [])))
    for concept in MIRFLICKR_RELEVANT:
        (ann / f"{concept}_r1.txt").write_text("".join(f"{k}\n" for k in relevant.get(concept, [])))
    return root


def make_coco(root: Path, train: list[list[int]], val: list[list[int]]) -> Path:
    """MS-COCO 2014: images in ``train2014/``, ``val2014/`` and ``annotations/instances_*2014.json``.

    Args:
        train: per train image, the category ids of its instance annotations (empty: unannotated).
        val: the same for val images.
    """
    ann_id = 1
    for folder, images in (("train2014", train), ("val2014", val)):
        data = {"info": {"description": "COCO 2014 Dataset", "year": 2014}, "licenses": [], "images": [],
                "annotations": [], "categories": list(COCO_CATEGORIES)}
        for k, cats in enumerate(images):
            image_id = 9 + 13 * k + (0 if folder == "train2014" else 100000)
            file_name = f"COCO_{folder}_{image_id:012d}.jpg"
            jpg(root / folder / file_name, k * 30)
            data["images"].append({"license": 1, "file_name": file_name, "height": 8, "width": 8, "id": image_id,
                                   "coco_url": f"http://images.cocodataset.org/{folder}/{file_name}"})
            for c in cats:
                data["annotations"].append({"segmentation": [[0.0, 0.0, 4.0, 0.0, 4.0, 4.0]], "area": 8.0,
                                            "iscrowd": int(ann_id % 4 == 0), "image_id": image_id,
                                            "bbox": [0.0, 0.0, 4.0, 4.0], "category_id": c, "id": ann_id})
                ann_id += 1
        data["annotations"].reverse()  # annotations are not grouped by image in the real files either
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{folder}.json").write_text(json.dumps(data))
    return root


def make_voc(root: Path, trainval: dict[str, dict[str, int]], test: dict[str, dict[str, int]]) -> Path:
    """PASCAL VOC 2007 below ``root/VOCdevkit/VOC2007``.

    Args:
        trainval: image id → {class: 1 or 0 (difficult)}; every other class is −1.
        test: the same for the test set.
    """
    voc = root / "VOCdevkit" / "VOC2007"
    main = voc / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for k, image_id in enumerate([*trainval, *test]):
        jpg(voc / "JPEGImages" / f"{image_id}.jpg", k * 25)
    for part, images in (("trainval", trainval), ("test", test)):
        ids = list(images)
        (main / f"{part}.txt").write_text("".join(f"{i}\n" for i in ids))
        for c in VOC_CLASSES:  # "%s %2d": "000005 -1", "000007  1", "000009  0"
            (main / f"{c}_{part}.txt").write_text("".join(f"{i} {images[i].get(c, -1):2d}\n" for i in ids))
    half = len(trainval) // 2  # the train/val halves exist officially too; the importer ignores them
    for part, ids in (("train", list(trainval)[:half]), ("val", list(trainval)[half:])):
        (main / f"{part}.txt").write_text("".join(f"{i}\n" for i in ids))
        for c in VOC_CLASSES:
            (main / f"{c}_{part}.txt").write_text("".join(f"{i} {trainval[i].get(c, -1):2d}\n" for i in ids))
    return root


def make_nuswide(root: Path, concepts: list[str], train: list[tuple[str, set[str]]], test: list[tuple[str, set[str]]],
                 *, concept_list: list[str] | None = None, absent: set[str] = frozenset(),
                 images: Path | None = None) -> Path:
    """NUS-WIDE: ``Groundtruth/TrainTestLabels/``, ``ImageList/`` (backslash paths, CRLF) and the images.

    Args:
        concepts: concept names; one Train and one Test label file each.
        train: per train image, ``("<subdir>/<file>.jpg", its concepts)``.
        test: the same for test images.
        concept_list: if given, written as ``ConceptsList/Concepts81.txt`` in this order.
        absent: ``<subdir>/<file>.jpg`` entries listed but not written to disk.
        images: image folder (default ``root/Flickr``).
    """
    images = images if images is not None else root / "Flickr"
    labels_dir = root / "Groundtruth" / "TrainTestLabels"
    labels_dir.mkdir(parents=True)
    (root / "ImageList").mkdir()
    every = [rel.replace("/", "\\") for rel, _ in [*train, *test]]  # the full list, ignored by the importer
    full = "".join(f"C:\\ImageData\\Flickr\\{x}\r\n" for x in every)
    (root / "ImageList" / "Imagelist.txt").write_bytes(full.encode())
    for part, entries in (("Train", train), ("Test", test)):
        lines = [rel.replace("/", "\\") for rel, _ in entries]
        (root / "ImageList" / f"{part}Imagelist.txt").write_bytes("".join(f"{x}\r\n" for x in lines).encode())
        for c in concepts:
            body = "".join(f"{int(c in tags)}\r\n" for _, tags in entries)
            (labels_dir / f"Labels_{c}_{part}.txt").write_bytes(body.encode())
        for k, (rel, _) in enumerate(entries):
            if rel not in absent:
                jpg(images / rel, k * 15)
    if concept_list is not None:
        (root / "ConceptsList").mkdir()
        (root / "ConceptsList" / "Concepts81.txt").write_bytes("".join(f"{c}\r\n" for c in concept_list).encode())
    return root
