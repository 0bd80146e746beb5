"""The paper's reference tables, the F1 consistency flag and the comparison beside the paper."""

import json
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import retdm.compare as cmp
from retdm.evaluate import metrics_frame
from retdm.methods import METHODS
from retdm.metrics import evaluate
from retdm.provenance import read_provenance, write_parquet

CITED = {"CNN-Softmax", "CNN-RNN", "CNN-WARP"}  # Table IV cites their P/R/F1 only


def f1_row(cp, cr, cf1, op=0.5, orr=0.5, of1=0.5):
    return {"CP": cp, "CR": cr, "CF1": cf1, "OP": op, "OR": orr, "OF1": of1}


def test_reference_csv_holds_every_table_with_its_11_metrics():
    long = cmp.read_reference()
    assert set(zip(long["table"], long["dataset"])) == {("II", "scene"), ("III", "mirflickr"), ("IV", "coco"),
                                                         ("V", "coco")}
    assert set(long["metric"]) == set(cmp.PAPER_METRICS.values()) and len(cmp.PAPER_METRICS) == 11
    counts = long.groupby(["table", "dataset", "method"])["metric"].nunique()
    for (_, _, method), n in counts.items():
        assert n == (6 if method in CITED else 11), method
    assert not long.duplicated(["table", "dataset", "method", "metric"]).any()


def test_reference_csv_is_declared_package_data():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "reference/*.csv" in pyproject["tool"]["setuptools"]["package-data"]["retdm"]


def test_every_registered_method_is_mapped_to_the_paper_or_declared_absent():
    registered = set(METHODS.names())
    assert registered <= set(cmp.PAPER_METHODS) | set(cmp.NO_PAPER_ROW), registered - set(cmp.PAPER_METHODS)
    assert set(cmp.PAPER_METHODS) <= registered
    assert set(cmp.PAPER_METHODS.values()) <= set(cmp.read_reference()["method"])
    assert set(cmp.PAPER_METRICS) <= set(cmp.TABLE_METRICS)


def test_paper_table_takes_each_coco_method_once_in_our_names():
    paper = cmp.paper_table()
    assert not paper.duplicated(["dataset", "method"]).any() and (paper["source"] == "paper").all()
    coco = paper[paper["dataset"] == "coco"].set_index("method")
    assert {"retdm", "retdm_oneway", "bce", "CNN-RNN"} <= set(coco.index)
    assert coco.loc["retdm", "CF1"] == 0.655 and coco.loc["retdm_oneway", "coverage"] == 30.9184
    assert paper["mAP"].isna().all() and pd.isna(coco.loc["CNN-RNN", "coverage"])


def test_f1_flag_on_hand_made_rows_and_the_rounding_tolerance():
    frame = pd.DataFrame([f1_row(0.8, 0.6, 0.686),  # H = 0.685714, prints as 0.686
                          f1_row(0.8, 0.6, 0.700),
                          f1_row(0.5, 0.5, 0.501),  # P = R: H spans P ± δ, so |F - P| ≤ 2δ = 0.001 passes
                          f1_row(0.5, 0.5, 0.5011),
                          f1_row(0.5, 0.5, 0.5, 0.5, 0.5, 0.49),  # O-F1 alone
                          f1_row(0.0, 0.0, 0.0)])
    assert cmp.f1_consistent(frame).tolist() == [True, False, True, False, False, True]


def test_f1_flag_on_the_papers_own_rows():
    paper = cmp.paper_table().set_index(["dataset", "method"])
    # scene BCE: O-F1 printed 0.883, but 2·0.906·0.869/(0.906+0.869) = 0.8871 (C-F1 0.883 is fine).
    # scene LMMO-kNN: 2·0.412·0.705/1.117 = 0.5201 against 0.613 printed.
    # coco RETDM: 2·0.799·0.555/1.354 = 0.6550 and 2·0.819·0.611/1.430 = 0.6999, printed 0.655 / 0.700.
    rows = paper.loc[[("scene", "bce"), ("scene", "lmmo_knn"), ("coco", "retdm")], list(cmp.PRF_METRICS)]
    assert cmp.f1_consistent(rows).tolist() == [False, False, True]
    flagged = set(paper.index[~cmp.f1_consistent(paper)])
    assert flagged == {(d, m) for d in ("scene", "mirflickr", "coco") for m in ("lmmo_knn", "mlspl", "c2ae")} | {
        ("scene", "center_loss"), ("mirflickr", "center_loss"), ("scene", "bce"), ("coco", "CNN-WARP")}


