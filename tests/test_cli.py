"""The command line: help, listings, and bad input that exits non-zero with a useful message."""

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from retdm.cli import main


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"], ["data", "synth"], ["data", "import"],
                                     ["data", "get"], ["data", "mulan"]])
def test_every_command_has_help(command):
    code, out, _ = run(*command, "--help")
    assert code == 0 and "Usage:" in out and len(out.splitlines()) > 5


def test_listings():
    assert {"small_cnn", "vgg16", "resnet18", "resnet50", "efficientnet_lite0"} <= set(
        line.split()[0] for line in run("backbones")[1].splitlines())
    methods = {line.split()[0]: line for line in run("methods")[1].splitlines()}
    assert {"bce", "bce_ft", "linear_probe", "retdm", "retdm_oneway", "retdm_imgnbr", "asl", "center_loss", "mlknn",
            "lmmo_knn", "mlspl", "c2ae"} == set(methods)
    assert "pretrain → features → fit" in methods["mlknn"] and "pretrain → embed → finetune" in methods["retdm"]
    assert methods["linear_probe"].split()[1] == "probe"
    assert {"synthetic", "folder", "scene", "mirflickr", "coco", "voc2007", "nuswide", "mulan"} == set(
        line.split()[0] for line in run("datasets")[1].splitlines())
    assert "mlp" in run("backbones")[1]


def test_data_get_imports_an_official_layout_in_place_and_says_what_to_fetch_offline(tmp_path, monkeypatch):
    import sys

    import numpy as np

    sys.path.insert(0, str(Path(__file__).parent / "data"))
    from official_layouts import make_scene

    targets = -np.ones((5, 6))
    targets[np.arange(6) % 5, np.arange(6)] = 1
    make_scene(tmp_path / "miml", targets)
    code, out, err = run("data", "get", "scene", "--from", tmp_path / "miml", "--out", tmp_path / "scene.parquet")
    assert code == 0 and "wrote 6 images with 5 labels" in out, err
    monkeypatch.chdir(tmp_path)
    code, _, err = run("data", "get", "voc2007", "--offline")
    assert code == 1 and "data/voc2007/download/VOCtest_06-Nov-2007.tar (md5 b6e924de25625d8de591ea690078ad9f" in err
    code, _, err = run("data", "get", "voc2007", "--from", tmp_path / "miml")
    assert code == 1 and "VOCdevkit/VOC2007/JPEGImages" in err
    code, out, _ = run("data", "describe", "mirflickr")
    assert code == 0 and "a23d0a8564ee84cda5622a6c2f947785" in out


def test_unknown_names_list_the_valid_ones(tiny_table, tmp_path):
    code, _, err = run("train", "--data", tiny_table, "--out", tmp_path / "r", "--method", "retdn")
    assert code == 1 and "unknown method 'retdn'" in err and "bce, bce_ft, c2ae, center_loss, linear_probe, lmmo_knn, mlknn, mlspl, retdm, retdm_imgnbr, retdm_oneway" in err
    code, _, err = run("train", "--data", tiny_table, "--out", tmp_path / "r", "--set", "model.backbone=vgg61")
    assert code == 1 and "unknown backbone 'vgg61'" in err and "small_cnn" in err
    code, _, err = run("train", "--data", tiny_table, "--out", tmp_path / "r", "--profile", "gpu")
    assert code == 1 and "unknown profile 'gpu'" in err
    code, _, err = run("train", "--data", tiny_table, "--out", tmp_path / "r", "--set", "loss.alhpa=1")
    assert code == 1 and "loss.alhpa" in err
    assert not (tmp_path / "r").exists()  # nothing written


@pytest.mark.parametrize("pair, expected", [
    ("optim.momentum=-5", "config key 'optim.momentum': expected in [0, 1), got -5.0"),
    ("optim.weight_decay=-1", "config key 'optim.weight_decay': expected >= 0, got -1.0"),
    ("optim.lr_factor=10", "config key 'optim.lr_factor': expected in (0, 1) (it shrinks the lr), got 10.0"),
    ("data.num_workers=-1", "config key 'data.num_workers': expected >= 0 (0: load in the main process), got -1"),
    ("device=tpu", "config key 'device': expected auto, cpu, cuda or cuda:<index>, got 'tpu'"),
])
def test_out_of_range_config_values_are_one_line_errors(tiny_table, tmp_path, pair, expected):
    code, _, err = run("train", "--data", tiny_table, "--out", tmp_path / "r", "--set", pair)
    assert code == 1 and err == f"error: {expected}\n"
    assert not (tmp_path / "r").exists()


def test_set_reads_exponent_floats_as_floats():
    from retdm.cli import resolve_config

    cfg = resolve_config("cpu", ("pretrain.lr=1e-3", "pretrain.min_lr=1E-4", "loss.alpha=2e-4"), None)
    assert (cfg.pretrain.lr, cfg.pretrain.min_lr, cfg.loss.alpha) == (1e-3, 1e-4, 2e-4)


