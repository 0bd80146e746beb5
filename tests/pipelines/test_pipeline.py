"""The pipeline end to end on a tiny profile, in a temporary git copy of the project: `dvc repro`,
its outputs and lineage, params granularity, a bad label table stopped at `validate`, and the
Prefect flow leaving the same `dvc.lock` as `dvc repro`."""

import contextlib
import contextvars
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from tests.project_copy import BIN, RUN_OUTPUTS, clone, sh, tiny_project
from tests.tiny_params import METHODS, SEEDS, TINY, set_params

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """The project's git-tracked files (never a run's dvc.lock or outputs) in a fresh git repo, tiny params."""
    repo = tiny_project(tmp_path_factory.mktemp("origin"))
    assert not any((repo / out).exists() for out in RUN_OUTPUTS), "a run's outputs leaked into the copy"
    return repo


@pytest.fixture(scope="module")
def repro_run(origin, tmp_path_factory) -> tuple[Path, float]:
    """A clone of `origin` after `dvc repro` from scratch, and that run's wall time in seconds."""
    repo = clone(origin, tmp_path_factory.mktemp("repro") / "repo")
    start = time.perf_counter()
    sh(repo, "dvc", "repro")
    return repo, time.perf_counter() - start


@pytest.fixture(scope="module")
def repro(repro_run) -> Path:
    return repro_run[0]


def test_dvc_repro_writes_the_comparison_and_is_then_up_to_date(repro):
    table = pd.read_parquet(repro / "results/comparison.parquet")
    ours, tuned = (table[(table["source"] == "ours") & (table["threshold"] == t)] for t in ("fixed", "tuned"))
    assert ours["method"].tolist() == METHODS == tuned["method"].tolist() and set(table["dataset"]) == {"synthetic"}
    assert ours["mAP"].between(0, 1).all() and (ours["seeds"] == len(SEEDS)).all()
    long = pd.read_parquet(repro / "results/metrics.parquet")
    assert list(long.columns) == ["dataset", "method", "seed", "metric", "value", "lower_is_better"]
    assert len(long) == len(METHODS) * len(SEEDS) * 13 and long.loc[long["metric"] == "coverage", "lower_is_better"].all()
    assert sorted(set(long["seed"])) == SEEDS
    summary = json.loads((repro / "results/metrics.json").read_text())  # DVC's metrics file
    for method in METHODS:  # the comparison is exactly the mean and std of the per-seed evaluations
        cf1 = [pd.read_parquet(repro / f"results/evaluations/synthetic/seed{s}/{method}/metrics.parquet")
               .set_index("metric").loc["CF1", "value"] for s in SEEDS]
        assert ours.set_index("method").loc[method, "CF1"] == pytest.approx(sum(cf1) / len(cf1), abs=1e-12)
        assert summary["synthetic"][method]["CF1"] == pytest.approx(sum(cf1) / len(cf1), abs=1e-6)
        assert summary["synthetic"][method]["CF1_std"] == pytest.approx(pd.Series(cf1).std(), abs=1e-6)
        # its second row: the same runs at the thresholds tuned on each seed's validation part
        cf1 = [pd.read_parquet(repro / f"results/evaluations/synthetic/seed{s}/{method}/metrics_tuned.parquet")
               .set_index("metric").loc["CF1", "value"] for s in SEEDS]
        assert tuned.set_index("method").loc[method, "CF1"] == pytest.approx(sum(cf1) / len(cf1), abs=1e-12)
        assert summary["synthetic"][method]["tuned"]["CF1"] == pytest.approx(sum(cf1) / len(cf1), abs=1e-6)
        preds = pd.read_parquet(repro / f"results/evaluations/synthetic/seed1/{method}/predictions.parquet")
        assert len(preds) == 32 and preds.shape[1] == 11
    meta = json.loads(pq.read_schema(repro / "results/comparison.parquet").metadata[b"retdm"])
    head = sh(repro, "git", "rev-parse", "HEAD").stdout.strip()
    assert meta["code_revision"] == head and len(meta["inputs"]) == len(METHODS) * len(SEEDS)
    assert sorted(meta["tuned_inputs"]) == sorted(p.replace("metrics.parquet", "metrics_tuned.parquet") for p in meta["inputs"])
    assert len(pd.read_parquet(repro / "results/metrics_tuned.parquet")) == len(long)
    assert "## synthetic" in (repro / "reports/comparison.md").read_text()
    for seed in SEEDS:  # one stage per point and seed, gathered per seed
        grid = pd.read_parquet(repro / f"results/evaluations/synthetic/seed{seed}/sweep.parquet")
        assert list(grid[["alpha", "beta"]].itertuples(index=False, name=None)) == [(0.01, 1.0), (1.0, 1.0)]
        for i, point in enumerate(("alpha0.01_beta1.0", "alpha1.0_beta1.0")):
            pd.testing.assert_frame_equal(grid.iloc[[i]].reset_index(drop=True), pd.read_parquet(
                repro / f"runs/synthetic/seed{seed}/sweep" / point / "metrics.parquet"))
    report = json.loads((repro / "reports/validation/synthetic.json").read_text())
    assert report["success"] and (repro / "reports/validation/synthetic.html").is_file()

    assert json.loads(sh(repro, "dvc", "status", "--json").stdout) == {}
    again = sh(repro, "dvc", "repro").stdout
    assert "Running stage" not in again and "didn't change" in again