def test_implied_hamming_loss_is_the_hamming_loss_of_the_counts_behind_op_and_or():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 7)) < 0.3).astype(int)
    scores = np.clip(y * 0.4 + rng.random(y.shape) * 0.7, 0, 1)  # informative, with errors both ways
    m = evaluate(y, scores)
    implied = cmp.implied_hamming_loss(m["OP"], m["OR"], y.sum(1).mean(), y.shape[1])
    assert implied == pytest.approx(m["hamming_loss"], rel=1e-12) and 0.05 < m["hamming_loss"] < 0.5


def test_hamming_flag_allows_rounding_and_the_test_splits_labels_per_image():
    c, labels = cmp.PAPER_LABEL_STATS["scene"]
    exact = float(cmp.implied_hamming_loss(0.9, 0.8, c, labels))  # 0.0551
    rows = pd.DataFrame({"dataset": ["scene"] * 5 + ["synthetic"], "OP": 0.9, "OR": 0.8,
                         "hamming_loss": [round(exact, 4), round(exact * 1.08, 4), round(exact * 1.3, 4),
                                          round(exact * 0.7, 4), np.nan, 0.9]})
    assert cmp.hamming_mismatch(rows).tolist() == [False, False, True, True, False, False]


def test_hamming_flag_on_the_papers_own_rows():
    """Every Hamming loss the paper prints is far from what its own O-P, O-R and stated labels per
    image imply: scene's RETDM 0.1217 against 0.057, coco's 0.3295 against 0.019."""
    paper = cmp.paper_table()
    flagged = cmp.hamming_mismatch(paper)
    assert flagged[paper["hamming_loss"].notna()].all() and not flagged[paper["hamming_loss"].isna()].any()
    printed = paper[paper["hamming_loss"].notna()]
    stats = np.array([cmp.PAPER_LABEL_STATS[d] for d in printed["dataset"]])
    assert (printed["hamming_loss"] > cmp.implied_hamming_loss(printed["OP"], printed["OR"], *stats.T)).all()  # all above
    retdm = paper[(paper["method"] == "retdm") & (paper["dataset"] == "scene")].iloc[0]
    implied = cmp.implied_hamming_loss(retdm["OP"], retdm["OR"], *cmp.PAPER_LABEL_STATS["scene"])
    assert retdm["hamming_loss"] == 0.1217 and 0.055 < implied < 0.058


def scene_metrics(tmp_path, methods=("bce", "retdm", "asl")):
    """One metrics file per (dataset, method), values below the paper's so 'best' is tested."""
    paths = []
    for dataset in ("scene", "synthetic"):
        for method in methods:
            values = dict(f1_row(0.5, 0.5, 0.5, 0.5, 0.5, 0.5), hamming_loss=0.9, coverage=5.0, mAP=0.5)
            if method == "retdm":  # consistent: C-F1 is the harmonic mean of C-P and C-R
                values.update(CP=0.6, CR=0.6, CF1=0.6)
            path = tmp_path / f"{dataset}-{method}.parquet"
            write_parquet(metrics_frame(values, dataset=dataset, method=method, seed=0), path, {})
            paths.append(path)
    return paths


