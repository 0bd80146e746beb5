"""Tests of the on-disk image cache (retdm.data.image_cache)."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from retdm.data import transforms
from retdm.data.image_cache import ImageCache, build_image_cache, cached_loader, shard_name
from retdm.data.images import read_image
from retdm.data.synthetic import make_synthetic
from retdm.data.table import LabelTable
from retdm.errors import DataError

N, SIZE, SHARD = 40, 20, 16  # 3 shards: 16 + 16 + 8


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> LabelTable:
    return make_synthetic(tmp_path_factory.mktemp("syn"), num_images=N, image_size=32, seed=1, progress=False)


@pytest.fixture(scope="module")
def built(table, tmp_path_factory):
    return build_image_cache(table, tmp_path_factory.mktemp("c") / "cache", size=SIZE, shard_size=SHARD,
                             progress=False)


def _original(table: LabelTable, i: int, size: int) -> torch.Tensor:
    return TF.resize(read_image(table.root / table.frame["path"].iloc[i]), [size, size], antialias=True)


def _tree(path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _leftovers(parent) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_every_image_equals_resized_original(table, built):
    cache = ImageCache(built, expect_size=SIZE, expect_table=table)
    assert len(cache) == N and cache.size == SIZE
    assert cache.image_ids == table.frame["image_id"].tolist()
    for i, image_id in enumerate(table.frame["image_id"]):
        got = cache.get(image_id)
        assert got.dtype == torch.uint8 and got.shape == (3, SIZE, SIZE)
        assert torch.equal(got, _original(table, i, SIZE)), image_id


def test_upscaling_is_exact_too(table, tmp_path):
    out = build_image_cache(table.take(np.arange(5)), tmp_path / "big", size=45, progress=False)
    cache = ImageCache(out)
    for i in range(5):
        assert torch.equal(cache.at(i), _original(table, i, 45))


def test_layout_shards_and_index(table, built):
    meta = json.loads((built / "cache.json").read_text())
    assert meta["format"] == 1 and meta["size"] == SIZE and meta["count"] == N
    assert meta["shard_size"] == SHARD and meta["shards"] == 3 and len(meta["table_sha256"]) == 64
    shapes = [np.load(built / shard_name(k), mmap_mode="r").shape for k in range(3)]
    assert shapes == [(16, 3, SIZE, SIZE), (16, 3, SIZE, SIZE), (8, 3, SIZE, SIZE)]
    assert not (built / shard_name(3)).exists()
    cache = ImageCache(built)
    assert cache.index["shard"].tolist() == [i // SHARD for i in range(N)]
    assert cache.index["row"].tolist() == [i % SHARD for i in range(N)]
    # Images on both sides of each shard boundary.
    for i in (15, 16, 31, 32, N - 1):
        assert torch.equal(cache.at(i), _original(table, i, SIZE))


def test_rows_and_loader(table, built):
    cache = ImageCache(built)
    ids = table.frame["image_id"].tolist()
    picked = [ids[33], ids[2], ids[17]]
    assert cache.rows(picked).tolist() == [33, 2, 17]
    test = table.split("test")
    load = cached_loader(cache, test.frame["image_id"])
    for i in range(len(test)):
        assert torch.equal(load(i), _original(test, i, SIZE))
    image = load(0)
    image += 1  # a private copy: the read-only shard is untouched
    assert torch.equal(load(0), _original(test, 0, SIZE))


def test_train_crops_byte_identical_test_resize_differs(table, built):
    spec = transforms.TransformSpec(image_size=16, resize=SIZE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    cache = ImageCache(built, expect_size=spec.resize)
    train, test = transforms.TrainTransform(spec), transforms.TestTransform(spec)
    differs = 0
    for i, image_id in enumerate(table.frame["image_id"][:10]):
        original = read_image(table.root / table.frame["path"].iloc[i])
        torch.manual_seed(i)
        a = train(original)
        torch.manual_seed(i)
        assert torch.equal(train(cache.get(image_id)), a)
        differs += not torch.equal(test(cache.get(image_id)), test(original))
    assert differs > 0  # the documented second resampling of the test transform


def test_pickle_sends_no_pixels(table, built):
    load = cached_loader(ImageCache(built), table.frame["image_id"])
    blob = pickle.dumps(load)
    assert len(blob) < N * 3 * SIZE * SIZE
    again = pickle.loads(blob)
    assert torch.equal(again(7), load(7))


def test_threads_match_single(table, built, tmp_path):
    out = build_image_cache(table, tmp_path / "one", size=SIZE, shard_size=SHARD, workers=1, progress=False)
    assert _tree(out) == _tree(built)


def test_absent_image_id(built):
    cache = ImageCache(built)
    with pytest.raises(DataError, match=r"'nope'.*rebuild"):
        cache.get("nope")
    with pytest.raises(DataError, match="2 image_id"):
        cache.rows(["nope", "syn_000001", "other"])


def test_size_mismatch(built):
    with pytest.raises(DataError, match=rf"{SIZE} px, but 73 px.*size=73"):
        ImageCache(built, expect_size=73)


def test_missing_or_corrupt_metadata(built, tmp_path):
    with pytest.raises(DataError, match="no cache.json.*build_image_cache"):
        ImageCache(tmp_path / "absent")
    broken = tmp_path / "broken"
    shutil.copytree(built, broken)
    (broken / "cache.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON.*rebuild"):
        ImageCache(broken)
    (broken / "cache.json").write_text(json.dumps({"format": 1, "size": "20"}))
    with pytest.raises(DataError, match="lacks or mistypes.*'size'"):
        ImageCache(broken)
    meta = json.loads((built / "cache.json").read_text())
    (broken / "cache.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(DataError, match="format 99"):
        ImageCache(broken)
    (broken / "cache.json").write_text(json.dumps(meta))
    (broken / shard_name(2)).unlink()
    with pytest.raises(DataError, match="shard_00002.npy"):
        ImageCache(broken)


def test_stale_table(table, built, tmp_path):
    ImageCache(built, expect_table=table.split("train"))  # a split of the cached table is fine
    moved = table.frame.copy()
    moved.loc[3, "path"] = moved.loc[4, "path"]
    with pytest.raises(DataError, match=r"stale: image_id 'syn_000003'.*rebuild"):
        ImageCache(built, expect_table=LabelTable(moved, table.label_names, table.root, table.name))
    extra = table.frame.copy()
    extra.loc[0, "image_id"] = "new_image"
    with pytest.raises(DataError, match="'new_image'"):
        ImageCache(built, expect_table=LabelTable(extra, table.label_names, table.root, table.name))


def test_missing_image_leaves_nothing(table, built, tmp_path):
    frame = table.frame.copy()
    frame.loc[21, "path"] = "images/gone.png"
    bad = LabelTable(frame, table.label_names, table.root, table.name)
    with pytest.raises(DataError, match=r"syn_000021.*gone\.png"):
        build_image_cache(bad, tmp_path / "new", size=SIZE, progress=False)
    assert not (tmp_path / "new").exists() and _leftovers(tmp_path) == []
    before = _tree(built)
    with pytest.raises(DataError, match="syn_000021"):
        build_image_cache(bad, built, size=SIZE, progress=False)
    assert _tree(built) == before and _leftovers(built.parent) == []


def test_undecodable_image_leaves_previous_cache(table, built, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(table.root / "images", root / "images")
    (root / "images" / "000030.png").write_bytes(b"not a png")
    bad = LabelTable(table.frame, table.label_names, root, table.name)
    out = tmp_path / "cache"
    shutil.copytree(built, out)
    with pytest.raises(DataError, match=r"syn_000030.*000030\.png.*cannot be decoded"):
        build_image_cache(bad, out, size=SIZE, shard_size=SHARD, workers=2, progress=False)
    assert _tree(out) == _tree(built) and _leftovers(tmp_path) == []


def test_rebuild_replaces_and_refuses_foreign_dir(table, built, tmp_path):
    out = tmp_path / "cache"
    shutil.copytree(built, out)
    build_image_cache(table.take(np.arange(6)), out, size=12, progress=False)
    cache = ImageCache(out, expect_size=12)
    assert len(cache) == 6 and not (out / shard_name(1)).exists()
    assert _leftovers(tmp_path) == []
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(DataError, match="refusing"):
        build_image_cache(table, foreign, size=12, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep"


def test_every_undecodable_image_is_listed_and_nothing_is_built(table, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(table.root / "images", root / "images")
    (root / "images" / "000007.png").write_bytes((root / "images" / "000007.png").read_bytes()[:60])  # truncated
    (root / "images" / "000033.png").write_text("not a png")
    bad = LabelTable(table.frame, table.label_names, root, table.name)
    with pytest.raises(DataError, match=r"2 of 40 image file\(s\) cannot be read: image_id 'syn_000007' .*000007\.png: "
                                        r"cannot be decoded .*; image_id 'syn_000033' .*000033\.png: "
                                        r"cannot be decoded"):
        build_image_cache(bad, tmp_path / "cache", size=SIZE, shard_size=SHARD, workers=2, progress=False)
    assert not (tmp_path / "cache").exists() and _leftovers(tmp_path) == []


def test_a_build_killed_mid_way_leaves_nothing_once_built_again(table, tmp_path):
    """The folder a killed build wrote its shards into (``.cache.<8 characters>.tmp``) goes with the next build."""
    (tmp_path / ".cache.a1b2c3d4.tmp").mkdir()
    (tmp_path / ".cache.a1b2c3d4.tmp" / shard_name(0)).write_bytes(b"half a shard")
    build_image_cache(table.take(np.arange(5)), tmp_path / "cache", size=SIZE, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