def test_dvc_repro_killed_at_random_points_then_run_to_the_end_leaves_what_an_uninterrupted_run_leaves(
        origin, repro_run, tmp_path):
    """The cheap variant of `make crash` (tests/crash_consistency.py): SIGKILL of the whole process
    group of `dvc repro` 3 times at seeded points uniform over the reference run's wall time, each
    kill during the rerun after the one before, then `dvc repro` to the end: dvc.lock, results/
    and `dvc status` as after the uninterrupted run."""
    import random

    from tests.crash_consistency import crash, differences, kill_points, reproduce

    reference, seconds = repro_run
    repo = clone(origin, tmp_path / "repo")
    # points over 60 % of the reference's time: a rerun after a kill restores the finished stages from
    # the run-cache, so it ends sooner, and a busier reference run (measured under load) ends later
    kills = crash(repo, kill_points(random.Random(0), 0.6 * seconds, 3), tmp_path / "logs")
    assert any(k.phase != "finished" for k in kills), kills
    reproduce(repo, tmp_path / "logs/rerun.log")
    assert differences(reference, repo) == []


def test_the_report_stage_removes_the_staging_folder_a_killed_report_left(repro):
    """A report killed mid-write (SIGKILL, OOM) leaves its staging folder in reports/; the next one removes it."""
    stale = repro / "reports/.report-k3x_9a0b"
    stale.mkdir()
    (stale / "index.html").write_text("half a page")
    sh(repro, "python", "-m", "pipelines.report")
    assert not stale.exists() and json.loads(sh(repro, "dvc", "status", "--json").stdout) == {}


def test_lineage_traces_every_row_to_dvc_lock(repro):
    out = sh(repro, "retdm", "lineage", "results/comparison.parquet", "--as-json").stdout
    rows = json.loads(out)
    lock = yaml.safe_load((repro / "dvc.lock").read_text())["stages"]
    split_md5 = lock["split@synthetic"]["outs"][0]["md5"]
    head = sh(repro, "git", "rev-parse", "HEAD").stdout.strip()
    assert [(r["method"], r["seed"]) for r in rows] == [(m, s) for m in METHODS for s in SEEDS]
    for row in rows:
        assert row["split_hash"] == split_md5 and row["source_hash"] == lock["download@synthetic"]["outs"][0]["md5"]
        assert row["validation_report"] == "reports/validation/synthetic.json" and row["validation_hash"]
        ckpt = repro / row["checkpoint"]
        from retdm.provenance import file_sha256

        assert row["checkpoint_sha256"] == file_sha256(ckpt)
        assert row["code_revision"] == head and json.loads(row["params"])["profile"] == "cpu"
    params = {row["method"]: json.loads(row["params"]) for row in rows}
    assert all(f"methods.{m}" in params[m] for m in METHODS)  # the params of each method's own stages
    text = sh(repro, "retdm", "lineage", "results/metrics.parquet").stdout
    assert "synthetic / bce_ft / seed 1" in text and split_md5 in text