def test_compare_puts_the_papers_row_right_after_ours(tmp_path):
    out = tmp_path / "out"
    table = cmp.compare(scene_metrics(tmp_path), out / "metrics.parquet", out / "comparison.parquet",
                    out / "comparison.md", method_order=["bce", "retdm", "asl"])
    scene = table[table["dataset"] == "scene"]
    assert list(zip(scene["method"], scene["source"]))[:5] == [
        ("bce", "ours"), ("bce", "paper"), ("retdm", "ours"), ("retdm", "paper"), ("asl", "ours")]
    assert set(scene["method"].iloc[5:]) == {"lmmo_knn", "mlspl", "center_loss", "c2ae"}
    assert set(table["dataset"]) == {"scene", "synthetic"}  # no coco rows without ours
    assert (table.loc[table["dataset"] == "synthetic", "source"] == "ours").all()
    written = pd.read_parquet(out / "comparison.parquet")
    assert {"source", "f1_flag", "seeds", "CF1_std"} <= set(written.columns)
    assert written["f1_flag"].dtype == bool and not written.loc[written["source"] == "ours", "f1_flag"].any()
    assert written["hamming_flag"].tolist() == (written["source"] == "paper").tolist()  # all the paper's scene rows
    assert written.loc[written["source"] == "paper", "seeds"].isna().all()
    assert (pd.read_parquet(out / "metrics.parquet")["dataset"].isin({"scene", "synthetic"})).all()


def tuned_twins(paths):
    """Each metrics file's twin at tuned thresholds: C-P, C-R, C-F1 and Hamming loss better, mAP the same."""
    twins = []
    for path in paths:
        frame = pd.read_parquet(path)
        frame.loc[frame["metric"].isin(["CP", "CR", "CF1"]), "value"] += 0.3
        frame.loc[frame["metric"] == "hamming_loss", "value"] -= 0.5
        twin = path.with_name(path.stem + "-tuned.parquet")
        write_parquet(frame, twin, {})
        twins.append(twin)
    return twins


def test_each_method_has_a_tuned_thresholds_row_after_its_fixed_one(tmp_path):
    out, paths = tmp_path / "out", scene_metrics(tmp_path)
    with pytest.raises(ValueError, match="together"):
        cmp.compare(paths, out / "m.parquet", out / "c.parquet", out / "c.md", tuned_paths=tuned_twins(paths))
    table = cmp.compare(paths, out / "metrics.parquet", out / "comparison.parquet", out / "comparison.md",
                        json_out=out / "metrics.json", tuned_paths=tuned_twins(paths),
                        tuned_out=out / "metrics_tuned.parquet", method_order=["bce", "retdm", "asl"])
    scene = table[table["dataset"] == "scene"]
    assert list(zip(scene["method"], scene["source"], scene["threshold"]))[:5] == [
        ("bce", "ours", "fixed"), ("bce", "ours", "tuned"), ("bce", "paper", None), ("retdm", "ours", "fixed"),
        ("retdm", "ours", "tuned")]
    fixed, tuned = (scene[(scene["method"] == "retdm") & (scene["threshold"] == t)].iloc[0] for t in ("fixed", "tuned"))
    assert (tuned["CF1"], tuned["hamming_loss"], tuned["mAP"]) == pytest.approx((0.9, 0.4, fixed["mAP"]))
    assert fixed["CF1"] == pytest.approx(0.6)
    assert len(pd.read_parquet(out / "metrics_tuned.parquet")) == len(pd.read_parquet(out / "metrics.parquet"))
    info = read_provenance(out / "comparison.parquet")  # lineage: one input per run; its tuned twin by hash
    assert sorted(info["inputs"]) == sorted(map(str, paths)) and len(info["tuned_inputs"]) == len(paths)
    summary = json.loads((out / "metrics.json").read_text())["scene"]["retdm"]
    assert summary["CF1"] == pytest.approx(0.6) and summary["tuned"]["CF1"] == pytest.approx(0.9)
    assert "mAP" not in summary["tuned"] and "hamming_loss_std" in summary["tuned"]
    text = (out / "comparison.md").read_text()
    lines = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in text.splitlines() if line.startswith("| ")}
    row = lines["retdm (tuned thresholds)"]
    assert row[2] == "0.9000" and row[6] == "0.4000" and row[7:] == ["="] * 4 + ["= |"]  # ranking metrics: as above
    assert lines["retdm"][2] == "**0.6000**"  # bold: the best of the 0.5 rows, though the tuned one is higher
    assert cmp.TUNED_NOTE in text


