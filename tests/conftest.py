"""Shared fixtures: a tiny `synthetic` dataset and a config that trains on it in seconds."""

import os
import tempfile

import pytest

from tests.project_copy import isolated_environ
from tests.tiny_params import TINY_CONFIG as TINY

os.environ.setdefault("TQDM_DISABLE", "1")
# No analytics, no shared state outside the test run (DVC site cache, Prefect home): DESIGN §4.
os.environ.update(isolated_environ(tempfile.mkdtemp(prefix="retdm-tests-")))


@pytest.fixture(scope="session")
def tiny_table(tmp_path_factory):
    """Path of a 120-image, 32 px `synthetic` label table."""
    from retdm.data.synthetic import make_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic(out, num_images=120, image_size=32, seed=0, progress=False)
    return out / "labels.parquet"


@pytest.fixture
def tiny_cfg():
    from retdm.config import load_config

    return load_config("cpu", dict(TINY))