def test_changing_one_method_reruns_only_that_method_and_compare(repro):
    set_params(repro, **{"methods.bce_ft": {"loss": {"alpha": 0.5}}})
    try:
        changed = set(json.loads(sh(repro, "dvc", "status", "--json").stdout))
    finally:
        sh(repro, "git", "checkout", "params.yaml")
    assert changed == {f"finetune_baseline@synthetic-bce_ft-{s}" for s in SEEDS} | {"compare", "report"}
    set_params(repro, **{"methods.mlknn": {"estimator": {"k": 5}}})
    try:
        changed = set(json.loads(sh(repro, "dvc", "status", "--json").stdout))
    finally:
        sh(repro, "git", "checkout", "params.yaml")
    assert changed == {f"fit@synthetic-mlknn-{s}" for s in SEEDS} | {"compare", "report"}
    set_params(repro, **{"sweep.beta": [1.0, 0.5]})  # one stage per point: a new beta trains only its points
    try:
        changed = set(json.loads(sh(repro, "dvc", "status", "--json").stdout))
    finally:
        sh(repro, "git", "checkout", "params.yaml")
    assert changed == {f"sweep_point@synthetic-{s}-{a}-0.5" for s in SEEDS for a in (0.01, 1.0)} \
        | {f"sweep@synthetic-{s}" for s in SEEDS}
    set_params(repro, seeds=[0, 1, 2])  # a new seed trains and evaluates only that seed
    try:
        changed = set(json.loads(sh(repro, "dvc", "status", "--json").stdout))
    finally:
        sh(repro, "git", "checkout", "params.yaml")
    assert {"compare", "report"} < changed and not any(s.endswith(("-0", "-1")) for s in changed)
    assert {f"evaluate@synthetic-{m}-2" for m in METHODS} < changed and "pretrain@synthetic-2" in changed


def test_dvc_shows_the_metrics_the_plots_and_an_experiment_and_retdm_publishes_it(repro):
    summary = json.loads((repro / "results/metrics.json").read_text())
    shown = json.loads(sh(repro, "dvc", "metrics", "show", "--json").stdout)[""]["data"]["results/metrics.json"]["data"]
    assert shown["synthetic"]["retdm"]["mAP"] == summary["synthetic"]["retdm"]["mAP"]
    assert shown["synthetic"]["bce_ft"]["seeds"] == len(SEEDS) and "mAP_std" in shown["synthetic"]["bce_ft"]
    assert "synthetic.bce_ft.mAP_std" in sh(repro, "dvc", "metrics", "show").stdout
    diff = json.loads(sh(repro, "dvc", "metrics", "diff", "--json").stdout)["results/metrics.json"]
    assert diff["synthetic.retdm.CF1"]["new"] == summary["synthetic"]["retdm"]["CF1"]  # HEAD has none: all new
    plots = json.loads(sh(repro, "dvc", "plots", "show", "--json").stdout)["data"]
    assert {f"reports/plots/epochs/synthetic-{m}.csv" for m in ("bce", "bce_ft", "retdm")} <= set(plots)
    assert "reports/plots/sweep/synthetic.csv" in plots and "reports/figures/synthetic-convergence.png" in plots
    curve = pd.read_csv(repro / "reports/plots/epochs/synthetic-retdm.csv")
    assert list(curve["stage"]) == ["pretrain", "embed", "finetune"] and list(curve["step"]) == [1, 2, 3]

    # An experiment in a temporary copy (what `make compare` runs): the workspace stays as it was.
    before = {p: (repro / p).read_bytes() for p in ("params.yaml", "dvc.lock", "results/metrics.json")}
    sh(repro, "dvc", "exp", "run", "--temp", "--name", "knn5", "-S", "+methods.mlknn.estimator.k=5")
    assert {p: (repro / p).read_bytes() for p in before} == before
    rows = json.loads(sh(repro, "dvc", "exp", "show", "--json").stdout)
    revs = [r for row in rows for e in (row.get("experiments") or []) for r in e["revs"]]
    (knn5,) = [r["data"] for r in revs if r.get("name") == "knn5"]
    assert knn5["params"]["params.yaml"]["data"]["methods"]["mlknn"] == {"estimator": {"k": 5}}
    assert "mAP" in knn5["metrics"]["results/metrics.json"]["data"]["synthetic"]["mlknn"]
    sh(repro, "retdm", "publish", "knn5", "--exp", "knn5", "--command", "dvc exp run")
    record = json.loads((repro / "results/published/knn5.json").read_text())
    assert record["params"]["methods"]["mlknn"] == {"estimator": {"k": 5}}
    assert record["results"]["synthetic"]["bce"] == summary_of(repro / "results/metrics.parquet")["synthetic"]["bce"]


def summary_of(path: Path) -> dict:
    from retdm.published import summarise

    return summarise(pd.read_parquet(path))


