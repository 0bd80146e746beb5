"""Sensitivity of RETDM to α and β (the paper's Fig. 5): one RETDM run per grid point, each
continuing the same shared BCE pretrain model with its own embed and finetune stages.

The paper plots C-F1 and O-F1 on the test split against α and β of L = Lcls + α·(J1 + λ·J2) +
β·Jrec (Eq. 8, 13): α weighs the metric term, β the reconstruction term (λ, the weight of way 2,
stays at the config's value). The grid reports how the test metrics move with them; it
picks nothing (the method's α is chosen on the validation part: README).

Each point is trained and evaluated on its own (:func:`sweep_point`: the pipeline runs one DVC
stage per point, so points run in parallel on several workers) and the grid gathers the points'
rows into one table (:func:`gather_grid`); :func:`sensitivity_grid` does both in one process.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pandas as pd

from retdm.config import TrainConfig
from retdm.errors import DataError
from retdm.evaluate import evaluate_checkpoint
from retdm.inference import final_checkpoint
from retdm.log import bar
from retdm.methods import stage_dir
from retdm.provenance import file_sha256, read_provenance, write_parquet
from retdm.train.run import train_method

POINT_METRICS = "metrics.parquet"  # one point's row, in its run folder
GRID_WHAT = "RETDM sensitivity to alpha x beta (test split)"


def point_name(alpha: float, beta: float) -> str:
    """The run folder of one grid point, e.g. ``alpha0.1_beta1.0``: the values as Python (and
    DVC, whose ``dvc.yaml`` names each point's stage output with them) write them."""
    return f"alpha{alpha}_beta{beta}"


def grid_points(alphas: list[float], betas: list[float]) -> list[tuple[float, float]]:
    """The grid's (α, β) points in table order: β outer, α inner."""
    return [(a, b) for b in betas for a in alphas]


def sweep_point(table_path: str | os.PathLike, pretrain: str | os.PathLike, out_dir: str | os.PathLike,
                cfg: TrainConfig, alpha: float, beta: float, *, image_cache: str | os.PathLike | None = None,
                threshold: float = 0.5, progress: bool = True) -> dict:
    """Train RETDM at one (α, β) from the pretrain model and evaluate it on the test split.

    Args:
        table_path: the split label table.
        pretrain: the shared pretrain stage's ``best.pt`` (the BCE model every point continues).
        out_dir: the grid's folder; the point's run goes below it (:func:`point_name`), with its
            metrics row in ``POINT_METRICS``.
        cfg: the RETDM config; the point replaces ``loss.alpha`` and ``loss.beta``.
        alpha: α, the weight of the metric term J1 + λ·J2.
        beta: β, the weight of the reconstruction term Jrec.
        image_cache: the table's image cache (see ``retdm.train.run.train_method``).
        threshold: score threshold of the label-based metrics.
        progress: show progress bars.

    Returns:
        The point's row: alpha, beta and every metric on the test split.
    """
    run = Path(out_dir) / point_name(alpha, beta)
    start = stage_dir(run, "retdm", "pretrain") / "best.pt"
    start.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(pretrain, start)  # each point continues the very same BCE model
    point = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, alpha=alpha, beta=beta)).validate()
    train_method(table_path, run, point, "retdm", stages=("embed", "finetune"), progress=progress,
                 image_cache=image_cache)
    metrics, *_ = evaluate_checkpoint(final_checkpoint(run, "retdm"), table_path, threshold=threshold, method="retdm",
                                      image_cache=image_cache)
    row = {"alpha": alpha, "beta": beta, **metrics}
    write_parquet(pd.DataFrame([row]), run / POINT_METRICS,
                  {"what": f"RETDM at alpha {alpha:g}, beta {beta:g} (test split)", "table": str(table_path),
                   "table_sha256": file_sha256(table_path), "pretrain_sha256": file_sha256(pretrain),
                   "config": cfg.to_dict(), "threshold": threshold})
    return row


def gather_grid(out_dir: str | os.PathLike, alphas: list[float], betas: list[float],
                results: str | os.PathLike) -> pd.DataFrame:
    """The points of ``alphas × betas`` that :func:`sweep_point` left below ``out_dir``, as one
    table (other folders there, e.g. of an earlier grid, are left out).

    Args:
        out_dir: the grid's folder.
        alphas: α values (x of the heat map).
        betas: β values (y).
        results: the Parquet file written: one row per point, with the points' shared provenance.

    Returns:
        The grid, one row per point.

    Raises:
        DataError: a point has no metrics, or the points did not all start from the same table,
            pretrain model, config and threshold.
    """
    rows, shared = [], None
    for alpha, beta in grid_points(alphas, betas):
        path = Path(out_dir) / point_name(alpha, beta) / POINT_METRICS
        if not path.is_file():
            raise DataError(f"{path}: missing, so the grid lacks alpha {alpha:g}, beta {beta:g}; train the point "
                              f"first (`dvc repro` runs every sweep_point stage)")
        meta = {k: v for k, v in read_provenance(path).items() if k != "what"}
        if shared is not None and meta != shared:
            raise DataError(f"{path}: trained from another table, pretrain model, config or threshold than the "
                              f"grid's first point; rerun the sweep_point stages (`dvc repro`) so all match")
        shared = meta
        rows.append(pd.read_parquet(path))
    grid = pd.concat(rows, ignore_index=True)
    write_parquet(grid, results, {"what": GRID_WHAT, **shared})
    return grid


def sensitivity_grid(table_path: str | os.PathLike, pretrain: str | os.PathLike, out_dir: str | os.PathLike,
                     cfg: TrainConfig, alphas: list[float], betas: list[float], results: str | os.PathLike, *,
                     image_cache: str | os.PathLike | None = None, threshold: float = 0.5,
                     progress: bool = True) -> pd.DataFrame:
    """Every point of ``alphas × betas`` (:func:`sweep_point`) one after another in this process,
    then the grid (:func:`gather_grid`); arguments as theirs."""
    for alpha, beta in bar(grid_points(alphas, betas), show=progress, desc="alpha x beta"):
        sweep_point(table_path, pretrain, out_dir, cfg, alpha, beta, image_cache=image_cache, threshold=threshold,
                    progress=progress)
    return gather_grid(out_dir, alphas, betas, results)
