"""The comparison table: per dataset, one row per method, the paper's 11 metrics plus mAP.

Input is the long-form metrics of :func:`retdm.evaluate.metrics_frame` (one file per dataset ×
method, as the pipeline's ``evaluate`` stage writes them). Several seeds of a method are
averaged, and their standard deviation and count are kept beside the mean. Each method has two
rows (column ``threshold``): ``fixed``, at the evaluation's one threshold (0.5), which is the
row compared with the paper's; and ``tuned``, at per-class thresholds tuned on the validation
part (the evaluate stage's ``metrics_tuned.parquet``), which moves only ``THRESHOLDED`` metrics.

Beside our rows stand the paper's (Tables II-V, shipped as ``retdm/reference/paper_tables.csv``;
see :func:`paper_table`), marked ``source == "paper"``. A paper row whose printed F1 cannot be
the harmonic mean of its own printed P and R is flagged (:func:`f1_consistent`), and so is one
whose Hamming loss is not what its own O-P, O-R and the dataset's labels per image imply
(:func:`hamming_mismatch`).
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retdm.errors import DataError
from retdm.files import atomic_write
from retdm.metrics import LOWER_IS_BETTER
from retdm.provenance import file_sha256, read_provenance, write_parquet
from retdm.revision import code_revision

# The paper's column order (Tables II-IV), plus mAP.
TABLE_METRICS = ("CP", "CR", "CF1", "OP", "OR", "OF1", "hamming_loss", "ranking_loss", "one_error", "coverage",
                 "average_precision", "mAP")
HEADERS = {"CP": "C-P", "CR": "C-R", "CF1": "C-F1", "OP": "O-P", "OR": "O-R", "OF1": "O-F1",
           "hamming_loss": "Hamming ↓", "ranking_loss": "Ranking ↓", "one_error": "One-error ↓",
           "coverage": "Coverage ↓", "average_precision": "AP", "mAP": "mAP"}
LONG_COLUMNS = ["dataset", "method", "seed", "metric", "value", "lower_is_better"]

# Our method name → the paper's. `asl`, `mlknn`, `retdm_imgnbr` and the controls have no paper row;
# the paper's CNN-RNN, CNN-Softmax and CNN-WARP (coco, cited from the CNN-RNN paper) have no method of ours.
PAPER_METHODS = {"bce": "BCE", "retdm": "RETDM", "retdm_oneway": "RETDM (one-way)", "center_loss": "CL",
                 "c2ae": "C2AE", "lmmo_knn": "LMMO-kNN", "mlspl": "MLSPL"}
NO_PAPER_ROW = ("bce_ft", "linear_probe", "retdm_imgnbr", "asl", "mlknn")  # registered, not in the paper
# Our metric key → the paper's name. mAP is not in the paper.
PAPER_METRICS = {"CP": "C-P", "CR": "C-R", "CF1": "C-F1", "OP": "O-P", "OR": "O-R", "OF1": "O-F1",
                 "hamming_loss": "hamming_loss", "ranking_loss": "ranking_loss", "one_error": "one_error",
                 "coverage": "coverage", "average_precision": "average_precision"}
PAPER_TABLES = ("II", "III", "IV", "V")  # in print order; an earlier table wins a repeated row
REFERENCE_COLUMNS = ["table", "dataset", "method", "metric", "value", "note"]
F1_PARTS = {"CF1": ("CP", "CR"), "OF1": ("OP", "OR")}  # F1 → (precision, recall)
F1_DECIMALS = 3  # the paper prints P, R and F1 with 3 decimals, the other metrics with 4
PRF_METRICS = ("CP", "CR", "CF1", "OP", "OR", "OF1")  # printed with F1_DECIMALS
THRESHOLDED = (*PRF_METRICS, "hamming_loss")  # the table's metrics that depend on the decision threshold
# Our rows' `threshold`: the evaluation's fixed one (evaluate.threshold, 0.5), or per-class thresholds
# tuned on the validation part. The paper's rows have none (the paper does not say).
FIXED, TUNED = "fixed", "tuned"
TUNED_MARK, SAME_CELL = " (tuned thresholds)", "="
PAPER_MARK, FLAG_MARK = " (paper)", " ⚠"
INTRO = ("Test split; prediction at score ≥ 0.5; ↓ lower is better. Mean over seeds (± std when several);"
         " – where a method does not report the metric.")
TUNED_THRESHOLDS = ("per-class thresholds, each tuned to the best F1 on the validation part of the training split"
                    " (never the test split)")
TUNED_NOTE = (f"Rows marked{TUNED_MARK}: the same models with {TUNED_THRESHOLDS}; the comparison with the paper and"
              f" the bold use the 0.5 rows. {SAME_CELL}: as the row above (the ranking metrics do not depend on"
              " thresholds).")
PAPER_NOTE = ("Rows marked (paper) are as printed in the paper (Tables II-IV; coco's one-way RETDM from Table V),"
              f" with P, R and F1 to {F1_DECIMALS} decimals; the paper reports no mAP. Bold marks our best.")
FLAG_NOTE = (f"{FLAG_MARK.strip()} The paper's F1 in the marked cell is not the harmonic mean 2PR/(P+R) of its"
             f" own printed P and R, even allowing every printed value ±{0.5 * 10 ** -F1_DECIMALS:g} of rounding;"
             " it is shown as printed. On one of our rows, ⚠ means that in some seed F1 was not the harmonic"
             " mean of that seed's P and R.")
_EPS = 1e-9  # float slack on the rounding bounds, so a value exactly on a bound passes
# Labels per image and number of labels of each paper dataset, as the paper states them (section
# IV-A, Table I): what a paper row's Hamming loss must agree with, given its O-P and O-R.
PAPER_LABEL_STATS = {"scene": (1.24, 5), "mirflickr": (8.94, 24), "coco": (2.9, 80)}
CARDINALITY_SLACK = 0.1  # a random 20% test split's labels per image: within ±10% of the whole dataset's
HAMMING_DECIMALS = 4  # the paper prints Hamming loss with 4 decimals
HAMMING_MARK = " ‡"
HAMMING_NOTE = (f"{HAMMING_MARK.strip()} The paper's Hamming loss in the marked cell is not what its own O-P and O-R"
                " imply with the labels per image c and the M labels it states for the dataset (section IV-A):"
                " (FP + FN)/(N·M) = c/M·(1 − O-R + O-R·(1 − O-P)/O-P), even allowing the printed values their"
                f" rounding and the test split's c ±{CARDINALITY_SLACK:.0%} of the whole dataset's; it is shown"
                " as printed.")


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


def comparison_table(long: pd.DataFrame, method_order: list[str] | None = None,
                     tuned: pd.DataFrame | None = None) -> pd.DataFrame:
    """Wide table: one row per (dataset, method) and threshold, columns ``TABLE_METRICS`` (mean
    over seeds), ``<metric>_std`` (sample std, NaN for one seed), ``seeds`` (how many),
    ``threshold`` (``FIXED`` for ``long``, ``TUNED`` for ``tuned``: the long-form metrics at
    thresholds tuned on the validation part, whose row follows its method's fixed one) and
    ``f1_flag``: in some seed, C-F1 or O-F1 is not the harmonic mean of that seed's own P and R
    (to 1e-9). The check is per seed because a mean of F1s is not the harmonic mean of the mean
    P and R."""
    parts = [_seed_summary(long).assign(threshold=FIXED)]
    if tuned is not None:
        parts.append(_seed_summary(tuned).assign(threshold=TUNED))
    table = pd.concat(parts, ignore_index=True)
    order = {m: i for i, m in enumerate(method_order or [])}
    table["_order"] = table["method"].map(lambda m: order.get(m, len(order)))
    table["_threshold"] = table["threshold"].map((FIXED, TUNED).index)
    table = table.sort_values(["dataset", "_order", "method", "_threshold"])
    keys = ["dataset", "method", "threshold"]
    columns = keys + [c for c in parts[0].columns if c not in keys]
    return table[columns].reset_index(drop=True)


def _seed_summary(long: pd.DataFrame) -> pd.DataFrame:
    """:func:`comparison_table`'s columns but ``threshold``, for one set of long-form metrics."""
    part = long[long["metric"].isin(TABLE_METRICS)]
    stats = part.groupby(["dataset", "method", "metric"])["value"].agg(["mean", "std", "count"]).reset_index()
    mean = stats.pivot(index=["dataset", "method"], columns="metric", values="mean")
    std = stats.pivot(index=["dataset", "method"], columns="metric", values="std").add_suffix("_std")
    seeds = stats.groupby(["dataset", "method"])["count"].max().rename("seeds")
    runs = part.pivot_table(index=["dataset", "method", "seed"], columns="metric", values="value")
    flag = f1_mismatch(runs.reindex(columns=list(TABLE_METRICS)), decimals=9).any(axis=1)
    flag = flag.groupby(level=["dataset", "method"]).any().rename("f1_flag")
    table = pd.concat([mean.reindex(columns=list(TABLE_METRICS)),
                       std.reindex(columns=[f"{m}_std" for m in TABLE_METRICS]), seeds, flag], axis=1).reset_index()
    table.columns.name = None
    return table


def reference_csv() -> Any:
    """The shipped reference file ``retdm/reference/paper_tables.csv`` (an importlib Traversable)."""
    return files("retdm.reference") / "paper_tables.csv"


def read_reference() -> pd.DataFrame:
    """The paper's printed results in long form (``REFERENCE_COLUMNS``), as shipped.

    Raises:
        DataError: the file lacks a column, or names a table or metric this module does not know.
    """
    with reference_csv().open("rb") as handle:
        long = pd.read_csv(handle, dtype={"table": str})
    missing = [c for c in REFERENCE_COLUMNS if c not in long.columns]
    if missing:
        raise DataError(f"paper_tables.csv: missing column(s) {missing}; expected {REFERENCE_COLUMNS}")
    for column, known in (("table", PAPER_TABLES), ("metric", tuple(PAPER_METRICS.values()))):
        unknown = sorted(set(long[column]) - set(known))
        if unknown:
            raise DataError(f"paper_tables.csv: unknown {column}(s) {unknown}; expected one of {list(known)}")
    return long


def paper_table() -> pd.DataFrame:
    """The paper's results in the layout of :func:`comparison_table`: one row per (dataset, method).

    Methods carry our names where ``PAPER_METHODS`` maps them (``CNN-RNN`` etc. keep the paper's);
    metrics carry our keys, ``mAP`` is NaN (the paper does not report it); ``source`` is "paper".
    Rows keep the paper's order. coco is in both Table IV (the comparison) and Table V (the
    ablation, which repeats Table IV's RETDM row and adds RETDM (one-way)): a (dataset, method)
    is taken whole from the first table that prints it, so RETDM comes from Table IV and
    RETDM (one-way) from Table V.
    """
    long = read_reference()
    rank = long["table"].map(PAPER_TABLES.index)
    long = long[rank == rank.groupby([long["dataset"], long["method"]]).transform("min")]
    keys = long[["dataset", "method"]].drop_duplicates()
    wide = long.pivot(index=["dataset", "method"], columns="metric", values="value")
    wide = wide.rename(columns={v: k for k, v in PAPER_METRICS.items()}).reindex(columns=list(TABLE_METRICS))
    table = keys.merge(wide.reset_index(), on=["dataset", "method"], how="left")
    ours = {v: k for k, v in PAPER_METHODS.items()}
    table["method"] = table["method"].map(lambda m: ours.get(m, m))
    table["source"] = "paper"
    table.columns.name = None
    return table.reset_index(drop=True)


def harmonic_mean(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """F1 = 2PR / (P + R), elementwise; 0 where P + R = 0."""
    p, r = np.asarray(p, dtype=np.float64), np.asarray(r, dtype=np.float64)
    return np.divide(2 * p * r, p + r, out=np.zeros(np.broadcast(p, r).shape), where=(p + r) != 0)


def f1_mismatch(table: pd.DataFrame, decimals: int = F1_DECIMALS) -> pd.DataFrame:
    """Per row, whether ``CF1`` (``OF1``) cannot be the harmonic mean of ``CP``, ``CR`` (``OP``, ``OR``)
    once every printed value is allowed its rounding error.

    Each value printed with ``decimals`` decimals lies within δ = ½·10^-decimals of the true one.
    H(P, R) = 2PR/(P+R) rises in both P and R, so over the box P ± δ, R ± δ it spans exactly
    [H(P−δ, R−δ), H(P+δ, R+δ)]. A row is consistent when [F−δ, F+δ] meets that span. To first
    order the span is H(P, R) ± δ(∂H/∂P + ∂H/∂R) = H(P, R) ± δ·2(P² + R²)/(P + R)², with
    ∂H/∂P = 2R²/(P+R)², ∂H/∂R = 2P²/(P+R)², and 2(P² + R²)/(P + R)² lies in [1, 2], so
    the test reads |F − H(P, R)| ≤ δ·(1 + 2(P² + R²)/(P + R)²) ≤ 3δ = 0.0015 for 3 decimals
    (0.001 when P = R). A missing value (NaN) never mismatches.

    Args:
        table: columns ``CP, CR, CF1, OP, OR, OF1`` (others ignored), N rows.
        decimals: decimals the values were printed with.

    Returns:
        (N, 2) bool frame, columns ``CF1`` and ``OF1``, on ``table``'s index.
    """
    half = 0.5 * 10.0 ** -decimals
    out = {}
    for f1, (p, r) in F1_PARTS.items():
        pv, rv, fv = (table[c].to_numpy(dtype=np.float64) for c in (p, r, f1))  # (N,) each
        low = harmonic_mean(np.maximum(pv - half, 0.0), np.maximum(rv - half, 0.0))
        high = harmonic_mean(pv + half, rv + half)
        out[f1] = (fv + half < low - _EPS) | (fv - half > high + _EPS)  # NaN compares False
    return pd.DataFrame(out, index=table.index)


def implied_hamming_loss(op: np.ndarray, recall: np.ndarray, cardinality: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Hamming loss (FP + FN)/(N·M) from overall precision O-P, overall recall O-R, the labels per
    image c and the number of labels M, elementwise: TP/N = O-R·c, FN/N = (1 − O-R)·c and
    FP/N = (TP/N)·(1 − O-P)/O-P, so HL = c/M·(1 − O-R + O-R·(1 − O-P)/O-P)."""
    op, recall = np.asarray(op, dtype=np.float64), np.asarray(recall, dtype=np.float64)
    return np.asarray(cardinality) / np.asarray(labels) * (1 - recall + recall * (1 - op) / op)


def hamming_mismatch(table: pd.DataFrame) -> pd.Series:
    """Per row, whether its printed ``hamming_loss`` cannot be what its printed ``OP`` and ``OR``
    imply on its ``dataset`` (:func:`implied_hamming_loss`, with ``PAPER_LABEL_STATS``).

    O-P and O-R are allowed ±½·10^-3 (3 printed decimals), the labels per image of the test split
    ±``CARDINALITY_SLACK`` of the dataset's, the Hamming loss ±½·10^-4. The implied loss rises in c
    and falls in O-P, and is monotone in O-R, so over that box its range is spanned by the box's
    corners. A dataset the paper gives no statistics for, or a missing value, never mismatches.

    Returns:
        (N,) bool Series on ``table``'s index.
    """
    stats = np.array([PAPER_LABEL_STATS.get(d, (np.nan, np.nan)) for d in table["dataset"]]).reshape(-1, 2)
    half = 0.5 * 10.0 ** -F1_DECIMALS
    corners = [implied_hamming_loss(table["OP"].to_numpy(dtype=np.float64) + dp,
                                    table["OR"].to_numpy(dtype=np.float64) + dr, stats[:, 0] * (1 + dc), stats[:, 1])
               for dp in (-half, half) for dr in (-half, half) for dc in (-CARDINALITY_SLACK, CARDINALITY_SLACK)]
    low, high = np.min(corners, axis=0), np.max(corners, axis=0)  # (N,) each
    loss, slack = table["hamming_loss"].to_numpy(dtype=np.float64), 0.5 * 10.0 ** -HAMMING_DECIMALS
    return pd.Series((loss + slack < low - _EPS) | (loss - slack > high + _EPS), index=table.index)  # NaN: False


def f1_consistent(table: pd.DataFrame, decimals: int = F1_DECIMALS) -> pd.Series:
    """True for a row whose C-F1 and O-F1 both agree with its own P and R within the rounding of
    ``decimals`` printed decimals (tolerance derived in :func:`f1_mismatch`)."""
    return ~f1_mismatch(table, decimals).any(axis=1)


def against_paper(means: dict[str, dict[str, float]], dataset: str) -> pd.DataFrame:
    """Each of our methods against the paper's row of the same method on ``dataset``, metric by
    metric: ``means`` is ``{method: {metric: mean}}`` (at the fixed threshold). One row per
    (method, paper metric) both report: ``ours``, ``paper``, ``better`` (strictly, in the metric's
    direction). Empty when no method has a paper row there."""
    paper = paper_table()
    paper = paper[paper["dataset"] == dataset].set_index("method")
    rows = [{"method": method, "metric": m, "ours": values[m], "paper": paper.at[method, m],
             "better": bool(values[m] < paper.at[method, m] if m in LOWER_IS_BETTER else values[m] > paper.at[method, m])}
            for method, values in means.items() if method in paper.index
            for m in PAPER_METRICS if m in values and pd.notna(paper.at[method, m])]
    return pd.DataFrame(rows, columns=["method", "metric", "ours", "paper", "better"])


def with_paper(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Our rows with the paper's beside them, for the datasets in ``ours`` that the paper reports.

    Per dataset: each of our rows, followed by the paper's row of the same method; then the
    paper's other methods in the paper's order. Adds ``source`` ("ours" / "paper"),
    ``f1_flag``: for paper rows ``not f1_consistent`` (printed values, with their rounding); our
    rows keep the per-seed flag of :func:`comparison_table` (False when ``ours`` has none): a
    mean over seeds is not the harmonic mean of the mean P and R, so ours are checked per seed;
    and ``hamming_flag``: for paper rows :func:`hamming_mismatch`, False for ours (computed from
    the same counts as their P and R). ``seeds`` becomes nullable (``<NA>`` on paper rows), and so
    does ``threshold`` (``FIXED`` where ``ours`` has none; ``None`` on paper rows). A paper row
    follows the last of our rows of its method (the tuned one, when there is one).
    """
    ours = ours.reset_index(drop=True)
    ours = ours.assign(source="ours", f1_flag=ours.get("f1_flag", False), hamming_flag=False,
                       threshold=ours.get("threshold", FIXED))
    paper = paper[paper["dataset"].isin(set(ours["dataset"]))].reset_index(drop=True)
    paper = paper.assign(f1_flag=~f1_consistent(paper), hamming_flag=hamming_mismatch(paper), threshold=None)
    slot = {(d, m): 2 * i for i, (d, m) in enumerate(zip(ours["dataset"], ours["method"]))}
    position = {d: i for i, d in enumerate(ours["dataset"].unique())}
    ours["_slot"] = range(0, 2 * len(ours), 2)
    paper["_slot"] = [slot.get((d, m), 2 * len(ours) + i) + 1
                      for i, (d, m) in enumerate(zip(paper["dataset"], paper["method"]))]
    table = pd.concat([ours, paper], ignore_index=True)
    table["_position"] = table["dataset"].map(position)
    table = table.sort_values(["_position", "_slot"], kind="stable").drop(columns=["_position", "_slot"])
    if "seeds" in table:
        table["seeds"] = table["seeds"].astype("Int64")
    return table[list(ours.columns.drop("_slot"))].reset_index(drop=True)


def _format(value: float, std: float, decimals: int) -> str:
    """One cell: the value, ± its std when there is one, – when missing."""
    if pd.isna(value):
        return "–"
    return f"{value:.{decimals}f}" + (f" ± {std:.{decimals}f}" if pd.notna(std) else "")


def _method_cell(method: str, paper: bool, flagged: bool) -> str:
    return method + (PAPER_MARK if paper else "") + (FLAG_MARK if flagged else "")


def _section(dataset: str, rows: pd.DataFrame, paper_datasets: set[str]) -> list[str]:
    """The markdown of one dataset: heading, note, table."""
    lines = [f"## {dataset}", ""]
    if dataset not in paper_datasets:
        lines += ["The paper does not report this dataset.", ""]
    lines += ["| method | " + " | ".join(HEADERS[m] for m in TABLE_METRICS) + " |",
              "|---|" + "---:|" * len(TABLE_METRICS)]
    ours = rows[(rows["source"] == "ours") & (rows["threshold"] == FIXED)]
    best = {m: (ours[m].min() if m in LOWER_IS_BETTER else ours[m].max()) for m in TABLE_METRICS}
    mismatch = f1_mismatch(rows)
    for index, row in rows.iterrows():
        paper, flagged, tuned = row["source"] == "paper", bool(row["f1_flag"]), row["threshold"] == TUNED
        cells = []
        for m in TABLE_METRICS:
            if tuned and m not in THRESHOLDED:
                cells.append(SAME_CELL)
                continue
            decimals = F1_DECIMALS if paper and m in PRF_METRICS else 4
            cell = _format(row[m], row.get(f"{m}_std", np.nan), decimals)
            if not paper and not tuned and len(ours) > 1 and row[m] == best[m]:
                cell = f"**{cell}**"
            if flagged and m in F1_PARTS and mismatch.at[index, m]:
                cell += FLAG_MARK
            if m == "hamming_loss" and row["hamming_flag"]:
                cell += HAMMING_MARK
            cells.append(cell)
        method = row["method"] + (TUNED_MARK if tuned else "")
        lines.append(f"| {_method_cell(method, paper, flagged)} | " + " | ".join(cells) + " |")
    return lines + [""]


def comparison_markdown(table: pd.DataFrame) -> str:
    """The table in the paper's layout, one section per dataset. The best value per column among
    our rows is bold; the paper's rows are marked "(paper)", ⚠ marks a paper row (and its cell)
    whose F1 is not the harmonic mean of its P and R, and ‡ a paper Hamming loss that its own
    O-P and O-R do not imply, each explained in a footnote. A method's tuned-thresholds row shows
    only the ``THRESHOLDED`` metrics."""
    table = table.assign(source=table.get("source", "ours"), f1_flag=table.get("f1_flag", False),
                         hamming_flag=table.get("hamming_flag", False), threshold=table.get("threshold", FIXED))
    lines = ["# Comparison", "", INTRO, ""]
    if (table["source"] == "paper").any():
        lines += [PAPER_NOTE, ""]
    if (table["threshold"] == TUNED).any():
        lines += [TUNED_NOTE, ""]
    paper_datasets = set(read_reference()["dataset"])
    for dataset, rows in table.groupby("dataset", sort=False):
        lines += _section(dataset, rows, paper_datasets)
    if table["f1_flag"].any():
        lines += [FLAG_NOTE, ""]
    if table["hamming_flag"].any():
        lines += [HAMMING_NOTE, ""]
    return "\n".join(lines)


def metrics_summary(table: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """Our rows of a comparison table as ``{dataset: {method: {metric: mean, metric_std: std,
    seeds: n}}}``, the shape ``dvc metrics show`` and ``dvc exp show`` read (std ``None`` for one
    seed: JSON has no NaN). A tuned-thresholds row adds ``tuned: {metric: mean, metric_std: std}``
    of the ``THRESHOLDED`` metrics to its method."""
    def number(value: Any) -> float | None:
        return None if pd.isna(value) else round(float(value), 6)

    ours = table[table.get("source", pd.Series("ours", index=table.index)) == "ours"]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in ours.itertuples(index=False):
        row = row._asdict()
        entry = out.setdefault(row["dataset"], {}).setdefault(row["method"], {})
        if row.get("threshold", FIXED) == TUNED:
            entry[TUNED] = {k: number(row[k]) for m in THRESHOLDED for k in (m, f"{m}_std")}
            continue
        values = {m: number(row[m]) for m in TABLE_METRICS}
        values.update({f"{m}_std": number(row[f"{m}_std"]) for m in TABLE_METRICS})
        entry.update({**values, "seeds": int(row["seeds"])})
    return out


def compare(metrics_paths: list[str | os.PathLike], metrics_out: str | os.PathLike,
            comparison_out: str | os.PathLike, markdown_out: str | os.PathLike, *,
            json_out: str | os.PathLike | None = None, tuned_paths: list[str | os.PathLike] | None = None,
            tuned_out: str | os.PathLike | None = None,
            method_order: list[str] | None = None, extra: dict[str, Any] | None = None) -> pd.DataFrame:
    """Gather the per-method metrics into ``metrics_out`` (long form, ours only, at the fixed
    threshold), ``comparison_out`` (wide, with the paper's rows beside ours: see
    :func:`with_paper`), ``markdown_out`` and, when given, ``json_out`` (:func:`metrics_summary`,
    DVC's metrics file). With ``tuned_paths`` (the same runs' metrics at tuned thresholds) each
    method gets its tuned row too, and their long form goes to ``tuned_out``. Every Parquet file
    records, per input file, its sha256 and its own provenance (checkpoint, data, config), plus
    the reference file's sha256, the code revision and ``extra``; the tuned files, of the same
    runs, are recorded by sha256 under ``tuned_inputs``.

    Returns:
        The comparison table.
    """
    if (tuned_paths is None) != (tuned_out is None):
        raise ValueError("compare: give tuned_paths and tuned_out together, or neither")
    long = read_metrics(metrics_paths)
    tuned = read_metrics(tuned_paths) if tuned_paths is not None else None
    table = with_paper(comparison_table(long, method_order, tuned), paper_table())
    inputs = {str(p): {"sha256": file_sha256(p), "provenance": read_provenance(p)} for p in metrics_paths}
    reference = {"file": "retdm/reference/paper_tables.csv",
                 "sha256": hashlib.sha256(reference_csv().read_bytes()).hexdigest()}
    info = {"inputs": inputs, "paper_reference": reference, "code_revision": code_revision(), **(extra or {})}
    if tuned_paths is not None:  # the same runs (their lineage is the inputs'), at other thresholds
        info["tuned_inputs"] = {str(p): {"sha256": file_sha256(p)} for p in tuned_paths}
    write_parquet(long, metrics_out, info)
    if tuned is not None:
        write_parquet(tuned, tuned_out, info)
    write_parquet(table, comparison_out, info)
    text = comparison_markdown(table)
    atomic_write(Path(markdown_out), lambda tmp: Path(tmp).write_text(text))
    if json_out is not None:
        summary = json.dumps(metrics_summary(table), indent=2, sort_keys=False) + "\n"
        atomic_write(Path(json_out), lambda tmp: Path(tmp).write_text(summary))
    return table
