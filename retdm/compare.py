"""The comparison table: per dataset, one row per method, the paper's 11 metrics plus mAP.

Input is the long-form metrics of :func:`retdm.evaluate.metrics_frame` (one file per dataset ×
method, as the pipeline's ``evaluate`` stage writes them). Several seeds of a method are
averaged, and their standard deviation and count are kept beside the mean.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from retdm.data.table import atomic_write
from retdm.errors import DataError
from retdm.evaluate import read_provenance, write_parquet
from retdm.metrics import LOWER_IS_BETTER
from retdm.revision import code_revision
from retdm.train.checkpoint import file_sha256

# The paper's column order (Tables II-IV), plus mAP.
TABLE_METRICS = ("CP", "CR", "CF1", "OP", "OR", "OF1", "hamming_loss", "ranking_loss", "one_error", "coverage",
                 "average_precision", "mAP")
HEADERS = {"CP": "C-P", "CR": "C-R", "CF1": "C-F1", "OP": "O-P", "OR": "O-R", "OF1": "O-F1",
           "hamming_loss": "Hamming ↓", "ranking_loss": "Ranking ↓", "one_error": "One-error ↓",
           "coverage": "Coverage ↓", "average_precision": "AP", "mAP": "mAP"}
LONG_COLUMNS = ["dataset", "method", "seed", "metric", "value", "lower_is_better"]


def read_metrics(paths: list[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate long-form metrics files, checking their columns.

    Raises:
        DataError: a file is missing or lacks a long-form column.
    """
    frames = []
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"{path}: metrics file not found; run the evaluate stage for it first")
        frame = pd.read_parquet(path)
        missing = [c for c in LONG_COLUMNS if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; expected long-form metrics {LONG_COLUMNS}")
        frames.append(frame[LONG_COLUMNS])
    if not frames:
        raise DataError("no metrics files to compare; list at least one dataset and method")
    return pd.concat(frames, ignore_index=True)


def comparison_table(long: pd.DataFrame, method_order: list[str] | None = None) -> pd.DataFrame:
    """Wide table: one row per (dataset, method), columns ``TABLE_METRICS`` (mean over seeds),
    ``<metric>_std`` (sample std, NaN for one seed) and ``seeds`` (how many)."""
    part = long[long["metric"].isin(TABLE_METRICS)]
    stats = part.groupby(["dataset", "method", "metric"])["value"].agg(["mean", "std", "count"]).reset_index()
    mean = stats.pivot(index=["dataset", "method"], columns="metric", values="mean")
    std = stats.pivot(index=["dataset", "method"], columns="metric", values="std").add_suffix("_std")
    seeds = stats.groupby(["dataset", "method"])["count"].max().rename("seeds")
    table = pd.concat([mean.reindex(columns=list(TABLE_METRICS)),
                       std.reindex(columns=[f"{m}_std" for m in TABLE_METRICS]), seeds], axis=1).reset_index()
    table.columns.name = None
    order = {m: i for i, m in enumerate(method_order or [])}
    table["_order"] = table["method"].map(lambda m: order.get(m, len(order)))
    return table.sort_values(["dataset", "_order", "method"]).drop(columns="_order").reset_index(drop=True)


def comparison_markdown(table: pd.DataFrame) -> str:
    """The table in the paper's layout, one section per dataset; the best value per column in bold."""
    lines = ["# Comparison", "",
             "Test split; prediction at score ≥ 0.5; ↓ lower is better. Mean over seeds (± std when several);"
             " – where a method does not report the metric.", ""]
    for dataset, rows in table.groupby("dataset", sort=False):
        lines += [f"## {dataset}", "", "| method | " + " | ".join(HEADERS[m] for m in TABLE_METRICS) + " |",
                  "|---|" + "---:|" * len(TABLE_METRICS)]
        best = {m: (rows[m].min() if m in LOWER_IS_BETTER else rows[m].max()) for m in TABLE_METRICS}
        for row in rows.itertuples(index=False):
            cells = []
            for m in TABLE_METRICS:
                value, std = getattr(row, m), getattr(row, f"{m}_std")
                if pd.isna(value):
                    cells.append("–")
                    continue
                cell = f"{value:.4f}" + (f" ± {std:.4f}" if pd.notna(std) else "")
                cells.append(f"**{cell}**" if value == best[m] and len(rows) > 1 else cell)
            lines.append(f"| {row.method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def compare(metrics_paths: list[str | os.PathLike], metrics_out: str | os.PathLike,
            comparison_out: str | os.PathLike, markdown_out: str | os.PathLike, *,
            method_order: list[str] | None = None, extra: dict[str, Any] | None = None) -> pd.DataFrame:
    """Gather the per-method metrics into ``metrics_out`` (long form), ``comparison_out`` (wide)
    and ``markdown_out``. Both Parquet files record, per input file, its sha256 and its own
    provenance (checkpoint, data, config), plus the code revision and ``extra``.

    Returns:
        The comparison table.
    """
    long = read_metrics(metrics_paths)
    table = comparison_table(long, method_order)
    inputs = {str(p): {"sha256": file_sha256(p), "provenance": read_provenance(p)} for p in metrics_paths}
    info = {"inputs": inputs, "code_revision": code_revision(), **(extra or {})}
    write_parquet(long, metrics_out, info)
    write_parquet(table, comparison_out, info)
    text = comparison_markdown(table)
    atomic_write(Path(markdown_out), lambda tmp: Path(tmp).write_text(text))
    return table
