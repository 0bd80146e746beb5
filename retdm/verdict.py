"""Whether a method beats its control: per-seed differences, paired, with their spread and tests.

Every training seed trains every method from its own pretrain, so seed s of a method and seed s
of its control share their initialisation, validation part and data order: their difference is
paired. Per metric the verdict reports the differences (oriented so that > 0 is a gain, also for
the lower-is-better metrics), their mean and sample std, how many seeds gained, a two-sided sign
test and a two-sided paired t test (both undefined for one seed). A gain is called *clear* only
when every paired seed gained and the mean gain exceeds the std of the differences.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from retdm.metrics import LOWER_IS_BETTER

# (method, control, what the control is): the first control of a method is the one its verdict
# names; `bce_ft` trains exactly as long as RETDM's classifier path, `bce` stops at the pretrain.
COMPARISONS = (
    ("retdm", "bce_ft", "the equal-epochs control"),
    ("retdm", "bce", "the BCE pretrain"),
    ("retdm_oneway", "bce_ft", "the equal-epochs control"),
    ("retdm_oneway", "bce", "the BCE pretrain"),
    ("retdm", "retdm_oneway", "one-way RETDM (the paper's Table V)"),
    ("retdm_imgnbr", "bce_ft", "the equal-epochs control"),
    ("retdm_imgnbr", "retdm", "RETDM, whose negatives come from label-set neighbours only"),
    # The floor: the frozen pretrained backbone with a linear head. A fine-tuned method that does
    # not beat it lost what the backbone knew (its recipe is broken, not the method).
    *((method, "linear_probe", "the linear probe (the floor)")
      for method in ("bce", "bce_ft", "retdm", "retdm_oneway", "retdm_imgnbr", "asl", "center_loss")),
)
VERDICT_METRICS = ("average_precision", "mAP", "CF1", "OF1", "one_error", "ranking_loss")
COLUMNS = ["dataset", "method", "control", "metric", "seeds", "gains", "mean", "std", "wins", "p_sign", "p_t", "clear"]


def paired_gains(long: pd.DataFrame, dataset: str, method: str, control: str,
                 metrics: tuple[str, ...] = VERDICT_METRICS) -> pd.DataFrame:
    """``method`` against ``control`` on ``dataset``, one row per metric, over the seeds both ran.

    Args:
        long: long-form metrics (``results/metrics.parquet``: dataset, method, seed, metric, value).

    Returns:
        ``COLUMNS``: ``gains`` is the tuple of per-seed gains (method − control, sign flipped for
        lower-is-better metrics), ``mean``/``std`` their mean and sample std, ``wins`` how many
        are > 0, ``p_sign``/``p_t`` the two-sided sign and paired t tests (NaN for one seed),
        ``clear`` whether every seed gained and the mean exceeds the std. Empty when either
        method did not run.
    """
    from scipy import stats

    part = long[(long["dataset"] == dataset) & long["metric"].isin(metrics)]
    wide = part.pivot_table(index=["metric", "seed"], columns="method", values="value")
    if method not in wide.columns or control not in wide.columns:
        return pd.DataFrame(columns=COLUMNS)
    rows = []
    for metric in metrics:
        if metric not in wide.index.get_level_values("metric"):
            continue
        pair = wide.loc[metric, [method, control]].dropna()  # (seeds, 2)
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        gains = sign * (pair[method] - pair[control]).to_numpy()  # (S,)
        n = len(gains)
        wins = int((gains > 0).sum())
        std = float(np.std(gains, ddof=1)) if n > 1 else math.nan
        p_sign = float(stats.binomtest(wins, int((gains != 0).sum()), 0.5).pvalue) if n > 1 and (gains != 0).any() \
            else math.nan
        p_t = float(stats.ttest_1samp(gains, 0.0).pvalue) if n > 1 and std > 0 else math.nan
        mean = float(gains.mean())
        rows.append({"dataset": dataset, "method": method, "control": control, "metric": metric, "seeds": n,
                     "gains": tuple(float(g) for g in gains), "mean": mean, "std": std, "wins": wins,
                     "p_sign": p_sign, "p_t": p_t, "clear": bool(n > 1 and wins == n and mean > std)})
    return pd.DataFrame(rows, columns=COLUMNS)


def verdicts(long: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """``paired_gains`` of every pair in ``COMPARISONS`` that ran on ``dataset``."""
    frames = [paired_gains(long, dataset, m, c) for m, c, _ in COMPARISONS]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def _p(value: float | None) -> str:
    """A p-value to two decimals; "–" where it is undefined (NaN, or None read back from JSON)."""
    return "–" if value is None or math.isnan(value) else f"{value:.2f}"


def _tail(rows: pd.DataFrame, label: dict[str, str]) -> str:
    """The verdict on one (method, control): where the gain is beyond the seed spread, where the t test says so."""
    if int(rows["seeds"].max()) < 2:
        return "one seed, so no spread: no verdict (run several seeds: `make compare`)"
    clear = [label.get(m, m) for m in rows.loc[rows["clear"], "metric"]]
    significant = [label.get(m, m) for m, p in zip(rows["metric"], rows["p_t"]) if p is not None and p < 0.05]
    tail = (f"a gain beyond the seed spread (every seed gained, mean > std) on {', '.join(clear)} only"
            if clear and len(clear) < len(rows) else "a gain beyond the seed spread on every metric shown"
            if clear else "no gain beyond the seed spread on any metric shown")
    return tail + (f"; paired t test p < 0.05 on {', '.join(significant)}" if significant
                   else "; no paired t test reaches p < 0.05")


def verdict_sentence(gains: pd.DataFrame, label: dict[str, str] | None = None) -> str:
    """One sentence per (method, control) of ``gains`` (from ``verdicts``), naming the control, e.g.
    "retdm: gain over the equal-epochs control (bce_ft) on AP +0.0040 ± 0.0030 over 3 paired seeds
    (3/3 gained; sign test p = 0.25, t test p = 0.14): not clear beyond the seed spread."."""
    label = label or {}
    what = {(m, c): w for m, c, w in COMPARISONS}
    sentences = []
    for (method, control), rows in gains.groupby(["method", "control"], sort=False):
        n = int(rows["seeds"].max())
        parts = []
        for row in rows.itertuples():
            name = label.get(row.metric, row.metric)
            if n > 1:
                parts.append(f"{name} {row.mean:+.4f} ± {row.std:.4f} ({row.wins}/{row.seeds} seeds gained; "
                             f"sign p = {_p(row.p_sign)}, t p = {_p(row.p_t)})")
            else:
                parts.append(f"{name} {row.mean:+.4f}")
        sentences.append(f"{method} against {what.get((method, control), control)} ({control}), gain over {n} "
                         f"paired seed{'s' if n > 1 else ''}: {'; '.join(parts)}. Verdict: {_tail(rows, label)}.")
    return " ".join(sentences)


