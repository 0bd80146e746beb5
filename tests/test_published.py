"""Published results: files written from a run (workspace or DVC experiment), README blocks made
from them, and the README of this checkout equal to its files."""

import hashlib
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from retdm.compare import THRESHOLDED
from retdm.errors import DataError
from retdm.published import BLOCK, publish, readme_drift, render_block, rewrite_readme, summarise

ROOT = Path(__file__).resolve().parents[1]


def long_form() -> pd.DataFrame:
    rows = []
    for method, base in (("bce", 0.80), ("bce_ft", 0.81), ("retdm", 0.83)):
        for seed in (1, 0, 2):  # out of order: per-seed lists follow the seed
            for metric, value in (("mAP", base + seed / 100), ("one_error", 0.2 - seed / 100)):
                rows.append({"dataset": "scene", "method": method, "seed": seed, "metric": metric, "value": value,
                             "lower_is_better": metric == "one_error"})
    return pd.DataFrame(rows)


def tuned_form() -> pd.DataFrame:
    """The same runs at tuned thresholds: C-F1 moves, the ranking metrics (mAP) do not."""
    long = long_form()
    cf1 = long[long["metric"] == "mAP"].assign(metric="CF1", lower_is_better=False)
    cf1["value"] = cf1["value"] - 0.1
    return pd.concat([long, cf1], ignore_index=True)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_summary_keeps_mean_std_and_every_seed():
    out = summarise(long_form())
    assert out["scene"]["retdm"]["mAP"] == {"mean": 0.84, "std": 0.01, "seeds": [0.83, 0.84, 0.85]}
    assert list(out["scene"]) == ["bce", "bce_ft", "retdm"]


def make_run(repo: Path) -> Path:
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "results").mkdir()
    long_form().to_parquet(repo / "results/metrics.parquet")
    tuned_form().to_parquet(repo / "results/metrics_tuned.parquet")
    (repo / "params.yaml").write_text("seeds: [0, 1, 2]\n")
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    git(repo, "add", "params.yaml", "dvc.lock")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "run")
    return repo


def test_publish_from_the_workspace_records_results_verdicts_and_lineage(tmp_path):
    repo = make_run(tmp_path / "repo")
    out = publish("default", repo, command="make run", seconds=301.4)
    record = json.loads(out.read_text())
    assert out == repo / "results/published/default.json"
    assert record["results"] == summarise(long_form()) and record["params"] == {"seeds": [0, 1, 2]}
    # at tuned thresholds: only the metrics a threshold moves (C-F1 here; mAP is a ranking metric)
    assert record["results_tuned"] == summarise(tuned_form(), THRESHOLDED) != {}
    assert list(record["results_tuned"]["scene"]["retdm"]) == ["CF1"]
    assert record["commit"] == git(repo, "rev-parse", "HEAD").strip() and record["wall_seconds"] == 301
    assert record["metrics_sha256"] == {name: hashlib.sha256((repo / "results" / name).read_bytes()).hexdigest()
                                        for name in ("metrics.parquet", "metrics_tuned.parquet")}
    assert record["dvc_lock_sha256"] == hashlib.sha256((repo / "dvc.lock").read_bytes()).hexdigest()
    first = record["verdicts"][0]
    assert (first["method"], first["control"], first["metric"]) == ("retdm", "bce_ft", "mAP")
    assert first["gains"] == pytest.approx([0.02, 0.02, 0.02]) and first["wins"] == 3


def test_publish_from_an_experiment_reads_its_lock_and_the_dvc_cache(tmp_path):
    repo = make_run(tmp_path / "repo")
    outs, cached = [], {}
    for name in ("metrics.parquet", "metrics_tuned.parquet"):
        data = (repo / "results" / name).read_bytes()
        md5 = hashlib.md5(data).hexdigest()
        cached[name] = repo / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
        cached[name].parent.mkdir(parents=True, exist_ok=True)
        cached[name].write_bytes(data)
        (repo / "results" / name).unlink()  # the workspace has no run: the experiment does
        outs.append({"path": f"results/{name}", "md5": md5})
    lock = {"schema": "2.0", "stages": {"compare": {"outs": outs}}}
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock))
    (repo / "params.yaml").write_text("seeds: [0, 1, 2]\nprofile: lite\n")
    git(repo, "add", "dvc.lock", "params.yaml")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "exp")
    exp = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "reset", "-q", "--hard", "HEAD~1")  # the workspace is back at the baseline
    git(repo, "update-ref", "refs/exps/ab/cdef/scene", exp)
    record = json.loads(publish("scene", repo, exp="scene", command="make scene").read_text())
    assert record["commit"] == git(repo, "rev-parse", "HEAD").strip() != exp and record["params"]["profile"] == "lite" and record["experiment"] == "scene"
    assert record["results"] == summarise(long_form())
    assert record["results_tuned"] == summarise(tuned_form(), THRESHOLDED)
    with pytest.raises(DataError, match="no DVC experiment named 'nosuch'"):
        publish("x", repo, exp="nosuch")
    cached["metrics_tuned.parquet"].unlink()
    with pytest.raises(DataError, match=r"results/metrics_tuned.parquet .* is not in the DVC cache.*dvc exp pull"):
        publish("scene", repo, exp="scene")