def test_a_bad_label_table_stops_the_pipeline_at_validate(origin, tmp_path):
    repo = clone(origin, tmp_path / "repo")
    from retdm.data.synthetic import make_synthetic

    make_synthetic(tmp_path / "mine", num_images=60, image_size=32, progress=False)
    frame = pd.read_parquet(tmp_path / "mine/labels.parquet")
    meta = pq.read_schema(tmp_path / "mine/labels.parquet").metadata
    frame.loc[7, "ring"] = 2
    frame.loc[9, "image_id"] = frame.loc[8, "image_id"]
    import pyarrow as pa

    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(meta),
                   tmp_path / "mine/labels.parquet")
    set_params(repo, datasets={"mine": {"source": "table", "table": str(tmp_path / "mine/labels.parquet"),
                                        "inputs": str(tmp_path / "mine"), "official_split": False, "train": {}}},
               **{"sweep.datasets": []})
    proc = sh(repo, "dvc", "repro", check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "expect_column_values_to_be_in_set on column 'ring'" in err and "[2]" in err
    assert "expect_column_values_to_be_unique on column 'image_id'" in err
    assert not (repo / "runs").exists() and not (repo / "results").exists()
    assert "validate@mine" not in (yaml.safe_load((repo / "dvc.lock").read_text()) or {}).get("stages", {})


def test_editing_a_label_in_the_users_csv_reruns_download_and_what_follows(origin, tmp_path):
    """The user's files are a dependency of download (``inputs``): no stale results without a word."""
    import numpy as np
    from PIL import Image

    images = tmp_path / "mine" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(images / f"{i}.png")
    csv = tmp_path / "mine" / "labels.csv"
    csv.write_text("image,sky,sea\n" + "".join(f"{i}.png,{i % 2},{int(i % 3 == 0)}\n" for i in range(40)))
    repo = clone(origin, tmp_path / "repo")
    set_params(repo, datasets={"mine": {"source": "folder", "images": str(images), "csv": str(csv),
                                        "inputs": str(tmp_path / "mine"), "official_split": False, "train": {}}},
               **{"sweep.datasets": []})
    sh(repo, "dvc", "repro", "validate@mine")
    assert json.loads(sh(repo, "dvc", "status", "validate@mine", "--with-deps", "--json").stdout) == {}
    csv.write_text(csv.read_text().replace("\n7.png,1,0\n", "\n7.png,0,0\n"))  # one label edited
    assert set(json.loads(sh(repo, "dvc", "status", "validate@mine", "--with-deps", "--json").stdout)) == \
        {"download@mine"}  # what follows changes once download has re-run
    again = sh(repo, "dvc", "repro", "validate@mine").stdout
    assert all(f"Running stage '{s}@mine'" in again for s in ("download", "split", "validate"))
    raw = pd.read_parquet(repo / "data/mine/raw/labels.parquet").set_index("image_id")
    assert raw.loc["7.png", "sky"] == 0 and raw.loc["9.png", "sky"] == 1
    assert json.loads(sh(repo, "dvc", "status", "validate@mine", "--with-deps", "--json").stdout) == {}


def test_prefect_flow_leaves_the_same_dvc_lock_and_publishes_the_table(origin, repro, tmp_path, monkeypatch):
    """The flow on 4 worker threads of a 2-core machine (as the flow sees it), each stage with 1
    thread: the cores limit lets at most 2 stages run at once, and a second run runs none. After
    an edit, a third runs what the edit made out of date and what that run changed downstream."""
    from prefect.client.orchestration import get_client
    from prefect.testing.utilities import prefect_test_harness

    from pipelines.flows import limit_name, reproduce

    repo = clone(origin, tmp_path / "repo")
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS", "1")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with prefect_test_harness(server_startup_timeout=90):
        ran = reproduce(root=str(repo), workers=4)
        again = reproduce(root=str(repo), methods=["bce"])
        lock = yaml.safe_load((repo / "dvc.lock").read_text())
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["evaluate"]["threshold"] = 0.3
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        with another_flow_holding(limit_name(), cores=2, seconds=3) as released:
            edited = reproduce(root=str(repo), workers=1)  # one at a time: waits for the cores
        with get_client(sync_client=True) as client:
            artifacts = {a.key: a for a in client.read_artifacts()}
            (limit,) = client.read_global_concurrency_limits()
    stages = yaml.safe_load((repro / "dvc.lock").read_text())["stages"]
    assert [r["stage"] for r in ran][-1] == "report" and len(ran) == len(stages) == 32 and all(r["ran"] for r in ran)
    assert limit.name.startswith("retdm-cores-") and limit.limit == 2
    held = [{"started": r["held"][0], "seconds": r["held"][1] - r["held"][0]} for r in ran]
    assert concurrency(held) == 2  # in parallel, never beyond the cores
    assert again and not any(r["ran"] or r["held"] for r in again)  # dvc status: all up to date
    assert lock == yaml.safe_load((repro / "dvc.lock").read_text())
    # The stages that read the threshold run, and those downstream that only read what they change:
    # compare (the evaluations) and sweep@… (the sweep points), out of date only once those ran.
    reads = {s for s, entry in lock["stages"].items() if "evaluate" in entry.get("params", {}).get("params.yaml", {})}
    rereads = {"compare", *(s for s in stages if s.startswith("sweep@"))}
    assert {s for s in stages if s.startswith(("evaluate@", "sweep_point@"))} | {"report"} <= reads
    assert not reads & rereads and {r["stage"] for r in edited if r["ran"]} == reads | rereads
    assert min(r["held"][0] for r in edited if r["ran"]) >= released[0]
    assert json.loads(sh(repo, "dvc", "status", "--json").stdout) == {}
    rows = json.loads(artifacts["retdm-comparison"].data)
    assert [r["method"] for r in rows if r["threshold"] == "fixed"] == METHODS
    assert "## synthetic" in artifacts["retdm-comparison-report"].data
    assert "reports/index.html" in artifacts["retdm-report"].data


@contextlib.contextmanager
def another_flow_holding(limit: str, cores: int, seconds: float):
    """A thread holding ``cores`` slots of ``limit`` for ``seconds`` from when this enters; yields
    a list that gets the time it starts to release them."""
    from prefect.concurrency.sync import concurrency

    acquired, released = threading.Event(), []

    def hold() -> None:
        with concurrency(limit, occupy=cores, strict=True):
            acquired.set()
            time.sleep(seconds)
            released.append(time.time())

    thread = threading.Thread(target=contextvars.copy_context().run, args=(hold,))
    thread.start()
    assert acquired.wait(60)
    try:
        yield released
    finally:
        thread.join()


def test_only_failures_on_bad_input_are_not_retried():
    from prefect.states import Failed

    from pipelines.flows import StageInputError, retry_transient

    assert retry_transient(None, None, Failed(data=RuntimeError("worker killed"))) is True
    assert retry_transient(None, None, Failed(data=StageInputError("error: bad labels"))) is False


def test_stages_run_in_parallel_only_as_far_as_the_cores_allow():
    from pipelines.schedule import parallel_stages

    params = {"profile": "cpu", "seeds": [0], "train": {"threads": 4}, "methods": {"bce": {}, "retdm": {}},
              "distributed": {"nproc_per_node": 1}, "sweep": {"train": {}},
              "datasets": {d: {"source": "synthetic", "official_split": False, "train": {}} for d in ("a", "b")}}
    graph = {"pretrain@a": [], "embed@a-retdm": ["pretrain@a"], "finetune@a-retdm": ["embed@a-retdm"],
             "sweep_point@a-0.1-1.0": ["pretrain@a"], "evaluate@a-bce": ["pretrain@a"],
             "evaluate@a-retdm": ["finetune@a-retdm"]}
    commands = {"pretrain@a": "python -m pipelines.train a bce pretrain 0",
                "embed@a-retdm": "python -m pipelines.train a retdm embed 0",
                "finetune@a-retdm": "python -m pipelines.train a retdm finetune 0",
                "sweep_point@a-0.1-1.0": "python -m pipelines.sweep a 0 0.1 1.0",
                "evaluate@a-bce": "python -m pipelines.evaluate a bce 0", "evaluate@a-retdm": "python -m pipelines.evaluate a retdm 0"}
    assert parallel_stages(params, graph, commands, cores=16) == 4 and parallel_stages(params, graph, commands, 2) == 1
    params["methods"]["retdm"] = {"threads": 8}  # the hungriest stages that can overlap set the pace
    assert parallel_stages(params, graph, commands, cores=16) == 2
    params["distributed"]["nproc_per_node"] = 2  # under torchrun: threads x processes
    params["methods"]["retdm"] = {}
    assert parallel_stages(params, graph, commands, cores=16) == 2
    params["distributed"]["nproc_per_node"] = 1
    assert parallel_stages({**params, "train": {}}, graph, commands, cores=16) == 1  # 0: all cores each
    params["datasets"]["a"]["train"] = {"threads": 16}  # and so does the hungriest dataset
    assert parallel_stages(params, graph, commands, cores=16) == 1
    params["datasets"]["a"]["train"] = {}
    # The pretrain every stage waits for runs alone: it may have all the cores, the rest 1 thread each.
    params.update(train={"threads": 1}, methods={"bce": {"threads": 0}, "retdm": {}})
    assert parallel_stages(params, graph, commands, cores=2) == 2
    graph["pretrain@b"] = []  # unless another dataset's pretrain can run beside it
    commands["pretrain@b"] = "python -m pipelines.train b bce pretrain 0"
    assert parallel_stages(params, graph, commands, cores=2) == 1


def test_stages_run_upstream_first_and_the_long_trainings_before_the_short_stages():
    from pipelines.schedule import parallel_stages, run_order

    graph = {"split@a": [], "pretrain@a": ["split@a"], "features@a": ["pretrain@a"], "fit@a-mlknn": ["features@a"],
             "evaluate@a-bce": ["pretrain@a"], "embed@a-retdm": ["pretrain@a"], "finetune@a-retdm": ["embed@a-retdm"],
             "sweep_point@a-1-1": ["pretrain@a"], "sweep@a": ["sweep_point@a-1-1"], "notes": []}
    commands = {"split@a": "python -m pipelines.split a", "pretrain@a": "python -m pipelines.train a bce pretrain 0",
                "features@a": "python -m pipelines.features a 0", "fit@a-mlknn": "python -m pipelines.train a mlknn fit 0",
                "evaluate@a-bce": "python -m pipelines.evaluate a bce 0",
                "embed@a-retdm": "python -m pipelines.train a retdm embed 0",
                "finetune@a-retdm": "python -m pipelines.train a retdm finetune 0",
                "sweep_point@a-1-1": "python -m pipelines.sweep a 0 1 1", "sweep@a": "python -m pipelines.sweep a 0",
                "notes": "make notes"}  # not a pipelines entry point: neither a training nor known threads
    order = run_order(list(graph), graph, commands)
    assert order == ["split@a", "pretrain@a", "embed@a-retdm", "finetune@a-retdm", "sweep_point@a-1-1",
                     "features@a", "fit@a-mlknn", "evaluate@a-bce", "sweep@a", "notes"]
    assert all(order.index(d) < order.index(n) for n in graph for d in graph[n])
    params = {"profile": "cpu", "seeds": [0], "train": {"threads": 1}, "methods": {"bce": {}, "retdm": {}, "mlknn": {}},
              "sweep": {"train": {}}, "datasets": {"a": {"source": "synthetic", "official_split": False, "train": {}}}}
    assert parallel_stages(params, graph, commands, cores=4) == 4


def write_mulan(root: Path, n: int = 200, seed: int = 0) -> dict[str, str]:
    """A MULAN train/test ARFF pair (official split, 150 + 50 rows, one sparse) and its label XML."""
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8))
    y = (x[:, :3] + rng.normal(scale=0.5, size=(n, 3)) > 0.3).astype(int)  # (N, 3), learnable
    head = "@relation toy\n" + "".join(f"@attribute f{i} numeric\n" for i in range(8)) + \
        "".join(f"@attribute L{j} {{0,1}}\n" for j in range(3)) + "@data\n"
    rows = [",".join([*(f"{v:.5f}" for v in x[i]), *map(str, y[i])]) for i in range(n)]
    (root / "toy-train.arff").write_text(head + "\n".join(rows[:150]) + "\n")
    sparse = ["{" + ",".join(f"{j} {v}" for j, v in enumerate(r.split(",")) if float(v) != 0) + "}" for r in rows[150:]]
    (root / "toy-test.arff").write_text(head + "\n".join(sparse) + "\n")
    (root / "toy.xml").write_text('<labels xmlns="http://mulan.sourceforge.net/labels">'
                                  + "".join(f'<label name="L{j}"/>' for j in range(3)) + "</labels>")
    return {"arff": str(root / "toy-train.arff"), "test_arff": str(root / "toy-test.arff"), "xml": str(root / "toy.xml")}


