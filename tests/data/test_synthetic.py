"""Tests of the embedded ``synthetic`` dataset generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retdm.data import synthetic
from retdm.data.registry import DATASETS
from retdm.data.synthetic import LABEL_NAMES, image_rng, make_synthetic, sample_labels
from retdm.data.table import read_label_table
from retdm.errors import ConfigError, DataError


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _image_bytes(root: Path, n: int) -> list[bytes]:
    return [(root / "images" / f"{i:06d}.png").read_bytes() for i in range(n)]


def test_registered():
    assert DATASETS.get("synthetic") is make_synthetic
    assert DATASETS.help("synthetic")


def test_label_names():
    assert len(LABEL_NAMES) == 10
    assert len(set(LABEL_NAMES)) == 10
    for name in LABEL_NAMES:
        assert name in synthetic.__doc__


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path):
    a = make_synthetic(tmp_path / "a", num_images=12, image_size=32, seed=3, progress=False)
    b = make_synthetic(tmp_path / "b", num_images=12, image_size=32, seed=3, progress=False)
    c = make_synthetic(tmp_path / "c", num_images=12, image_size=32, seed=4, progress=False)
    assert _image_bytes(tmp_path / "a", 12) == _image_bytes(tmp_path / "b", 12)
    assert a.frame.equals(b.frame)
    assert a.source == b.source
    assert (tmp_path / "a" / "labels.parquet").read_bytes() == (tmp_path / "b" / "labels.parquet").read_bytes()
    ca, cc = _image_bytes(tmp_path / "a", 12), _image_bytes(tmp_path / "c", 12)
    assert all(x != y for x, y in zip(ca, cc))
    assert not np.array_equal(a.labels(), c.labels())


def test_image_does_not_depend_on_count(tmp_path):
    a = make_synthetic(tmp_path / "a", num_images=20, image_size=32, seed=7, progress=False)
    b = make_synthetic(tmp_path / "b", num_images=40, image_size=32, seed=7, progress=False)
    assert _image_bytes(tmp_path / "a", 20) == _image_bytes(tmp_path / "b", 20)
    np.testing.assert_array_equal(a.labels(), b.labels()[:20])


def test_table_contract_and_images(tmp_path):
    n = 80
    out = tmp_path / "syn"
    returned = make_synthetic(out, num_images=n, image_size=48, seed=0, progress=False)
    table = read_label_table(out / "labels.parquet", expect_labels=LABEL_NAMES)
    assert table.frame.equals(returned.frame)
    assert returned.root == out
    assert table.name == "synthetic"
    assert table.num_labels == 10
    source = json.loads(table.source)
    assert source["generator"] == "retdm.data.synthetic"
    assert "version" in source
    opts = source["options"]
    for key in ("num_images", "image_size", "seed", "test_fraction", "noise", "clutter", "occlusion",
                "occlusion_size", "scale", "mix_prob", "repeat_prob", "supersample"):
        assert key in opts
    assert opts["num_images"] == n and opts["image_size"] == 48

    assert table.frame["image_id"].tolist() == [f"syn_{i:06d}" for i in range(n)]
    assert table.frame["path"].tolist() == [f"images/{i:06d}.png" for i in range(n)]
    y = table.labels()
    assert y.shape == (n, 10)
    assert (y.sum(axis=1) >= 1).all()
    assert (table.split("train").labels().sum(axis=0) > 0).all()
    assert (table.frame["split"] == "test").sum() == round(n * 0.2)
    assert (table.frame["split"] == "train").sum() == n - round(n * 0.2)

    assert sorted(p.name for p in out.iterdir()) == ["images", "labels.parquet"]
    assert len(list((out / "images").iterdir())) == n
    for rel in table.frame["path"][:10]:
        with Image.open(table.root / rel) as im:
            assert im.format == "PNG"
            assert im.mode == "RGB"
            assert im.size == (48, 48)
    # not blank: pixels vary
    assert np.asarray(Image.open(out / "images" / "000000.png")).std() > 5


def test_table_labels_follow_the_label_sampler(tmp_path):
    table = make_synthetic(tmp_path / "s", num_images=10, image_size=32, seed=5, mix_prob=0.3, progress=False)
    expected = np.stack([sample_labels(image_rng(5, i), 0.3)[0] for i in range(10)])
    np.testing.assert_array_equal(table.labels(), expected)


def test_label_statistics_and_correlation():
    # the labels of the first 1000 images of a dataset with seed 0 (the table's labels are these, see above)
    y = np.stack([sample_labels(image_rng(0, i))[0] for i in range(1000)]).astype(np.float64)
    per_image = y.sum(axis=1)
    assert per_image.min() >= 1
    assert 2.0 <= per_image.mean() <= 3.0
    freq = y.mean(axis=0)
    assert (freq >= 0.05).all(), freq
    lift = (y.T @ y / len(y)) / np.outer(freq, freq)
    off = lift[~np.eye(10, dtype=bool)]
    assert off.max() > 1.5
    assert off.min() < 0.7
    i, j = LABEL_NAMES.index("circle"), LABEL_NAMES.index("ring")  # same topic
    assert lift[i, j] > 1.5
    i, j = LABEL_NAMES.index("circle"), LABEL_NAMES.index("square")  # different topics
    assert lift[i, j] < 0.7


def test_failure_leaves_existing_dataset_untouched(tmp_path, monkeypatch):
    out = tmp_path / "syn"
    make_synthetic(out, num_images=6, image_size=32, seed=1, progress=False)
    before = _files(out)

    real = synthetic.render_image
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        if calls["n"] == 5:
            raise RuntimeError("boom at image 5")
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_image", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        make_synthetic(out, num_images=10, image_size=32, seed=2, progress=False)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]

    # and with no previous dataset, nothing at all is left
    calls["n"] = 0
    with pytest.raises(RuntimeError, match="boom"):
        make_synthetic(tmp_path / "fresh", num_images=10, image_size=32, seed=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]


def test_success_replaces_existing_dataset(tmp_path):
    out = tmp_path / "syn"
    make_synthetic(out, num_images=8, image_size=32, seed=1, progress=False)
    table = make_synthetic(out, num_images=5, image_size=32, seed=2, progress=False)
    assert len(table) == 5
    assert len(list((out / "images").iterdir())) == 5
    assert json.loads(read_label_table(out / "labels.parquet").source)["options"]["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]


def test_refuses_to_replace_a_non_dataset_directory(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(DataError, match=r"mine: holds files the synthetic generator did not write \(keep\.txt\)"):
        make_synthetic(out, num_images=3, image_size=32, progress=False)
    assert (out / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_refuses_a_generated_dataset_with_files_added_unless_overwrite(tmp_path):
    out = tmp_path / "syn"
    make_synthetic(out, num_images=3, image_size=32, progress=False)
    (out / "images" / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(DataError, match=r"images/holiday\.jpg.*--force"):
        make_synthetic(out, num_images=4, image_size=32, progress=False)
    assert (out / "images" / "holiday.jpg").read_bytes() == b"mine"
    assert len(read_label_table(out / "labels.parquet")) == 3
    assert len(make_synthetic(out, num_images=4, image_size=32, progress=False, overwrite=True)) == 4
    assert not (out / "images" / "holiday.jpg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_images": 0},
        {"image_size": 8},
        {"seed": -1},
        {"noise": -1.0},
        {"occlusion": 1.5},
        {"scale": (0.4, 0.2)},
        {"supersample": 0},
    ],
)
def test_bad_options_raise(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        make_synthetic(tmp_path / "x", progress=False, **{"num_images": 3, **kwargs})
    assert not (tmp_path / "x").exists()


def test_difficulty_knobs_change_images(tmp_path):
    a = make_synthetic(tmp_path / "a", num_images=3, image_size=32, seed=0, progress=False)
    b = make_synthetic(tmp_path / "b", num_images=3, image_size=32, seed=0, noise=0.0, clutter=0.0,
                       occlusion=0.0, progress=False)
    np.testing.assert_array_equal(a.labels(), b.labels())  # knobs change pixels, not labels
    assert _image_bytes(tmp_path / "a", 3) != _image_bytes(tmp_path / "b", 3)


def test_progress_bar_runs(tmp_path):
    make_synthetic(tmp_path / "p", num_images=2, image_size=32, progress=True)
    assert (tmp_path / "p" / "labels.parquet").is_file()


def test_a_build_killed_mid_way_leaves_nothing_once_built_again(tmp_path):
    """The folder a killed build wrote its images into (``.raw.<8 characters>.tmp``) goes with the next build."""
    stale = tmp_path / ".raw.a1b2c3d4.tmp"
    (stale / "images").mkdir(parents=True)
    make_synthetic(tmp_path / "raw", num_images=12, image_size=32, seed=3, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]
