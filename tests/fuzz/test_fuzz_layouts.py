"""Fuzz the official-layout importers (COCO, VOC 2007, MIRFLICKR, NUS-WIDE, MIML scene) on layouts
written by tests/data/official_layouts.py: generated contents read back exactly, then the same
layouts with a file's bytes edited, a file deleted, or a stray file added."""

import json
import tempfile
from pathlib import Path

import numpy as np
from fuzzing import budget, expect_clean_error, files_under, mutated
from hypothesis import given
from hypothesis import strategies as st
from official_layouts import (
    COCO_CATEGORIES,
    MIRFLICKR_POTENTIAL,
    SCENE_LABELS,
    VOC_CLASSES,
    make_coco,
    make_mirflickr,
    make_nuswide,
    make_scene,
    make_voc,
)

from retdm.data.coco import import_coco
from retdm.data.mirflickr import import_mirflickr
from retdm.data.nuswide import import_nuswide
from retdm.data.scene import import_scene
from retdm.data.table import read_label_table
from retdm.data.voc import import_voc2007
from retdm.errors import ConfigError, DataError

COCO_IDS = sorted(c["id"] for c in COCO_CATEGORIES)
# Names that break the label-table contract (reserved columns) beside ordinary ones.
RESERVED_NAMES = ("split", "path", "image_id", "feat_0")
stray_names = st.sampled_from(("x.txt", "README.txt", "split.txt", "feat_0.txt", "im7.jpg", "im0.jpg", "im²3.jpg",
                               "im٣.jpg", "Labels_path_Train.txt", "Labels_sky_Test.txt", "miml data.mat", "data.csv",
                               "a.json"))


def _run(importer, root: Path, out: Path, **options):
    """The importer under the invariant: the table read back, or ``None`` after a clean error
    naming a file below ``root`` (or the option at fault)."""
    before = files_under(out.parent)
    try:
        importer(root, out, **options)
    except DataError as err:
        expect_clean_error(err, [root], out.parent, before)
        return None
    except ConfigError as err:
        expect_clean_error(err, list(options), out.parent, before)
        return None
    table = read_label_table(out)
    assert all((table.root / p).is_file() for p in table.frame["path"]), "a path of the table leads nowhere"
    return table


def _mutate_layout(data, root: Path) -> None:
    """One random change to the layout below ``root``: an annotation file's bytes edited, a file
    deleted, or a stray file added. A MATLAB file is only truncated: scipy's reader can crash the
    process (SIGSEGV) on some bit flips, which no importer can catch."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    op = data.draw(st.sampled_from(("edit", "edit", "delete", "stray")))
    if op == "stray":
        folders = sorted({p.parent for p in files})
        (data.draw(st.sampled_from(folders)) / data.draw(stray_names)).write_bytes(data.draw(st.binary(max_size=8)))
        return
    if op == "delete":
        data.draw(st.sampled_from(files)).unlink()
        return
    victim = data.draw(st.sampled_from([p for p in files if p.suffix != ".jpg"]))  # images are never decoded
    blob = victim.read_bytes()
    victim.write_bytes(blob[:data.draw(st.integers(0, len(blob)))] if victim.suffix == ".mat" else
                       data.draw(mutated(blob)))


def _layout_case(build, importer, data, *, mutate: bool, **options):
    """Build a layout in a temporary folder, maybe mutate it, import it; the table or ``None``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = build(Path(tmp) / "root")
        if mutate:
            _mutate_layout(data, root)
        table = _run(importer, root, Path(tmp) / "out" / "labels.parquet", **options)
        return None if table is None else (table.label_names, table.frame.drop(columns="path"), table.labels())


# --- COCO ------------------------------------------------------------------------------------------

coco_images = st.lists(st.lists(st.sampled_from(COCO_IDS), max_size=3), min_size=1, max_size=4)


@budget(40, "COCO importer")
@given(coco_images, coco_images, st.booleans(), st.booleans(), st.data())
def test_coco(train, val, keep_unannotated, mutate, data):
    got = _layout_case(lambda root: make_coco(root, train, val), import_coco, data, mutate=mutate,
                       keep_unannotated=keep_unannotated)
    if mutate:
        return
    kept = [cats for cats in train + val if cats or keep_unannotated]
    if not kept:
        assert got is None
        return
    names, frame, labels = got
    assert list(names) == [next(c["name"] for c in COCO_CATEGORIES if c["id"] == i) for i in COCO_IDS]
    assert labels.tolist() == [[int(i in cats) for i in COCO_IDS] for cats in kept]
    assert frame["split"].tolist() == ["train"] * sum(bool(c) or keep_unannotated for c in train) + \
        ["test"] * sum(bool(c) or keep_unannotated for c in val)


@budget(40, "COCO importer")
@given(coco_images, coco_images, st.data())
def test_coco_json_structure(train, val, data):
    """A node of an instances file replaced by another JSON value, or a key dropped."""
    scalars = st.none() | st.booleans() | st.integers(-2, 100) | st.floats() | st.text(max_size=4)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3),
                                                                                                  inner, max_size=2),
                          max_leaves=4)

    def build(root):
        make_coco(root, train, val)
        path = root / "annotations" / data.draw(st.sampled_from(("instances_train2014.json", "instances_val2014.json")))
        doc = json.loads(path.read_text())
        node, key = {"doc": doc}, "doc"
        while isinstance(node[key], (dict, list)) and node[key] and data.draw(st.booleans()):
            node, key = node[key], data.draw(st.sampled_from(list(node[key]) if isinstance(node[key], dict)
                                                             else range(len(node[key]))))
        if isinstance(node, dict) and key != "doc" and data.draw(st.booleans()):
            del node[key]
        else:
            node[key] = data.draw(values)
        path.write_text(json.dumps(doc if key != "doc" else node[key]))
        return root

    _layout_case(build, import_coco, data, mutate=False)