def test_official_releases_and_feature_datasets_run_through_the_same_stages(origin, tmp_path):
    """`scene` from its official layout (read in place, through the image cache) and a MULAN
    feature dataset (its official split kept, an MLP in place of the CNN) land in one comparison."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests" / "data"))
    from official_layouts import make_scene

    targets = -np.ones((5, 40))
    targets[np.arange(40) % 5, np.arange(40)] = 1  # one label each, 8 images per label
    targets[0, ::4] = 1
    make_scene(tmp_path / "miml", targets)
    repo = clone(origin, tmp_path / "repo")
    methods = ["bce", "retdm", "mlknn"]
    set_params(repo, seeds=[0], datasets={
        "scene": {"source": "scene", "from": str(tmp_path / "miml"), "inputs": str(tmp_path / "miml"),
                  "official_split": False, "train": {"data": {"image_cache": True}}},
        "toy": {"source": "mulan", "options": write_mulan(tmp_path / "mulan"), "inputs": str(tmp_path / "mulan"),
                "official_split": True,
                "train": {"profile": "features", "data": {"batch_size": 16}}},
    }, methods={m: {} for m in methods}, retdm_variants=["retdm"], deep_baselines=[], feature_methods=["mlknn"],
        **{"sweep.datasets": []})
    sh(repo, "dvc", "repro")
    table = pd.read_parquet(repo / "results/comparison.parquet")
    ours = table[(table["source"] == "ours") & (table["threshold"] == "fixed")]
    assert sorted(zip(ours["dataset"], ours["method"])) == sorted((d, m) for d in ("scene", "toy") for m in methods)
    assert set(table.loc[table["source"] == "paper", "dataset"]) == {"scene"}  # Table II beside our scene rows
    raw = pd.read_parquet(repo / "data/scene/raw/labels.parquet")
    assert len(raw) == 40 and (repo / "data/scene/raw" / raw["path"][0]).resolve().is_relative_to(tmp_path / "miml")
    cache = json.loads((repo / "data/scene/cache/cache.json").read_text())
    assert cache["count"] == 40 and cache["size"] == TINY["data"]["resize"]
    assert (repo / "data/toy/cache/NOT_BUILT.txt").is_file()
    toy = pd.read_parquet(repo / "data/toy/split.parquet")
    assert (toy["split"] == "test").sum() == 50 and [c for c in toy.columns if c.startswith("feat_")][-1] == "feat_7"
    from retdm.checkpoint import load_checkpoint

    assert load_checkpoint(repo / "runs/toy/seed0/bce/pretrain/best.pt")["config"]["model"]["backbone"] == "mlp"
    scene = load_checkpoint(repo / "runs/scene/seed0/bce/pretrain/best.pt")
    assert scene["transform"]["source_size"] == TINY["data"]["resize"]
    assert "| retdm (paper) |" in (repo / "reports/comparison.md").read_text()
    assert json.loads(sh(repo, "dvc", "status", "--json").stdout) == {}


def markdown_tables(text: str) -> list[pd.DataFrame]:
    """The pipe tables of a Markdown page, cells as text."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip("|").split("|")])
        elif block:
            tables.append(pd.DataFrame(block[2:], columns=block[0]))
            block = []
    return tables