def test_readme_blocks_are_rendered_from_their_file_and_drift_is_named(tmp_path):
    repo = make_run(tmp_path / "repo")
    publish("default", repo, command="make run", seconds=60)
    published = repo / "results/published"
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- published:default -->\ntyped by hand\n<!-- /published:default -->\n\nend\n")
    assert readme_drift(readme, published) == ["default"]
    text = rewrite_readme(readme.read_text(), published)
    assert text.startswith("# x\n\n<!-- published:default -->\n**scene**") and text.endswith("<!-- /published:default -->\n\nend\n")
    assert "| method | One-error ↓ | mAP |" in text and "| retdm | 0.1900 ± 0.0100 | 0.8400 ± 0.0100 |" in text
    tuned = text[text.index("per-class thresholds"):]  # its own table: the threshold-dependent metrics only
    assert "| method | C-F1 |" in tuned and "| retdm | 0.7400 ± 0.0100 |" in tuned
    # the paper's scene rows beside ours, metric by metric (it has no mAP; its one-error 0.0425 is lower)
    assert ("Against the paper's row of the same method, metric by metric, at threshold 0.5: bce better on 0 of 1 "
            "(not on One-error ↓); retdm better on 0 of 1 (not on One-error ↓).") in text
    record = json.loads((published / "default.json").read_text())
    record["results"]["scene"]["retdm"]["average_precision"] = {"mean": 0.95, "std": None, "seeds": [0.95]}
    record["results"]["scene"]["retdm"]["one_error"]["mean"] = 0.05  # the paper's 0.0425 is better
    assert ("Against the paper's row of the same method, metric by metric, at threshold 0.5: bce better on 0 of 1 "
            "(not on One-error ↓); retdm better on 1 of 2 (not on One-error ↓).") in render_block(record)
    assert "| retdm | bce_ft | **+0.0200 ± 0.0000 (3/3)** | +0.0000 ± 0.0000 (0/3) |" in text and "make run" in text
    readme.write_text(text)
    assert readme_drift(readme, published) == []
    readme.write_text(text.replace("0.8400 ± 0.0100", "0.8500 ± 0.0100"))  # one typed digit
    assert readme_drift(readme, published) == ["default"]
    with pytest.raises(DataError, match="published:other: .*other.json not found"):
        rewrite_readme("<!-- published:other -->\n<!-- /published:other -->", published)


def test_this_readme_equals_its_published_files():
    text = (ROOT / "README.md").read_text()
    names = [m["name"] for m in BLOCK.finditer(text)]
    assert "default" in names, "README.md has no published:default block (the make run table)"
    assert readme_drift(ROOT / "README.md", ROOT / "results/published") == []
    for name in names:  # and each file is what a run wrote: its render is what the README shows
        record = json.loads((ROOT / "results/published" / f"{name}.json").read_text())
        assert render_block(record) in text and len(record["commit"]) == 40 and (record.get("results") or record["checks"])


def test_a_checks_record_renders_each_check_with_its_verdict(tmp_path):
    record = {"name": "make_run", "command": "python bench/bench_make_run.py", "commit": "a" * 40,
              "machine": {"cpus": 2, "machine": "x86_64", "torch": "2.14.1"},
              "checks": [{"what": "make setup", "result": "2.5 min (150 s)"},
                         {"what": "make run", "result": "11.0 min (660 s)", "target": "≤ 10 min", "pass": False}]}
    text = render_block(record)
    assert "| make setup | 2.5 min (150 s) |  |  |" in text and "| make run | 11.0 min (660 s) | ≤ 10 min | FAIL |" in text
    assert "`python bench/bench_make_run.py` at commit aaaaaaaaaa on 2 CPU cores" in text


def test_the_committed_dvc_lock_and_metrics_are_the_published_default_runs():
    """DVC's convention: the default run's dvc.lock and metrics file are committed beside the code,
    so `dvc metrics diff` compares a user's run with the published one. Read from git, not the
    working tree, which a local `make run` rewrites."""
    record = json.loads((ROOT / "results/published/default.json").read_text())
    lock = subprocess.run(["git", "show", "HEAD:dvc.lock"], cwd=ROOT, capture_output=True, check=True).stdout
    assert hashlib.sha256(lock).hexdigest() == record["dvc_lock_sha256"]
    metrics = json.loads(git(ROOT, "show", "HEAD:results/metrics.json"))
    for dataset, methods in record["results"].items():
        for method, values in methods.items():
            for metric, v in values.items():
                assert metrics[dataset][method][metric] == pytest.approx(v["mean"], abs=1e-6)
                assert metrics[dataset][method]["seeds"] == len(v["seeds"])