def one_epoch(cfg):
    import dataclasses

    return dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, epochs=1))


def copy_dataset(tiny_table, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(tiny_table.parent, root)
    return root


def test_missing_and_corrupt_images_are_named(tiny_table, tmp_path):
    root = copy_dataset(tiny_table, tmp_path)
    victim = sorted((root / "images").iterdir())[3]
    victim.unlink()
    code, _, err = run("train", "--data", root / "labels.parquet", "--out", tmp_path / "r", "--quiet")
    assert code == 1 and victim.name in err and "missing" in err and "restore" in err
    victim.write_bytes(b"not an image")
    code, _, err = run("train", "--data", root / "labels.parquet", "--out", tmp_path / "r", "--quiet")
    assert code == 1 and victim.name in err and "cannot be decoded" in err
    assert not (tmp_path / "r").exists()


def test_bad_csv_value_and_empty_dataset(tmp_path, tiny_table):
    root = copy_dataset(tiny_table, tmp_path)
    csv = tmp_path / "labels.csv"
    csv.write_text("image,sky,sea\nimages/000000.png,1,0\nimages/000001.png,yes,1\n")
    code, _, err = run("data", "import", root, csv, "--out", tmp_path / "t.parquet")
    assert code == 1 and "line 3, column 'sky': expected 0 or 1, got 'yes'" in err
    csv.write_text("image,sky,sea\n")
    code, _, err = run("data", "import", root, csv, "--out", tmp_path / "t.parquet")
    assert code == 1 and "empty" in err
    assert not (tmp_path / "t.parquet").exists()


def test_synth_refuses_a_folder_of_imported_images_unless_forced(tmp_path):
    mine = tmp_path / "photos"
    mine.mkdir()
    from PIL import Image

    for i in range(4):  # real images: the import decodes every one
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(mine / f"{i}.jpg")
    csv = tmp_path / "labels.csv"
    csv.write_text("image,sky,sea\n" + "".join(f"{i}.jpg,{i % 2},1\n" for i in range(4)))
    assert run("data", "import", mine, csv)[0] == 0  # writes photos/labels.parquet
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    code, _, err = run("data", "synth", "--out", mine, "--num-images", 3, "--image-size", 32)
    assert code == 1 and len(err.splitlines()) == 1 and "0.jpg" in err and "--force" in err
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv", "photos"]
    code, out, err = run("data", "synth", "--out", mine, "--num-images", 3, "--image-size", 32, "--force")
    assert code == 0 and "wrote 3 images" in out, err
    assert sorted(p.name for p in mine.iterdir()) == ["images", "labels.parquet"]


def test_train_refuses_a_label_without_a_train_positive(tmp_path, tiny_table):
    root = copy_dataset(tiny_table, tmp_path)
    csv = tmp_path / "labels.csv"
    split = lambda i: "test" if i < 4 else "train"  # noqa: E731
    csv.write_text("image,sky,sea,split\n" + "".join(
        f"images/{i:06d}.png,{i % 2},{int(i < 2)},{split(i)}\n" for i in range(20)))  # sea: test rows only
    assert run("data", "import", root, csv, "--out", tmp_path / "t.parquet")[0] == 0
    code, _, err = run("train", "--data", tmp_path / "t.parquet", "--out", tmp_path / "r", "--quiet")
    assert code == 1 and len(err.splitlines()) == 1
    assert "label(s) ['sea'] have no positive in the train split (16 rows)" in err and "drop" in err
    assert not (tmp_path / "r").exists()


def test_evaluating_on_a_table_with_other_labels_fails(tmp_path, tiny_table, tiny_cfg):
    root = copy_dataset(tiny_table, tmp_path)
    csv = tmp_path / "labels.csv"
    rows = "".join(f"images/{i:06d}.png,{i % 2},{1 - i % 2}\n" for i in range(20))
    csv.write_text("image,sky,sea\n" + rows)
    code, _, _ = run("data", "import", root, csv, "--out", tmp_path / "two.parquet")
    assert code == 0
    # a checkpoint trained on the 10-label table cannot score a 2-label table
    from retdm.train.run import train_method

    cfg = one_epoch(tiny_cfg)
    best = train_method(tiny_table, tmp_path / "run", cfg, "bce", progress=False)
    code, _, err = run("evaluate", "--data", tmp_path / "two.parquet", "--checkpoint", best)
    assert code == 1 and "differ" in err and "2 labels" not in err and "['sky', 'sea']" in err


def test_evaluate_and_predict_write_parquet(tmp_path, tiny_table, tiny_cfg):
    import pandas as pd
    import pyarrow.parquet as pq

    from retdm.train.run import train_method

    cfg = one_epoch(tiny_cfg)
    train_method(tiny_table, tmp_path / "run", cfg, "bce", progress=False)
    code, out, err = run("evaluate", "--data", tiny_table, "--runs", tmp_path / "run", "-m", "bce",
                         "--out", tmp_path / "m.parquet")
    assert code == 0, err
    metrics = pd.read_parquet(tmp_path / "m.parquet")
    assert list(metrics.columns) == ["dataset", "method", "seed", "metric", "value", "lower_is_better"]
    assert len(metrics) == 13 and set(metrics["method"]) == {"bce"} and "mAP" in out
    preds = pd.read_parquet(tmp_path / "m_bce_predictions.parquet")
    assert len(preds) == 24 and preds.shape[1] == 11
    meta = json.loads(pq.read_schema(tmp_path / "m_bce_predictions.parquet").metadata[b"retdm"])
    assert len(meta["checkpoint_sha256"]) == 64 and meta["data_sha256"] and meta["split"] == "test"
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|retdm-.+", meta["code_revision"])
    assert meta["trained_code_revision"] == meta["code_revision"]
    code, _, err = run("predict", "--checkpoint", tmp_path / "run/bce/pretrain/best.pt",
                       "--images", tiny_table.parent / "images", "--out", tmp_path / "p.parquet")
    assert code == 0, err
    pred = pd.read_parquet(tmp_path / "p.parquet")
    assert len(pred) == 120 and pred["circle"].between(0, 1).all() and "labels" in pred.columns


def test_thresholds_command_and_predict_with_tuned_or_global_thresholds(tmp_path, tiny_table, tiny_cfg):
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from retdm.train.run import train_method

    assert run("thresholds", "--help")[0] == 0
    train_method(tiny_table, tmp_path / "run", one_epoch(tiny_cfg), "bce", progress=False)
    ckpt, images = tmp_path / "run/bce/pretrain/best.pt", tiny_table.parent / "images"
    code, _, err = run("predict", "--checkpoint", ckpt, "--images", images, "--out", tmp_path / "p.parquet",
                       "--thresholds", "tuned")
    assert code == 1 and f"{ckpt.parent / 'thresholds.json'}: no tuned thresholds" in err
    assert "retdm thresholds --data TABLE --runs RUNS -m METHOD" in err and not (tmp_path / "p.parquet").exists()
    code, out, err = run("thresholds", "--data", tiny_table, "--runs", tmp_path / "run", "-m", "bce")
    assert code == 0 and "on 19 validation rows" in out, err
    tuned = json.loads((ckpt.parent / "thresholds.json").read_text())
    assert tuned["mode"] == "per_class" and tuned["tuned_on"]["split"] == "validation"
    th = np.array(list(tuned["thresholds"].values()))  # (M,)
    names = list(tuned["thresholds"])

    code, _, err = run("predict", "--checkpoint", ckpt, "--images", images, "--out", tmp_path / "p.parquet",
                       "--thresholds", "tuned")
    assert code == 0, err
    pred = pd.read_parquet(tmp_path / "p.parquet")
    assert list(pred.columns) == ["image", *names, "labels"] and len(pred) == 120
    expected = [[n for n, hit in zip(names, row) if hit] for row in pred[names].to_numpy() >= th[None, :]]
    assert [list(x) for x in pred["labels"]] == expected
    assert any(e != [n for n, s in zip(names, row) if s >= 0.5] for e, row in zip(expected, pred[names].to_numpy()))
    meta = json.loads(pq.read_schema(tmp_path / "p.parquet").metadata[b"retdm"])
    assert meta["thresholds"] == tuned["thresholds"] and meta["thresholds_mode"] == "per_class"
    assert meta["thresholds_tuned_on"]["checkpoint_sha256"] == meta["checkpoint_sha256"]

    code, _, err = run("predict", "--checkpoint", ckpt, "--images", images, "--out", tmp_path / "p.csv",
                       "--thresholds", "0.3")
    assert code == 0, err
    csv = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert list(csv.columns) == ["image", *names, "labels"]
    assert csv["labels"].tolist() == [";".join(n for n, s in zip(names, row) if s >= 0.3)
                                      for row in pred[names].to_numpy()]
    code, _, err = run("predict", "--checkpoint", ckpt, "--images", images, "--out", tmp_path / "p.out",
                       "--format", "json", "--thresholds", ckpt.parent / "thresholds.json")
    assert code == 0, err
    doc = json.loads((tmp_path / "p.out").read_text())
    assert doc["thresholds"] == tuned["thresholds"] and len(doc["predictions"]) == 120
    first = doc["predictions"][0]
    assert set(first) == {"image", *names, "labels"} and first["labels"] == expected[0]
    assert abs(first[names[0]] - pred[names[0]].iloc[0]) < 1e-7
    code, _, err = run("predict", "--checkpoint", ckpt, "--images", images, "--out", tmp_path / "p.txt")
    assert code == 1 and "--format parquet|csv|json" in err and not (tmp_path / "p.txt").exists()
    code, _, err = run("predict", "--checkpoint", ckpt, "--images", images, "--out", tmp_path / "p2.csv",
                       "--thresholds", "1.5")
    assert code == 1 and "--thresholds: expected a number in [0, 1]" in err and "'1.5'" in err
    assert not (tmp_path / "p2.csv").exists()