def test_the_report_renders_in_a_browser_and_shows_the_comparisons_numbers(repro, tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "report"))
    from browser import browser_missing, check_rendered, open_page

    html, md = repro / "reports/index.html", repro / "reports/index.md"
    assert html.is_file() and md.is_file()
    # On synthetic, every number of our rows is the comparison table's, to the 4 decimals shown.
    table = pd.read_parquet(repro / "results/comparison.parquet").query("threshold == 'fixed'").set_index("method")
    shown = markdown_tables(md.read_text())[0]
    ours = shown[shown["row"] == f"ours, mean of {len(SEEDS)} seeds"].set_index("method")
    assert list(ours.index) == METHODS
    from retdm.compare import HEADERS

    for method in METHODS:
        for metric, header in HEADERS.items():
            assert float(ours.loc[method, header].strip("*")) == pytest.approx(table.loc[method, metric], abs=5e-5)
    figures = ["convergence", "sensitivity", "embedding-pca", "embedding-tsne", "examples", "class-ap"]
    assert all((repro / f"reports/figures/synthetic-{f}.png").is_file() for f in figures)
    if browser_missing() and os.environ.get("RETDM_REQUIRE_BROWSER") != "1":  # CI requires it
        pytest.skip(browser_missing())
    facts = open_page(html, tmp_path / "report.png")
    assert check_rendered(facts, headings=("RETDM reproduction report", "synthetic", "Lineage"), min_tables=1,
                          min_images=len(figures)) == []
    assert all(image.natural_width > 0 for image in facts.images)
    from PIL import Image

    with Image.open(facts.screenshot) as shot:
        assert shot.width >= 1000 and len(shot.convert("RGB").getcolors(1 << 20) or []) > 100


