"""The α × β grid: every point continues the same pretrain model and lands in one table."""

import pandas as pd
import pytest
import torch

from retdm.errors import DataError
from retdm.provenance import read_provenance
from retdm.sweep import POINT_METRICS, gather_grid, point_name, sensitivity_grid, sweep_point
from retdm.checkpoint import load_checkpoint
from retdm.train.run import train_method


def test_every_point_continues_the_shared_pretrain_and_is_evaluated(tiny_table, tiny_cfg, tmp_path):
    pretrain = train_method(tiny_table, tmp_path / "runs", tiny_cfg, "bce", progress=False)
    grid = sensitivity_grid(tiny_table, pretrain, tmp_path / "sweep", tiny_cfg, [0.01, 1.0], [1.0],
                            tmp_path / "grid.parquet", progress=False)
    assert list(grid[["alpha", "beta"]].itertuples(index=False, name=None)) == [(0.01, 1.0), (1.0, 1.0)]
    assert grid["CF1"].between(0, 1).all() and grid["mAP"].between(0, 1).all()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "grid.parquet"), grid)
    assert read_provenance(tmp_path / "grid.parquet")["pretrain_sha256"]
    finals = []
    for alpha in (0.01, 1.0):
        run = tmp_path / "sweep" / point_name(alpha, 1.0)
        assert load_checkpoint(run / "bce" / "pretrain" / "best.pt")["model"].keys()
        record = load_checkpoint(run / "retdm" / "finetune" / "best.pt")
        assert record["config"]["loss"]["alpha"] == alpha and record["config"]["loss"]["beta"] == 1.0
        finals.append(record["model"])
    # The same start, another alpha: the models part ways.
    assert any(not torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


def test_the_grid_gathers_exactly_its_points_and_names_a_missing_or_foreign_one(tiny_table, tiny_cfg, tmp_path):
    pretrain = train_method(tiny_table, tmp_path / "runs", tiny_cfg, "bce", progress=False)
    rows = [sweep_point(tiny_table, pretrain, tmp_path / "sweep", tiny_cfg, a, 1.0, progress=False) for a in (0.1, 1)]
    assert [r["alpha"] for r in rows] == [0.1, 1] and (tmp_path / "sweep" / "alpha1_beta1.0" / POINT_METRICS).is_file()
    grid = gather_grid(tmp_path / "sweep", [1, 0.1], [1.0], tmp_path / "grid.parquet")  # params order, not disk order
    assert grid["alpha"].tolist() == [1, 0.1] and grid.loc[0, "CF1"] == rows[1]["CF1"]
    assert read_provenance(tmp_path / "grid.parquet")["threshold"] == 0.5
    before = (tmp_path / "grid.parquet").read_bytes()
    with pytest.raises(DataError, match=r"alpha0.01_beta1.0/metrics.parquet: missing.*dvc repro"):
        gather_grid(tmp_path / "sweep", [0.1, 0.01], [1.0], tmp_path / "grid.parquet")
    sweep_point(tiny_table, pretrain, tmp_path / "sweep", tiny_cfg, 0.01, 1.0, threshold=0.3, progress=False)
    with pytest.raises(DataError, match=r"alpha0.01_beta1.0/metrics.parquet: trained from another .*threshold"):
        gather_grid(tmp_path / "sweep", [0.1, 0.01], [1.0], tmp_path / "grid.parquet")
    assert (tmp_path / "grid.parquet").read_bytes() == before  # a failed gather leaves the old table
