"""The report's tables and verdicts from a comparison table (the page itself: test_page, and the
whole report from a real pipeline run, in a browser: tests/pipelines/test_pipeline.py)."""

import shutil

import numpy as np
import pandas as pd

from retdm.report.build import TABLE_METRICS, comparison_rows, verdict_rows


def comparison(seeds: int, std: float) -> pd.DataFrame:
    rows = []
    for method, level in (("bce", 0.80), ("retdm", 0.82)):
        rows.append({"dataset": "scene", "method": method, "source": "ours", "seeds": seeds, "f1_flag": False,
                     **{m: level for m in TABLE_METRICS}, **{f"{m}_std": std for m in TABLE_METRICS}})
    rows.append({"dataset": "scene", "method": "retdm", "source": "paper", "seeds": np.nan, "f1_flag": True,
                 "hamming_flag": True, **{m: 0.85 for m in TABLE_METRICS}})
    return pd.DataFrame(rows)


def test_rows_put_the_paper_and_the_difference_under_ours():
    rows = comparison_rows(comparison(3, 0.004), "scene")
    assert list(rows["row"]) == ["ours, mean of 3 seeds", "± std over seeds", "ours, mean of 3 seeds",
                                 "± std over seeds", "paper", "Δ ours − paper"]
    assert list(rows["reference"]) == [False, True, False, True, True, True]
    assert rows["method"].iloc[4] == "retdm ⚠ ‡"  # the paper's row is flagged (F1, Hamming loss), ours is not
    assert rows["AP"].iloc[5] == -0.03 and rows["C-F1"].iloc[1] == 0.004


def test_a_tuned_thresholds_row_shows_only_the_metrics_a_threshold_moves():
    table = comparison(3, 0.004)
    tuned = table.iloc[[1]].assign(threshold="tuned", CF1=0.9, hamming_loss=0.1, mAP=0.99)
    table = pd.concat([table.iloc[:2].assign(threshold="fixed"), tuned, table.iloc[2:]], ignore_index=True)
    rows = comparison_rows(table, "scene")
    assert list(rows["row"])[2:5] == ["ours, mean of 3 seeds", "± std over seeds", "tuned thresholds"]
    row = rows.iloc[4]
    assert (row["C-F1"], row["Hamming ↓"], row["reference"]) == (0.9, 0.1, True) and pd.isna(row["mAP"])
    assert rows["AP"].iloc[6] == -0.03 and rows["mAP"].iloc[2] == 0.82  # Δ and ours: the fixed row, not the tuned


def test_verdict_rows_show_each_seeds_gain_and_the_tests():
    from retdm.verdict import paired_gains

    long = pd.DataFrame([{"dataset": "scene", "method": m, "seed": s, "metric": "mAP", "value": v}
                         for m, values in (("bce_ft", (0.80, 0.81, 0.79)), ("retdm", (0.82, 0.82, 0.80)))
                         for s, v in enumerate(values)])
    rows = verdict_rows(paired_gains(long, "scene", "retdm", "bce_ft", ("mAP",)))
    assert rows.loc[0, "per-seed gain"] == "+0.0200 +0.0100 +0.0100" and rows.loc[0, "seeds gained"] == "3/3"
    assert rows.loc[0, "mean gain"] == 0.0133 and rows.loc[0, "clear"] == "yes" and rows.loc[0, "sign p"] == 0.25


def test_epoch_logs_follow_each_networks_stages_and_skip_feature_methods(tmp_path):
    from retdm.layout import Layout
    from retdm.report.collect import epoch_logs

    layout = Layout("toy", tmp_path)
    for folder, n in (("bce/pretrain", 3), ("retdm/embed", 2), ("retdm/finetune", 1)):
        (layout.runs / folder).mkdir(parents=True)
        pd.DataFrame({"epoch": range(1, n + 1), "train_loss": 1.0, "val_loss": 0.5, "val_mAP": 0.7,
                      "lr": 0.1}).to_csv(layout.runs / folder / "epochs.csv", index=False)
    logs = epoch_logs(layout, ["bce", "retdm", "mlknn"])
    assert list(logs.columns) == ["method", "stage", "epoch", "train_loss", "val_loss", "val_mAP"]
    assert logs.groupby(["method", "stage"], sort=False).size().to_dict() == {
        ("bce", "pretrain"): 3, ("retdm", "pretrain"): 3, ("retdm", "embed"): 2, ("retdm", "finetune"): 1}


def test_sensitivity_caption_names_alpha_the_metric_weight_and_beta_the_reconstruction_weight(tmp_path, tiny_table):
    """Eq. 13: L = Lcls + α·(J1 + λ·J2) + β·Jrec (the α × β heat map once called α the reconstruction
    weight and β the way-2 weight)."""
    from retdm.layout import Layout
    from retdm.report.build import dataset_section
    from retdm.report.page import Figure

    layout = Layout("toy", tmp_path)
    layout.table.parent.mkdir(parents=True)
    shutil.copy2(tiny_table, layout.table)
    layout.sweep_results.parent.mkdir(parents=True)
    pd.DataFrame([{"alpha": a, "beta": b, "CF1": 0.7, "OF1": 0.7} for a in (0.1, 1.0) for b in (0.5, 1.0)]) \
        .to_parquet(layout.sweep_results)
    section = dataset_section(tmp_path, "toy", comparison(1, 0.0), [], 0.5)
    [caption] = [b.caption for b in section.blocks if isinstance(b, Figure) and b.name == "toy-sensitivity"]
    assert "α (the weight of the metric term J1 + λ·J2)" in caption
    assert "β (the weight of the reconstruction term Jrec)" in caption
    assert "reconstruction weight" not in caption and "way-2" not in caption
