"""Prefect flows: the DVC pipeline on a schedule, with retries, parallel stages and artifacts.

``reproduce`` runs exactly the stages of ``dvc.yaml``, each as ``dvc repro --single-item <stage>``
in a Prefect task that starts once the stages it depends on have finished. DVC itself decides
whether a stage is out of date, runs it and records it in ``dvc.lock``, so the lock ends the same
as after ``dvc repro``. DVC releases its repository lock while a stage's command runs, so
independent stages (e.g. ``embed`` of two methods) run in parallel; ``--wait-for-lock`` queues
the short moments when two of them touch ``dvc.lock``. A failed stage is retried (transient
failures), then fails the flow and everything downstream of it.

How many stages run at once follows from ``train.threads`` in params.yaml: the cores divided by
the threads each stage's torch uses (0: all of them, so one stage at a time). Running more
would only make the stages fight over the cores, and the threads cannot be lowered behind the
user's back: the last bits of a trained model depend on them, and ``dvc.lock`` must end as
after ``dvc repro``. On 16 cores, ``train: {threads: 4}`` runs four stages at once.

Run: ``python -m pipelines.flows [--datasets synthetic] [--methods bce retdm] [--profile cpu]``;
a deployment with a nightly schedule is declared in ``infra/prefect.yaml``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from pipelines.params import COMPARISON_MD, PARAMS_FILE, RESULTS, load_params, train_config
from retdm.errors import ConfigError

TABLE_COLUMNS = ("dataset", "method", "CF1", "OF1", "average_precision", "mAP", "hamming_loss", "ranking_loss",
                 "one_error", "coverage")


def dvc_command(*args: str) -> list[str]:
    """``dvc`` from this environment (the venv's, when not on PATH) with ``args``."""
    exe = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    return [exe, *args]


def stage_graph(root: Path) -> dict[str, list[str]]:
    """Every stage of ``dvc.yaml`` → the stages it depends on (upstream first in dict order)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edge u → v: stage u depends on stage v
        order = [s for s in reversed(list(nx.topological_sort(graph))) if hasattr(s, "cmd")]
        return {s.name: [v.name for v in graph.successors(s)] for s in order}


def select(graph: dict[str, list[str]], params: dict[str, Any], datasets: list[str] | None,
           methods: list[str] | None) -> list[str]:
    """The stages to run for ``datasets`` × ``methods`` (default: all in params.yaml), with
    everything they depend on; ``compare`` and ``report`` only when the selection covers all of
    params.yaml."""
    for kind, chosen, known in (("dataset", datasets, params["datasets"]), ("method", methods, params["methods"])):
        unknown = sorted(set(chosen or []) - set(known))
        if unknown:
            raise ConfigError(f"unknown {kind}(s) {unknown}; params.yaml has: {', '.join(known)}")
    datasets, methods = datasets or list(params["datasets"]), methods or list(params["methods"])
    wanted = {f"evaluate@{d}-{m}" for d in datasets for m in methods}
    if set(datasets) == set(params["datasets"]) and set(methods) == set(params["methods"]):
        wanted |= {"compare", "report"}
    missing = sorted(wanted - set(graph))
    if missing:
        raise ConfigError(f"dvc.yaml has no stage(s) {missing}; stages are: {', '.join(graph)}")
    needed: set[str] = set()
    todo = list(wanted)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(graph[name])
    return [name for name in graph if name in needed]


def parallel_stages(params: dict[str, Any], cores: int | None = None) -> int:
    """How many stages may run at once: the cores over the torch threads of one stage."""
    cores = cores or os.cpu_count() or 1
    threads = max(train_config(params, m, d).threads or cores for m in params["methods"] for d in params["datasets"])
    return max(1, cores // threads)


class StageInputError(RuntimeError):
    """A stage rejected its input (a retdm ``error:`` line): retrying cannot help."""


def retry_transient(task, task_run, state) -> bool:
    """Retry a failed stage unless it failed on bad input (see ``StageInputError``)."""
    try:
        state.result()
    except StageInputError:
        return False
    except Exception:  # noqa: BLE001 - any other failure (a killed worker, a full disk) may be transient
        return True
    return True


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient, task_run_name="{stage}")
def run_stage(stage: str, root: str) -> dict[str, Any]:
    """``dvc repro --single-item <stage>``: DVC runs the stage if it is out of date and locks it.

    Returns:
        ``{"stage", "ran", "seconds"}``: whether DVC re-ran it, and the task's wall time.
    """
    logger = get_run_logger()
    start = time.perf_counter()
    cmd = dvc_command("--wait-for-lock", "repro", "--single-item", stage)
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    for line in proc.stdout:  # live, so a long training stage shows progress in the Prefect UI
        line = line.rstrip()
        if line and "\r" not in line:
            logger.info(line)
        tail = (tail + [line])[-30:]
    if proc.wait():
        bad_input = any(line.startswith("error: ") for line in tail)
        raise (StageInputError if bad_input else RuntimeError)(
            f"stage {stage} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    ran = not any("didn't change, skipping" in line for line in tail)
    return {"stage": stage, "ran": ran, "seconds": time.perf_counter() - start}


def publish(root: Path) -> None:
    """The comparison table as a Prefect table artifact, its Markdown and a link to the report page."""
    import pandas as pd

    table = pd.read_parquet(root / RESULTS / "comparison.parquet")
    rows = table[[c for c in TABLE_COLUMNS if c in table.columns]].round(4).to_dict("records")
    create_table_artifact(rows, key="retdm-comparison", description="Test metrics per dataset × method")
    create_markdown_artifact((root / COMPARISON_MD).read_text(), key="retdm-comparison-report",
                             description="reports/comparison.md")
    page = (root / "reports" / "index.html").resolve()
    if page.is_file():
        create_markdown_artifact(f"The report: [{page}](file://{page}) (also reports/index.md)", key="retdm-report",
                                 description="reports/index.html, the page with the tables and figures")


@flow(name="reproduce", task_runner=ThreadPoolTaskRunner(), log_prints=True)
def reproduce(datasets: list[str] | None = None, methods: list[str] | None = None, profile: str | None = None,
              root: str = ".") -> list[dict[str, Any]]:
    """Reproduce the comparison table: the DVC stages for ``datasets`` × ``methods``.

    Args:
        datasets: dataset names from params.yaml (default: all).
        methods: method names from params.yaml (default: all).
        profile: a training profile to switch params.yaml to first (as ``dvc exp run -S
            profile=…`` would), or None for the one it names.
        root: the repository root.

    Returns:
        One ``{"stage", "ran", "seconds"}`` per stage, upstream first; DVC re-ran a stage
        (``ran``) only if it was out of date.
    """
    logger = get_run_logger()
    root_path = Path(root).resolve()
    params_path = root_path / PARAMS_FILE
    params = load_params(params_path)
    if profile is not None and profile != params["profile"]:
        logger.info(f"switching params.yaml profile from {params['profile']!r} to {profile!r}")
        text = params_path.read_text()
        params_path.write_text(text.replace(f"profile: {params['profile']}", f"profile: {profile}", 1))
        params = load_params(params_path)
        if params["profile"] != profile:
            raise ConfigError(f"{params_path}: could not set profile to {profile!r}; edit it by hand")
    graph = stage_graph(root_path)
    stages = select(graph, params, datasets, methods)
    lanes = parallel_stages(params)
    logger.info(f"{len(stages)} stages, at most {lanes} at once")
    futures: dict[str, PrefectFuture] = {}
    for i, name in enumerate(stages):  # upstream first, so every dependency is already submitted
        after = [futures[d] for d in graph[name] if d in futures]
        if i >= lanes:  # round-robin lanes: a stage also waits for the one submitted `lanes` earlier
            after.append(futures[stages[i - lanes]])
        futures[name] = run_stage.submit(name, str(root_path), wait_for=after)
    done = [futures[name].result() for name in stages]
    if "compare" in stages:
        publish(root_path)
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the retdm DVC pipeline as a Prefect flow.")
    parser.add_argument("--datasets", nargs="+", default=None, help="dataset names (default: all in params.yaml)")
    parser.add_argument("--methods", nargs="+", default=None, help="method names (default: all in params.yaml)")
    parser.add_argument("--profile", default=None, help="switch params.yaml to this training profile first")
    args = parser.parse_args(argv)
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    reproduce(args.datasets, args.methods, args.profile)
    print(yaml.safe_dump({"results": [str(RESULTS / "comparison.parquet"), str(COMPARISON_MD)]}))


if __name__ == "__main__":
    main()