def test_markdown_marks_paper_rows_flags_and_bolds_only_ours(tmp_path):
    long = pd.concat([pd.read_parquet(p) for p in scene_metrics(tmp_path)])
    text = cmp.comparison_markdown(cmp.with_paper(cmp.comparison_table(long, ["bce", "retdm", "asl"]), cmp.paper_table()))
    lines = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert "retdm (paper)" in lines and "bce (paper) ⚠" in lines and "lmmo_knn (paper) ⚠" in lines
    assert "| 0.883 ⚠ |" in lines["bce (paper) ⚠"]  # its O-F1, not its consistent C-F1
    assert cmp.FLAG_NOTE in text and text.count(cmp.FLAG_NOTE) == 1
    assert "| 0.1217 ‡ |" in lines["retdm (paper)"] and cmp.HAMMING_NOTE in text  # the paper's, never ours
    assert not any("‡" in line for name, line in lines.items() if "(paper)" not in name)
    assert not any("**" in line for name, line in lines.items() if "(paper)" in name)
    assert "**0.6000**" in lines["retdm"]  # best C-F1 among ours, though the paper's is higher
    synthetic = text.split("## synthetic")[1]
    assert synthetic.lstrip().startswith("The paper does not report this dataset.")
    assert "The paper does not report" not in text.split("## synthetic")[0]


@pytest.mark.parametrize("flagged", [False, True])
def test_footnote_only_when_a_row_is_flagged(flagged):
    long = metrics_frame({"CF1": 0.5}, dataset="coco", method="retdm" if not flagged else "c2ae", seed=0)
    paper = cmp.paper_table()
    paper = paper[paper["method"] == ("retdm" if not flagged else "c2ae")]
    text = cmp.comparison_markdown(cmp.with_paper(cmp.comparison_table(long), paper))
    assert (cmp.FLAG_NOTE in text) is flagged


def test_our_rows_are_flagged_per_seed_when_f1_is_not_the_harmonic_mean():
    from retdm.compare import comparison_table

    good = {"CP": 0.8, "CR": 0.6, "CF1": 2 * 0.8 * 0.6 / 1.4, "OP": 0.5, "OR": 0.5, "OF1": 0.5}
    rows = [metrics_frame(good, dataset="d", method="ok", seed=0),
            # seed 1 is consistent too, but the seed means are not: mean CF1 0.643, HM of the means 0.646
            metrics_frame({**good, "CP": 0.6, "CR": 0.6, "CF1": 0.6}, dataset="d", method="ok", seed=1),
            metrics_frame({**good, "CF1": (0.8 + 0.6) / 2}, dataset="d", method="mean_f1", seed=0)]
    table = comparison_table(pd.concat(rows), ["ok", "mean_f1"])
    assert table.set_index("method")["f1_flag"].to_dict() == {"ok": False, "mean_f1": True}


def test_against_paper_compares_each_metric_in_its_direction():
    versus = cmp.against_paper({"retdm": {"average_precision": 0.95, "one_error": 0.05, "hamming_loss": 0.1217,
                                          "mAP": 0.9},
                                "bce_ft": {"average_precision": 0.99}}, "scene")  # bce_ft: no paper row
    assert versus[["method", "metric", "better"]].values.tolist() == [
        ["retdm", "hamming_loss", False], ["retdm", "one_error", False], ["retdm", "average_precision", True]]
    assert versus.loc[versus["metric"] == "one_error", "paper"].item() == 0.0425  # Table II; lower is better
    assert cmp.against_paper({"retdm": {"average_precision": 0.95}}, "synthetic").empty
