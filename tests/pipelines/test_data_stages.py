"""The data stages' entry points (download, split, validate, cache) on a user's own label table, run
in a temporary project directory: where the images are looked for, every image decoded before
training, and the user's files declared as the download stage's ``inputs``."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from retdm.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mine(tmp_path, monkeypatch):
    """A project directory (the repository's params.yaml, one dataset ``mine`` of ``source: table``
    whose images live outside it, in ``<tmp>/user/images``) as the working directory."""
    from retdm.data.synthetic import make_synthetic

    user = tmp_path / "user"
    make_synthetic(user, num_images=60, image_size=32, progress=False)
    project = tmp_path / "project"
    project.mkdir()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["datasets"] = {"mine": {"source": "table", "table": str(user / "labels.parquet"), "inputs": str(user),
                                   "official_split": False, "train": {}}}
    params["sweep"]["datasets"] = []
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(project)
    return user


def set_train(overrides):
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["datasets"]["mine"]["train"] = overrides
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def download_and_split():
    from pipelines import download, split

    download.main("mine")
    split.main("mine")


def test_a_table_dataset_is_validated_where_its_images_are(mine):
    """The split table records its images' root (the user's folder), not data/<ds>/raw."""
    from pipelines import validate

    download_and_split()
    validate.main("mine")
    report = json.loads(Path("reports/validation/mine.json").read_text())
    assert report["success"]
    [images] = [r for r in report["results"] if r["batch"] == "images"]
    assert images["element_count"] == 60 and images["unexpected_count"] == 0


@pytest.mark.parametrize("image_cache", [False, True])
def test_the_cache_stage_decodes_every_image_and_lists_the_bad_ones(mine, image_cache):
    """A truncated image outside validate's sample stops the pipeline here, before any training,
    whether or not the dataset caches its images."""
    from pipelines import cache

    set_train({"data": {"image_cache": image_cache, "resize": 36, "image_size": 32}})
    download_and_split()
    for name in ("000013.png", "000042.png"):
        data = (mine / "images" / name).read_bytes()
        (mine / "images" / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"2 of 60 image file\(s\) cannot be read: .*000013\.png: cannot be decoded "
                                        r".*000042\.png: cannot be decoded"):
        cache.main("mine")
    assert not Path("data/mine/cache").exists()


def test_download_refuses_a_user_file_outside_inputs(mine, tmp_path):
    from pipelines.download import download

    spec = {"source": "table", "table": str(mine / "labels.parquet"), "inputs": str(mine / "images"),
            "official_split": False, "train": {}}
    with pytest.raises(ConfigError, match=r"datasets.mine.inputs is '.*user/images', but table \(.*labels.parquet\) "
                                          r"lies outside it, so DVC would not see it change"):
        download("mine", spec, Path("data/mine/raw"))
    shutil.copy(mine / "labels.parquet", tmp_path / "elsewhere.parquet")  # no recorded root: images beside it
    spec.update(table=str(tmp_path / "elsewhere.parquet"), inputs=str(tmp_path / "elsewhere.parquet"))
    with pytest.raises(ConfigError, match=r"but table's retdm.root \(.*\) lies outside it"):
        download("mine", spec, Path("data/mine/raw"))
    spec.update(inputs=str(tmp_path))  # holds the project (this working directory) too
    with pytest.raises(ConfigError, match=r"which holds this repository"):
        download("mine", spec, Path("data/mine/raw"))
    assert not Path("data").exists()


def test_every_dataset_must_name_its_inputs(mine):
    from pipelines.params import load_params

    params = yaml.safe_load(Path("params.yaml").read_text())
    del params["datasets"]["mine"]["inputs"]
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ConfigError, match=r"datasets.mine lacks \['inputs'\]; every dataset names its `source`, "
                                          r"its `inputs`"):
        load_params()
