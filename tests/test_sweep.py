"""The α × β grid: every point continues the same pretrain model and lands in one table."""

import pandas as pd
import torch

from retdm.provenance import read_provenance
from retdm.sweep import point_name, sensitivity_grid
from retdm.train.checkpoint import load_checkpoint
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
