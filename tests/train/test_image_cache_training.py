"""The image cache only saves decoding: a run that reads it gives the same weights and scores as
one that resizes the decoded files itself (``data.image_cache`` records ``source_size``)."""

import dataclasses

import numpy as np
import pytest
import torch

from retdm.data.image_cache import build_image_cache
from retdm.data.table import read_label_table
from retdm.errors import DataError
from retdm.evaluate import evaluate_checkpoint
from retdm.checkpoint import load_checkpoint
from retdm.train.features import export_features
from retdm.train.run import train_method


@pytest.fixture
def cached_cfg(tiny_cfg):
    return dataclasses.replace(tiny_cfg, data=dataclasses.replace(tiny_cfg.data, image_cache=True))


def test_training_and_evaluation_through_the_cache_equal_the_uncached_run(tiny_table, cached_cfg, tmp_path):
    cache = build_image_cache(read_label_table(tiny_table), tmp_path / "cache", size=cached_cfg.data.resize,
                              progress=False)
    with_cache = train_method(tiny_table, tmp_path / "a", cached_cfg, "bce", progress=False, image_cache=cache)
    without = train_method(tiny_table, tmp_path / "b", cached_cfg, "bce", progress=False)
    record = load_checkpoint(with_cache)
    assert record["transform"]["source_size"] == cached_cfg.data.resize
    for name, value in record["model"].items():
        torch.testing.assert_close(value, load_checkpoint(without)["model"][name], rtol=0, atol=0)
    _, scores_a, _, _ = evaluate_checkpoint(with_cache, tiny_table, image_cache=cache)
    _, scores_b, _, _ = evaluate_checkpoint(without, tiny_table)
    np.testing.assert_array_equal(scores_a, scores_b)
    feats_a = export_features(with_cache, tiny_table, tmp_path / "fa.parquet", image_cache=cache)
    feats_b = export_features(without, tiny_table, tmp_path / "fb.parquet")
    np.testing.assert_array_equal(feats_a.frame[feats_a.feature_columns], feats_b.frame[feats_b.feature_columns])


def test_without_source_size_the_test_transform_resizes_the_original_once(tiny_table, tiny_cfg, tmp_path):
    best = train_method(tiny_table, tmp_path / "run", tiny_cfg, "bce", progress=False)
    assert load_checkpoint(best)["transform"]["source_size"] == 0


def test_a_cache_of_another_size_is_refused(tiny_table, cached_cfg, tmp_path):
    cache = build_image_cache(read_label_table(tiny_table), tmp_path / "cache", size=cached_cfg.data.resize + 1,
                              progress=False)
    with pytest.raises(DataError, match="size"):
        train_method(tiny_table, tmp_path / "run", cached_cfg, "bce", progress=False, image_cache=cache)