# --- VOC 2007 --------------------------------------------------------------------------------------

voc_ids = st.lists(st.text("0123456789", min_size=6, max_size=6), min_size=2, max_size=5, unique=True)
voc_values = st.dictionaries(st.sampled_from(VOC_CLASSES), st.sampled_from((0, 1)), max_size=3)


@budget(30, "VOC importer")
@given(voc_ids, st.data(), st.sampled_from(("negative", "ignore", "hard")), st.booleans())
def test_voc(ids, data, difficult, mutate):
    cut = data.draw(st.integers(1, len(ids) - 1))
    trainval = {i: data.draw(voc_values) for i in ids[:cut]}
    test = {i: data.draw(voc_values) for i in ids[cut:]}
    got = _layout_case(lambda root: make_voc(root, trainval, test), import_voc2007, data, mutate=mutate,
                       difficult=difficult)
    if mutate:
        return
    if difficult == "hard":
        assert got is None
        return
    names, frame, labels = got
    both = {**trainval, **test}
    assert names == VOC_CLASSES and frame["image_id"].tolist() == ids
    assert labels.tolist() == [[int(both[i].get(c) == 1) for c in VOC_CLASSES] for i in ids]


# --- MIRFLICKR -------------------------------------------------------------------------------------

@budget(30, "MIRFLICKR importer")
@given(st.integers(1, 5), st.data(), st.booleans(), st.booleans())
def test_mirflickr(n, data, drop_unlabelled, mutate):
    potential = data.draw(st.dictionaries(st.sampled_from(MIRFLICKR_POTENTIAL),
                                          st.lists(st.integers(1, n), max_size=3, unique=True), max_size=4))
    got = _layout_case(lambda root: make_mirflickr(root, n, potential), import_mirflickr, data, mutate=mutate,
                       drop_unlabelled=drop_unlabelled)
    if mutate:
        return
    concepts = sorted(MIRFLICKR_POTENTIAL)
    rows = [[int(k in potential.get(c, [])) for c in concepts] for k in range(1, n + 1)]
    kept = [k for k in range(1, n + 1) if any(rows[k - 1]) or not drop_unlabelled]
    if not kept:
        assert got is None
        return
    names, frame, labels = got
    assert list(names) == concepts and frame["image_id"].tolist() == [f"im{k}" for k in kept]
    assert labels.tolist() == [rows[k - 1] for k in kept]


# --- NUS-WIDE --------------------------------------------------------------------------------------

concept_names = st.text("abcxyz_", min_size=1, max_size=5) | st.sampled_from(RESERVED_NAMES)
entries = st.lists(st.tuples(st.sampled_from(("actor", "sky", "a_b")), st.text("0123456789_", min_size=1, max_size=4)),
                   min_size=1, max_size=3, unique=True)


@budget(30, "NUS-WIDE importer")
@given(st.lists(concept_names, min_size=1, max_size=3, unique=True), entries, entries, st.data(), st.booleans(),
       st.sampled_from(("error", "drop", "skip")), st.booleans())
def test_nuswide(concepts, train_files, test_files, data, with_list, missing, mutate):
    def tagged(files):
        return [(f"{sub}/{stem}.jpg", set(data.draw(st.lists(st.sampled_from(concepts), max_size=2)))) for sub, stem
                in files]

    test_files = [f for f in test_files if f not in train_files]
    train, test = tagged(train_files), tagged(test_files)
    order = data.draw(st.permutations(concepts)) if with_list else None
    absent = set(data.draw(st.lists(st.sampled_from([rel for rel, _ in train + test]), max_size=1)))
    got = _layout_case(lambda root: make_nuswide(root, concepts, train, test, concept_list=order, absent=absent),
                       import_nuswide, data, mutate=mutate, missing=missing)
    if mutate:
        return
    if missing == "skip" or set(concepts) & set(RESERVED_NAMES) or (absent and missing == "error"):
        assert got is None
        return
    kept = [(rel, tags) for rel, tags in train + test if rel not in absent]
    if not kept:
        assert got is None
        return
    names, frame, labels = got
    expected = list(order) if with_list else sorted(concepts)
    assert list(names) == expected
    assert frame["image_id"].tolist() == [rel[: -len(".jpg")] for rel, _ in kept]
    assert labels.tolist() == [[int(c in tags) for c in expected] for _, tags in kept]


# --- MIML scene ------------------------------------------------------------------------------------

@budget(30, "scene importer")
@given(st.integers(1, 5), st.data(), st.sampled_from(("mat", "csv", "both")), st.sampled_from(("auto", "mat", "csv")),
       st.booleans())
def test_scene(n, data, files, layout, mutate):
    odd = data.draw(st.booleans())  # the .mat's targets: ±1, or now and then something else
    values = st.sampled_from((-1, 1, 0, 2, 0.5, np.nan) if odd else (-1, 1))
    targets = np.array(data.draw(st.lists(st.lists(values, min_size=n, max_size=n), min_size=5, max_size=5)))  # (5, N)
    refused = files != "csv" and layout != "csv" and not np.isin(targets, (-1, 1)).all()  # the .mat is read
    got = _layout_case(lambda root: make_scene(root, targets, mat=files != "csv", csv=files != "mat"), import_scene,
                       data, mutate=mutate, layout=layout)
    if mutate:
        return
    if (layout, files) in (("mat", "csv"), ("csv", "mat")) or refused:
        assert got is None
        return
    names, frame, labels = got
    assert names == SCENE_LABELS and frame["image_id"].tolist() == [str(i) for i in range(1, n + 1)]
    assert labels.tolist() == (targets.T == 1).astype(int).tolist()
