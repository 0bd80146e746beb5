"""Sensitivity of RETDM to α and β (the paper's Fig. 5): one RETDM run per grid point, each
continuing the same shared BCE pretrain model with its own embed and finetune stages.

The paper plots C-F1 and O-F1 on the test split against α (the reconstruction weight of Eq. 6)
and β (the weight of way 2 in Eq. 5). The grid reports how the test metrics move with them; it
picks nothing (the method's α is chosen on the validation part: README).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from retdm.config import TrainConfig
from retdm.evaluate import evaluate_checkpoint
from retdm.methods import stage_dir
from retdm.provenance import file_sha256, write_parquet
from retdm.train.run import final_checkpoint, train_method


def point_name(alpha: float, beta: float) -> str:
    """The run folder of one grid point, e.g. ``alpha0.1_beta1``."""
    return f"alpha{alpha:g}_beta{beta:g}"


def sensitivity_grid(table_path: str | os.PathLike, pretrain: str | os.PathLike, out_dir: str | os.PathLike,
                     cfg: TrainConfig, alphas: list[float], betas: list[float], results: str | os.PathLike, *,
                     image_cache: str | os.PathLike | None = None, threshold: float = 0.5,
                     progress: bool = True) -> pd.DataFrame:
    """Train and evaluate RETDM at every (α, β) of ``alphas × betas`` from one pretrain model.

    Args:
        table_path: the split label table.
        pretrain: the shared pretrain stage's ``best.pt`` (the BCE model every point continues).
        out_dir: one run folder per point below it (:func:`point_name`).
        cfg: the RETDM config; each point replaces ``loss.alpha`` and ``loss.beta``.
        alphas: α values (x of the heat map).
        betas: β values (y).
        results: the Parquet file written: alpha, beta and every metric on the test split.
        image_cache: the table's image cache (see ``retdm.train.run.train_method``).
        threshold: score threshold of the label-based metrics.
        progress: show progress bars.

    Returns:
        The grid, one row per point.
    """
    rows = []
    points = [(a, b) for b in betas for a in alphas]
    for alpha, beta in tqdm(points, desc="alpha x beta", disable=not progress):
        run = Path(out_dir) / point_name(alpha, beta)
        start = stage_dir(run, "retdm", "pretrain") / "best.pt"
        start.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(pretrain, start)  # each point continues the very same BCE model
        point = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, alpha=alpha, beta=beta)).validate()
        train_method(table_path, run, point, "retdm", stages=("embed", "finetune"), progress=progress,
                     image_cache=image_cache)
        metrics, *_ = evaluate_checkpoint(final_checkpoint(run, "retdm"), table_path, threshold=threshold,
                                          image_cache=image_cache)
        rows.append({"alpha": alpha, "beta": beta, **metrics})
    grid = pd.DataFrame(rows)
    write_parquet(grid, results, {"what": "RETDM sensitivity to alpha x beta (test split)", "table": str(table_path),
                                  "table_sha256": file_sha256(table_path), "pretrain_sha256": file_sha256(pretrain),
                                  "config": cfg.to_dict(), "threshold": threshold})
    return grid
