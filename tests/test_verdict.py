"""Paired verdicts: seed s of a method against seed s of its control, with spread and tests."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from retdm.verdict import paired_gains, table_legend, verdict_sentence, verdict_table, verdicts


def long_form(values: dict[str, dict[int, dict[str, float]]], dataset: str = "scene") -> pd.DataFrame:
    """{method: {seed: {metric: value}}} → long-form metrics."""
    return pd.DataFrame([{"dataset": dataset, "method": m, "seed": s, "metric": k, "value": v}
                         for m, seeds in values.items() for s, metrics in seeds.items() for k, v in metrics.items()])


def test_gains_pair_by_seed_not_by_row_order_and_match_scipy():
    retdm = {0: 0.90, 1: 0.85, 2: 0.95}
    control = {2: 0.93, 0: 0.89, 1: 0.86}  # listed in another order: pairing must follow the seed
    long = long_form({"retdm": {s: {"mAP": v} for s, v in retdm.items()},
                      "bce_ft": {s: {"mAP": v} for s, v in control.items()}})
    row = paired_gains(long, "scene", "retdm", "bce_ft", ("mAP",)).iloc[0]
    expected = np.array([retdm[s] - control[s] for s in (0, 1, 2)])  # (+0.01, -0.01, +0.02)
    np.testing.assert_allclose(row["gains"], expected, atol=1e-12)
    assert row["mean"] == pytest.approx(expected.mean()) and row["std"] == pytest.approx(expected.std(ddof=1))
    assert row["wins"] == 2 and row["seeds"] == 3 and not row["clear"]  # one seed lost
    assert row["p_t"] == pytest.approx(stats.ttest_rel(list(retdm.values()), [control[s] for s in retdm]).pvalue)
    assert row["p_sign"] == pytest.approx(stats.binomtest(2, 3, 0.5).pvalue)


def test_lower_is_better_metrics_count_a_decrease_as_a_gain():
    long = long_form({"retdm": {0: {"one_error": 0.10}, 1: {"one_error": 0.12}},
                      "bce": {0: {"one_error": 0.15}, 1: {"one_error": 0.14}}})
    row = paired_gains(long, "scene", "retdm", "bce", ("one_error",)).iloc[0]
    np.testing.assert_allclose(row["gains"], [0.05, 0.02], atol=1e-12)
    assert row["wins"] == 2 and row["clear"]  # every seed gained and the mean (0.035) exceeds the std (0.021)


def test_a_gain_smaller_than_its_spread_is_not_clear():
    long = long_form({"retdm": {0: {"mAP": 0.91}, 1: {"mAP": 0.85}, 2: {"mAP": 0.90}},
                      "bce_ft": {0: {"mAP": 0.90}, 1: {"mAP": 0.84}, 2: {"mAP": 0.80}}})
    row = paired_gains(long, "scene", "retdm", "bce_ft", ("mAP",)).iloc[0]
    assert row["wins"] == 3 and row["mean"] < row["std"] and not row["clear"]  # gains 0.01, 0.01, 0.10
    text = verdict_sentence(paired_gains(long, "scene", "retdm", "bce_ft", ("mAP",)), {"mAP": "mAP"})
    assert "the equal-epochs control (bce_ft)" in text and "no gain beyond the seed spread" in text
    assert "no paired t test reaches p < 0.05" in text
    assert "3/3 seeds gained" in text


def test_the_verdict_table_bolds_clear_gains_and_marks_significant_ones():
    long = long_form({"retdm": {0: {"mAP": 0.91, "CF1": 0.5}, 1: {"mAP": 0.85, "CF1": 0.6}, 2: {"mAP": 0.90, "CF1": 0.7}},
                      "bce_ft": {0: {"mAP": 0.90, "CF1": 0.4}, 1: {"mAP": 0.84, "CF1": 0.5}, 2: {"mAP": 0.80, "CF1": 0.6001}}})
    lines = verdict_table(paired_gains(long, "scene", "retdm", "bce_ft", ("mAP", "CF1")), {"CF1": "C-F1"})
    assert lines[0] == "| method | control | mAP | C-F1 |"
    # mAP gains 0.01, 0.01, 0.10: every seed gained but the mean is within the std; C-F1 ≈ +0.1 each: clear, p < 0.05
    assert lines[2] == "| retdm | bce_ft | +0.0400 ± 0.0520 (3/3) | **+0.1000 ± 0.0001 (3/3)** † |"
    assert lines[-1] == ("- retdm against bce_ft: a gain beyond the seed spread (every seed gained, mean > std) on "
                         "C-F1 only; paired t test p < 0.05 on C-F1.")
    # the legend names the controls of the table, in the words of COMPARISONS, and no other
    assert table_legend(paired_gains(long, "scene", "retdm", "bce_ft", ("mAP",))).endswith(
        "Controls: `bce_ft` the equal-epochs control.")


def test_one_seed_gives_no_spread_and_says_so():
    long = long_form({"retdm": {0: {"mAP": 0.9}}, "bce_ft": {0: {"mAP": 0.8}}})
    gains = paired_gains(long, "scene", "retdm", "bce_ft", ("mAP",))
    assert math.isnan(gains.iloc[0]["std"]) and math.isnan(gains.iloc[0]["p_t"]) and not gains.iloc[0]["clear"]
    assert "one seed, so no spread: no verdict" in verdict_sentence(gains)


def test_verdicts_name_the_control_first_and_skip_methods_that_did_not_run():
    long = long_form({m: {0: {"mAP": 0.8, "average_precision": 0.9}, 1: {"mAP": 0.81, "average_precision": 0.91}}
                      for m in ("bce", "bce_ft", "retdm")})
    table = verdicts(long, "scene")
    pairs = list(dict.fromkeys(zip(table["method"], table["control"])))
    assert pairs == [("retdm", "bce_ft"), ("retdm", "bce")]  # retdm_oneway did not run
    assert paired_gains(long, "scene", "retdm_oneway", "bce").empty
    probed = pd.concat([long, long[long["method"] == "bce"].assign(method="linear_probe")])
    pairs = list(dict.fromkeys(zip(*verdicts(probed, "scene")[["method", "control"]].to_numpy().T)))
    assert pairs == [("retdm", "bce_ft"), ("retdm", "bce"), ("bce", "linear_probe"), ("bce_ft", "linear_probe"),
                     ("retdm", "linear_probe")]  # every fine-tuned method that ran, against the floor