def concurrency(runs: list[dict]) -> int:
    """The most stage tasks that were running at the same moment."""
    edges = sorted([(r["started"], 1) for r in runs] + [(r["started"] + r["seconds"], -1) for r in runs])
    most = now = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        now += step
        most = max(most, now)
    return most


def test_dask_flow_on_two_workers_pushes_every_output_and_a_fresh_clone_restores_them(origin, repro, tmp_path):
    """The flow on a local Dask cluster of 2 worker processes, with a local-path DVC remote: the
    same table and dvc.lock as `dvc repro`, everything in the remote; then a fresh clone with
    that dvc.lock pulls a method's stages from the remote instead of recomputing them."""
    from prefect.testing.utilities import prefect_test_harness

    from pipelines.flows import FLOW_REMOTE, reproduce
    from retdm.compare import TABLE_METRICS

    repo, fresh, store = clone(origin, tmp_path / "repo"), clone(origin, tmp_path / "fresh"), tmp_path / "store"
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{BIN}{os.pathsep}{path}"
    try:
        with prefect_test_harness(server_startup_timeout=90):
            ran = reproduce(root=str(repo), runner="dask", workers=2, remote=str(store))
            shutil.copy2(repo / "dvc.lock", fresh / "dvc.lock")  # as if committed, without the outputs
            restored = reproduce(root=str(fresh), methods=["bce"], remote=str(store))
    finally:
        os.environ["PATH"] = path
    lock = yaml.safe_load((repro / "dvc.lock").read_text())
    assert len(ran) == len(lock["stages"]) and all(r["ran"] and not r["pulled"] for r in ran)
    workers = {r["worker"] for r in ran}
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers), workers
    assert concurrency(ran) <= 2
    assert yaml.safe_load((repo / "dvc.lock").read_text()) == lock
    columns = ["dataset", "method", *TABLE_METRICS]
    pd.testing.assert_frame_equal(pd.read_parquet(repo / "results/comparison.parquet")[columns],
                                  pd.read_parquet(repro / "results/comparison.parquet")[columns], check_exact=True)
    assert json.loads(sh(repo, "dvc", "status", "--json").stdout) == {}
    assert f"url = {store}" in (repo / ".dvc/config.local").read_text()
    assert json.loads(sh(repo, "dvc", "status", "--cloud", "-r", FLOW_REMOTE, "--json").stdout) == {}
    assert (store / "files/md5").is_dir()

    assert {f"evaluate@synthetic-bce-{s}" for s in SEEDS} <= {r["stage"] for r in restored}
    assert restored[-1]["stage"].startswith("evaluate@synthetic-bce-")
    assert all(r["pulled"] and not r["ran"] for r in restored), restored
    for out in ("results/evaluations/synthetic/seed1/bce/metrics.parquet", "runs/synthetic/seed1/bce/pretrain/best.pt"):
        assert (fresh / out).read_bytes() == (repro / out).read_bytes()
    assert yaml.safe_load((fresh / "dvc.lock").read_text()) == lock