def table_legend(gains: pd.DataFrame) -> str:
    """What ``verdict_table(gains)`` shows, naming each control in it as ``COMPARISONS`` does."""
    what = dict((control, words) for _, control, words in COMPARISONS)
    controls = dict.fromkeys(gains["control"])
    return ("Each method's gain over its control, seed for seed (> 0 is better, also for the ↓ metrics): the"
            " mean ± the std of the per-seed gains (seeds that gained / paired seeds). Bold: every seed gained"
            " and the mean exceeds the std (a gain beyond the seed spread); †: paired t test p < 0.05. Controls: "
            + ", ".join(f"`{c}` {what[c]}" for c in what if c in controls) + ".")


def verdict_table(gains: pd.DataFrame, label: dict[str, str] | None = None) -> list[str]:
    """``gains`` (from ``verdicts``) as Markdown: one row per (method, control), one column per
    metric, each cell the mean gain ± the std of the per-seed gains and how many seeds gained, in
    bold where the gain is clear, † where the paired t test gives p < 0.05; then one line per row
    with its verdict."""
    label = label or {}
    metrics = list(dict.fromkeys(gains["metric"]))
    lines = ["| method | control | " + " | ".join(label.get(m, m) for m in metrics) + " |",
             "|---|---|" + "---:|" * len(metrics)]
    verdict_lines = []
    for (method, control), rows in gains.groupby(["method", "control"], sort=False):
        rows = rows.set_index("metric")
        cells = []
        for m in metrics:
            if m not in rows.index:
                cells.append("–")
                continue
            row = rows.loc[m]
            cell = f"{row['mean']:+.4f}" + (f" ± {row['std']:.4f}" if row["seeds"] > 1 else "") \
                + f" ({row['wins']}/{row['seeds']})"
            cell = f"**{cell}**" if row["clear"] else cell
            cells.append(cell + (" †" if row["p_t"] is not None and row["p_t"] < 0.05 else ""))
        lines.append(f"| {method} | {control} | " + " | ".join(cells) + " |")
        verdict_lines.append(f"- {method} against {control}: {_tail(rows.reset_index(), label)}.")
    return lines + [""] + verdict_lines
