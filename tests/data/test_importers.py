"""The official-layout importers (scene, mirflickr, coco, voc2007, nuswide) on tiny fixtures."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from official_layouts import (
    COCO_CATEGORIES,
    MIRFLICKR_POTENTIAL,
    MIRFLICKR_RELEVANT,
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
from retdm.data.registry import DATASETS
from retdm.data.scene import import_scene
from retdm.data.table import ignore_mask, read_label_table, resplit_table
from retdm.data.voc import import_voc2007
from retdm.errors import ConfigError, DataError

# (5, 8) targets in {-1, +1}: column i is image i+1
TARGETS = np.array([[1, -1, -1, -1, 1, -1, -1, -1],
                    [-1, 1, -1, -1, -1, -1, 1, -1],
                    [-1, -1, 1, 1, -1, -1, -1, -1],
                    [-1, -1, -1, 1, -1, 1, -1, -1],
                    [-1, -1, -1, -1, 1, -1, 1, 1]])


def read_back(out: Path):
    table = read_label_table(out)
    return table, json.loads(table.source)


def assert_paths_resolve(table) -> None:
    assert all((table.root / p).is_file() for p in table.frame["path"])


def test_all_registered():
    assert {"scene", "mirflickr", "coco", "voc2007", "nuswide"} <= set(DATASETS.names())


# --- scene -----------------------------------------------------------------------------------------

def test_scene_mat_layout(tmp_path):
    root = make_scene(tmp_path / "miml", TARGETS)
    import_scene(root, tmp_path / "out" / "labels.parquet")
    table, source = read_back(tmp_path / "out" / "labels.parquet")
    assert table.label_names == SCENE_LABELS and table.name == "scene"
    assert table.frame["image_id"].tolist() == [str(i) for i in range(1, 9)]
    np.testing.assert_array_equal(table.labels(), (TARGETS.T == 1).astype(np.uint8))
    assert (table.frame["split"] == "test").sum() == 2
    assert_paths_resolve(table)
    assert source["layout"] == "mat" and source["labels_file"].endswith("processed/miml data.mat")
    assert source["counts"]["images"] == 8 and source["counts"]["labels_per_image"] == 1.375
    assert source["counts"]["distinct_label_sets"] == 8


def test_scene_csv_layout_and_mat_preferred(tmp_path):
    csv_only = make_scene(tmp_path / "a", TARGETS, mat=False, csv=True)
    t = import_scene(csv_only)
    assert json.loads(t.source)["layout"] == "csv" and (csv_only / "labels.parquet").is_file()
    np.testing.assert_array_equal(t.labels(), (TARGETS.T == 1).astype(np.uint8))
    both = make_scene(tmp_path / "b", TARGETS, csv=True, mat_dir="deep/er")  # the .mat anywhere below root
    (both / "data.csv").write_text((both / "data.csv").read_text().replace("1.jpg,1,0", "1.jpg,0,1"))
    t = import_scene(both, seed=3)
    source = json.loads(t.source)
    assert source["layout"] == "mat" and source["preferred_mat_over_csv"]
    np.testing.assert_array_equal(t.labels(), (TARGETS.T == 1).astype(np.uint8))
    assert json.loads(import_scene(both, tmp_path / "c.parquet", layout="csv").source)["layout"] == "csv"


@pytest.mark.parametrize("case, match", [
    ("zero", r"miml data.mat: 'targets' row 2 \(mountains\), column 3 \(image 3.jpg\) holds 0.0, expected -1 or \+1"),
    ("shape", r"miml data.mat: 'targets' has shape \(4, 8\), expected \(5, N\)"),
    ("image", r"miml data.mat, column 3 of 'targets': image file .*original/3.jpg does not exist"),
    ("nothing", r"neither 'miml data.mat' .* nor data.csv found"),
])
def test_scene_bad_input(tmp_path, case, match):
    targets = TARGETS.copy()
    if case == "zero":
        targets[1, 2] = 0
    root = make_scene(tmp_path / "miml", targets[:4] if case == "shape" else targets, mat=case != "nothing")
    if case == "image":
        (root / "original" / "3.jpg").unlink()
    with pytest.raises(DataError, match=match):
        import_scene(root)
    assert not (root / "labels.parquet").exists()


def test_scene_real_copy(tmp_path):
    root = Path("/work/shared/datasets/miml_scene")
    if not (root / "data.csv").is_file():
        pytest.skip("the MIML scene copy is not on this machine")
    t = import_scene(root, tmp_path / "labels.parquet")
    labels = t.labels()
    assert len(t) == 2000 and len({row.tobytes() for row in labels}) == 20
    assert round(float(labels.sum(axis=1).mean()), 3) == 1.236
    assert json.loads(t.source)["counts"]["distinct_label_sets"] == 20


# --- mirflickr -------------------------------------------------------------------------------------

def test_mirflickr(tmp_path):
    potential = {"sky": [1, 2, 3], "clouds": [2], "water": [5, 3], "animals": [9]}
    root = make_mirflickr(tmp_path / "mf", 10, potential, relevant={"clouds": [4, 6, 7]})
    import_mirflickr(root)
    table, source = read_back(root / "labels.parquet")
    assert table.label_names == MIRFLICKR_POTENTIAL and len(table) == 10
    assert table.frame["image_id"].tolist() == [f"im{i}" for i in range(1, 11)]
    expect = np.zeros((10, 24), np.uint8)
    for concept, numbers in potential.items():
        expect[np.array(numbers) - 1, MIRFLICKR_POTENTIAL.index(concept)] = 1
    np.testing.assert_array_equal(table.labels(), expect)  # the _r1 lists (clouds: 4, 6, 7) are not used
    assert_paths_resolve(table)
    assert source["relevant_ignored"] == [f"{c}_r1" for c in MIRFLICKR_RELEVANT]
    assert source["counts"]["unlabelled"] == 5 and source["counts"]["dropped_unlabelled"] == 0
    assert (table.frame["split"] == "test").sum() == 2

    t = import_mirflickr(root, tmp_path / "kept.parquet", drop_unlabelled=True)
    assert t.frame["image_id"].tolist() == ["im1", "im2", "im3", "im5", "im9"]
    assert json.loads(t.source)["counts"]["dropped_unlabelled"] == 5


def test_mirflickr_annotation_points_at_missing_image(tmp_path):
    root = make_mirflickr(tmp_path / "mf", 10, {"dog": [4, 11]})
    with pytest.raises(DataError, match=r"dog.txt, line 2: image 11 has no file .*mirflickr/im11.jpg"):
        import_mirflickr(root)
    shutil.rmtree(root / "mirflickr25k_annotations_v080")
    with pytest.raises(DataError, match=r"mirflickr25k_annotations_v080: folder not found"):
        import_mirflickr(root)
    assert not (root / "labels.parquet").exists()


# --- coco ------------------------------------------------------------------------------------------

def test_coco(tmp_path):
    # category ids 1 person, 2 bicycle, 3 car, 18 dog, 90 toothbrush
    root = make_coco(tmp_path / "coco", train=[[1, 1, 3], [], [18, 90], [2]], val=[[3], [1, 18, 18], []])
    import_coco(root)
    table, source = read_back(root / "labels.parquet")
    assert table.label_names == ("person", "bicycle", "car", "dog", "toothbrush")
    np.testing.assert_array_equal(table.labels(), [[1, 0, 1, 0, 0], [0, 0, 0, 1, 1], [0, 1, 0, 0, 0],
                                                   [0, 0, 1, 0, 0], [1, 0, 0, 1, 0]])
    assert table.frame["split"].tolist() == ["train"] * 3 + ["test"] * 2
    assert table.frame["image_id"][0] == "COCO_train2014_000000000009"
    assert_paths_resolve(table)
    assert source["category_ids"] == {str(c["id"]): c["name"] for c in COCO_CATEGORIES}
    assert source["counts"]["train"]["dropped_unannotated"] == 1 and source["counts"]["test"]["unannotated"] == 1
    assert source["counts"]["images"] == 5

    t = import_coco(root, tmp_path / "all.parquet", keep_unannotated=True)
    assert len(t) == 7 and t.labels()[[1, 6]].sum() == 0
    assert json.loads(t.source)["counts"]["test"]["dropped_unannotated"] == 0


def test_coco_bad_input(tmp_path):
    root = make_coco(tmp_path / "coco", train=[[1]], val=[[2]])
    image = root / "train2014" / "COCO_train2014_000000000009.jpg"
    image.unlink()
    with pytest.raises(DataError, match=r"instances_train2014.json: 1 listed image\(s\) missing from .*train2014, "
                                        r"first .*COCO_train2014_000000000009.jpg; re-extract train2014.zip"):
        import_coco(root)
    image.write_bytes(b"")
    path = root / "annotations" / "instances_val2014.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["image_id"] = 424242
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"instances_val2014.json: annotations\[0\] has image_id 424242"):
        import_coco(root)
    path.unlink()
    with pytest.raises(DataError, match=r"instances_val2014.json: annotation file not found; extract "
                                        r"annotations_trainval2014.zip"):
        import_coco(root)
    assert not (root / "labels.parquet").exists()


# --- voc2007 ---------------------------------------------------------------------------------------

VOC_TRAINVAL = {"000005": {"chair": 1, "person": 0}, "000007": {"car": 1}, "000009": {"horse": 1, "person": 1},
                "000012": {"car": 0}}
VOC_TEST = {"000001": {"dog": 1, "person": 1}, "000002": {"train": 1}, "000004": {"car": 1, "bus": 0}}


def voc_expected() -> np.ndarray:
    rows = [[int(v.get(c, -1) == 1) for c in VOC_CLASSES] for v in [*VOC_TRAINVAL.values(), *VOC_TEST.values()]]
    return np.array(rows, np.uint8)


@pytest.mark.parametrize("level", ["", "VOCdevkit", "VOCdevkit/VOC2007"])
def test_voc2007_difficult_negative(tmp_path, level):
    root = make_voc(tmp_path / "voc", VOC_TRAINVAL, VOC_TEST)
    assert " 0\n" in (root / "VOCdevkit/VOC2007/ImageSets/Main/person_trainval.txt").read_text().splitlines(True)[0]
    import_voc2007(root / level, tmp_path / "labels.parquet")
    table, source = read_back(tmp_path / "labels.parquet")
    assert table.label_names == VOC_CLASSES
    assert table.frame["image_id"].tolist() == [*VOC_TRAINVAL, *VOC_TEST]
    assert table.frame["split"].tolist() == ["train"] * 4 + ["test"] * 3
    np.testing.assert_array_equal(table.labels(), voc_expected())
    assert_paths_resolve(table)
    assert source["counts"]["difficult_pairs"] == 3 and source["counts"]["difficult_pairs_test"] == 1
    assert b"retdm.ignore" not in pq.read_schema(tmp_path / "labels.parquet").metadata


def test_voc2007_difficult_ignore(tmp_path):
    root = make_voc(tmp_path / "voc", VOC_TRAINVAL, VOC_TEST)
    import_voc2007(root, difficult="ignore")
    table, source = read_back(root / "labels.parquet")
    np.testing.assert_array_equal(table.labels(), voc_expected())
    meta = pq.read_schema(root / "labels.parquet").metadata
    ignore = json.loads(meta[b"retdm.ignore"])
    assert {c: v for c, v in ignore.items() if v} == {"person": ["000005"], "car": ["000012"], "bus": ["000004"]}
    assert set(ignore) == set(VOC_CLASSES) and source["difficult"] == "ignore"
    assert not [p for p in root.iterdir() if p.name.startswith(".labels.parquet")]  # no temporary left behind
    # The pipeline's split keeps the official split and the ignored entries; evaluation reads them back.
    resplit_table(root / "labels.parquet", tmp_path / "split.parquet", keep_official=True)
    test = read_label_table(tmp_path / "split.parquet").split("test")
    mask = ignore_mask(tmp_path / "split.parquet", test)
    assert mask.sum() == source["counts"]["difficult_pairs_test"] == 1
    row, col = np.argwhere(mask)[0]
    assert test.frame["image_id"][row] == "000004" and VOC_CLASSES[col] == "bus"
    with pytest.raises(ConfigError, match=r"difficult must be one of \('negative', 'ignore'\), got 'skip'"):
        import_voc2007(root, difficult="skip")


def test_voc2007_bad_input(tmp_path):
    root = make_voc(tmp_path / "voc", VOC_TRAINVAL, VOC_TEST)
    main = root / "VOCdevkit/VOC2007/ImageSets/Main"
    good = (main / "cat_trainval.txt").read_text()
    (main / "cat_trainval.txt").write_text(good.replace("000007 -1", "000007  2"))
    with pytest.raises(DataError, match=r"cat_trainval.txt, line 2: expected '<image id> <-1\|0\|1>', got '000007  2'"):
        import_voc2007(root / "VOCdevkit")
    (main / "cat_trainval.txt").write_text(good)
    (root / "VOCdevkit/VOC2007/JPEGImages/000002.jpg").unlink()
    with pytest.raises(DataError, match=r"image 000002 has no file .*000002.jpg; re-extract VOCtest_06-Nov-2007.tar"):
        import_voc2007(root)
    (main / "cow_test.txt").unlink()
    with pytest.raises(DataError, match=r"cow_test.txt: class file not found \(1 of 40 missing\)"):
        import_voc2007(root)
    assert not (root / "labels.parquet").exists()


# --- nuswide ---------------------------------------------------------------------------------------

NUS_TRAIN = [("actor/0001_2124494179.jpg", {"person"}), ("airport/0002_451992414.jpg", {"sky", "plane"}),
             ("beach/0003_1030225421.jpg", {"sky", "water"}), ("beach/0004_55555.jpg", set())]
NUS_TEST = [("actor/0005_66666.jpg", {"person", "sky"}), ("water/0006_77777.jpg", {"water"}),
            ("water/0007_88888.jpg", set())]
NUS_CONCEPTS = ["person", "plane", "sky", "water"]


def nus_expected(entries, concepts) -> np.ndarray:
    return np.array([[int(c in tags) for c in concepts] for _, tags in entries], np.uint8)


def test_nuswide(tmp_path):
    order = ["water", "sky", "person", "plane"]
    root = make_nuswide(tmp_path / "nus", NUS_CONCEPTS, NUS_TRAIN, NUS_TEST, concept_list=order)
    import_nuswide(root)
    table, source = read_back(root / "labels.parquet")
    assert table.label_names == tuple(order) and source["concept_order_from"].endswith("Concepts81.txt")
    np.testing.assert_array_equal(table.labels(), nus_expected(NUS_TRAIN + NUS_TEST, order))
    assert table.frame["image_id"][0] == "actor/0001_2124494179"
    assert table.frame["split"].tolist() == ["train"] * 4 + ["test"] * 3
    assert_paths_resolve(table)
    assert source["counts"]["train"]["unlabelled"] == 1 and source["counts"]["images"] == 7


def test_nuswide_missing_images_and_own_image_folder(tmp_path):
    images = tmp_path / "elsewhere" / "imgs"
    root = make_nuswide(tmp_path / "nus", NUS_CONCEPTS, NUS_TRAIN, NUS_TEST, images=images,
                        absent={"beach/0003_1030225421.jpg", "water/0007_88888.jpg"})
    with pytest.raises(DataError, match=r"TrainImagelist.txt, line 3: image .*beach/0003_1030225421.jpg does not "
                                        r"exist \(1 of 4 missing\); .* missing='drop'"):
        import_nuswide(root, images=images)
    assert not (root / "labels.parquet").exists()
    t = import_nuswide(root, images=images, missing="drop", drop_unlabelled=True)
    assert t.label_names == tuple(NUS_CONCEPTS)  # no Concepts81.txt: sorted
    assert t.frame["image_id"].tolist() == ["actor/0001_2124494179", "airport/0002_451992414", "actor/0005_66666",
                                            "water/0006_77777"]
    np.testing.assert_array_equal(t.labels(), nus_expected([NUS_TRAIN[0], NUS_TRAIN[1], *NUS_TEST[:2]], NUS_CONCEPTS))
    counts = json.loads(t.source)["counts"]
    assert counts["train"]["dropped_missing"] == 1 and counts["train"]["dropped_unlabelled"] == 1
    assert counts["test"]["dropped_missing"] == 1 and counts["test"]["dropped_unlabelled"] == 0
    assert_paths_resolve(read_label_table(root / "labels.parquet"))


def test_nuswide_line_count_mismatch(tmp_path):
    root = make_nuswide(tmp_path / "nus", NUS_CONCEPTS, NUS_TRAIN, NUS_TEST)
    label = root / "Groundtruth/TrainTestLabels/Labels_sky_Test.txt"
    label.write_bytes(label.read_bytes() + b"0\r\n")
    with pytest.raises(DataError, match=r"Labels_sky_Test.txt has 4 lines but .*TestImagelist.txt lists 3 images"):
        import_nuswide(root)
    (root / "Groundtruth/TrainTestLabels/Labels_plane_Test.txt").unlink()
    with pytest.raises(DataError, match=r"Labels_plane_Test.txt: label file not found"):
        import_nuswide(root)
    assert not (root / "labels.parquet").exists()