def test_dask_runner_options_are_checked_before_anything_runs(tmp_path, capsys, monkeypatch):
    from pipelines.flows import FLOW_REMOTE, check_runner, dvc_remote, main, reproduce
    from retdm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"runner 'ray' is not one of threads, dask"):
        reproduce.fn(runner="ray")  # the flow's body rejects it before reading anything
    for workers in (0, -2, 1.5, True):
        with pytest.raises(ConfigError, match=rf"workers must be a whole number >= 1, got {workers!r}"):
            check_runner("dask", workers, None)
    with pytest.raises(ConfigError, match="dask_address 'tcp://h:8786' needs runner 'dask'"):
        check_runner("threads", None, "tcp://h:8786")
    with pytest.raises(ConfigError, match="leave workers out"):
        check_runner("dask", 2, "tcp://h:8786")
    check_runner("dask", None, "tcp://h:8786")
    check_runner("threads", 1, None)
    with pytest.raises(SystemExit):
        main(["--runner", "dask", "--workers", "0"])
    assert "workers must be a whole number >= 1, got 0" in capsys.readouterr().err

    sh(tmp_path, "dvc", "init", "--no-scm", "-q")
    sh(tmp_path, "dvc", "remote", "add", "shared", "/somewhere")
    assert dvc_remote(tmp_path, "shared") == "shared"
    with pytest.raises(ConfigError, match=r"remote 'sharde' is neither a DVC remote .* \(configured: shared\)"):
        dvc_remote(tmp_path, "sharde")
    monkeypatch.chdir(tmp_path / ".dvc")  # a relative path is taken from the current directory
    assert dvc_remote(tmp_path, "../store") == FLOW_REMOTE
    assert f"url = {tmp_path / 'store'}" in (tmp_path / ".dvc/config.local").read_text()
