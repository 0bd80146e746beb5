"""Prefect flows: the DVC pipeline on a schedule, with retries, parallel stages and artifacts.

``reproduce`` runs exactly the stages of ``dvc.yaml``, each as ``dvc repro --single-item <stage>``
in a Prefect task that starts once the stages it depends on have finished. DVC itself decides
whether a stage is out of date, runs it and records it in ``dvc.lock``, so the lock ends the same
as after ``dvc repro``. DVC releases its repository lock while a stage's command runs, so
independent stages (e.g. ``embed`` of two methods) run in parallel; ``--wait-for-lock`` queues
the short moments when two of them touch ``dvc.lock``. A failed stage is retried (transient
failures), then fails the flow and everything downstream of it.

How many stages run at once follows from the threads each stage computes with (``train.threads``
in params.yaml, a method's or dataset's own ``threads``; 0: all cores): a Prefect global
concurrency limit, ``retdm-cores-<host>``, holds as many slots as this machine has cores, and
each stage holds as many of them as it has threads (``pipelines.schedule.threads_of_stage``)
while DVC runs it; a flow that runs one stage at a time holds its largest stage's slots for its
whole run instead (one lease: taking one costs about 2 s on the local server). Two flows on one
machine share the limit. Running more would only make the
stages fight over the cores, and the threads cannot be lowered behind the user's back: the last
bits of a trained model depend on them, and ``dvc.lock`` must end as after ``dvc repro``. On 16
cores, ``train: {threads: 4}`` runs four stages at once; ``methods: {bce: {threads: 0}}`` beside
it gives the pretrain, which every other training waits for and so runs alone, all 16. The task
runner gets as many workers as the stages can use at once (``pipelines.schedule.parallel_stages``:
counting for each stage only those that can run beside it), so a free worker seldom waits for a
slot. A waiting stage asks again within the server's setting
``PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS`` (Prefect's default: 30 s;
2 s on the temporary server of ``python -m pipelines.flows`` and in infra/docker-compose.yml).

Whether a stage runs comes from DVC's ``dvc status --json``: asked once for every selected stage
when the flow starts, and asked again for a stage only when something could have changed its
answer since (it pulled outputs from a remote, or a stage upstream of it ran). A stage up to date
is not run again; one out of date is run, and recorded as run.

Run: ``python -m pipelines.flows [--datasets synthetic] [--methods bce retdm] [--runner dask
--workers 2] [--remote /path/or/name]`` (``--help`` explains each); a deployment with a nightly
schedule, which first pulls the checkout's branch, is declared in ``infra/prefect.yaml``. The flow
runs what params.yaml says and never edits it: another profile is a commit (or a branch the
deployment pulls), or ``dvc exp run -S profile=…`` by hand.

Runners (``--runner``); either way the stages run in a nested flow, ``reproduce-stages``, on
that runner:

- ``threads`` (default): the stages run from threads of this process, at most ``--workers`` at
  once (default as above; ``--workers 1`` runs one stage at a time, the benchmark's baseline).
- ``dask``: every stage runs on a Dask worker (``prefect-dask``). Without ``--dask-address``,
  on a local cluster of ``--workers`` processes with one thread each, so at most ``--workers``
  stages at once; Dask starts each stage as soon as its upstream stages are done and a worker
  is free. With ``--dask-address``, on the workers of a running ``dask scheduler`` (start them
  with ``dask worker <address> --nthreads 1``), and the cores limit is not used: the workers,
  on machines of their own, are the bound. The worker processes talk to the flow's Prefect
  API: the temporary local server listens on 127.0.0.1 only, so workers on other machines need
  a Prefect server they can reach (``PREFECT_API_URL``). Dask starts local workers with
  ``spawn``: a script that calls ``reproduce(runner="dask")`` must do so under ``if __name__ ==
  "__main__":``.

What is distributed, honestly: a Dask worker runs ``dvc repro --single-item <stage>`` *in this
checkout*. DVC keeps the lineage in the checkout's one ``dvc.lock`` (written under DVC's
repository lock, which ``--wait-for-lock`` queues for), and a stage reads its inputs from the
checkout's workspace. So workers on several machines need the checkout on shared storage (NFS
and the like) at the same path, with the same environment; the stages' inputs and outputs then
travel through that shared filesystem, not through Dask. ``dvc.lock`` ends as after ``dvc
repro``: the stage commands and their thread settings are the same (what a Dask nanny sets in
its workers, ``NANNY_VARIABLES``: BLAS/OpenMP threads and a malloc trim threshold that slows
torch 1.6x, is put back to this process's values for the stage), only the order in which
independent stages finish differs.

A DVC remote (``--remote``: a configured remote's name, or a path/URL that the flow adds to
``.dvc/config.local`` as remote ``retdm-reproduce``) makes the artifacts durable beyond the
checkout: every stage task pushes its cached outputs to it after running (``dvc push -r
<remote> <stage>``, also when DVC found the stage up to date, so a remote added later fills
up). Before running, a stage that already has a ``dvc.lock`` entry but whose cached outputs are
missing from the workspace pulls them (``dvc pull --allow-missing``); ``dvc repro`` then finds
it up to date instead of recomputing it (a fresh clone with a committed ``dvc.lock`` restores
from the remote; outputs the remote lacks are simply recomputed). The outputs of upstream
stages are not pulled: in the shared checkout each upstream task has already left them in the
workspace (run, checked out or pulled) before a downstream task starts. The flow ends by
checking that ``dvc status`` of the stages is clean and that the remote holds every cached
output (``dvc status --cloud -r <remote>``); either failing fails the flow.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner

from pipelines.params import COMPARISON_MD, PARAMS_FILE, RESULTS, load_params
from pipelines.runners import (
    FLOW_REMOTE,
    NANNY_VARIABLES,
    RUNNERS,
    check_in_sync,
    check_runner,
    dask_priority,
    dask_task_runner,
    dvc_command,
    dvc_remote,
    locked_outputs,
    stage_environment,
    where_running,
)
from pipelines.schedule import parallel_stages, run_order, select, stage_graph, threads_of_stage
from retdm.errors import ConfigError

TABLE_COLUMNS = ("dataset", "method", "threshold", "CF1", "OF1", "average_precision", "mAP", "hamming_loss",
                 "ranking_loss", "one_error", "coverage")


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


def run_dvc(root: str, env: dict[str, str] | None, *args: str, log: bool = True) -> tuple[int, list[str]]:
    """Run ``dvc --wait-for-lock <args>`` in ``root``, logging its output live (unless not ``log``).

    Returns:
        The exit status and the last 30 lines of output.
    """
    logger = get_run_logger()
    proc = subprocess.Popen(dvc_command("--wait-for-lock", *args), cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    for line in proc.stdout:  # live, so a long training stage shows progress in the Prefect UI
        line = line.rstrip()
        if log and line and "\r" not in line:
            logger.info(line)
        tail = (tail + [line])[-30:]
    return proc.wait(), tail


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient, task_run_name="{stage}")
def run_stage(stage: str, root: str, stale: bool = True, upstream: list[dict[str, Any]] | None = None,
              remote: str | None = None, restorable: list[str] | None = None,
              flow_env: dict[str, str | None] | None = None, threads: int = 1,
              cores_limit: str | None = None) -> dict[str, Any]:
    """``dvc repro --single-item <stage>`` when ``dvc status`` finds it out of date; DVC runs it
    and locks it.

    Args:
        stage: the DVC stage name.
        root: the repository root (the checkout every worker shares).
        stale: whether ``dvc status`` found the stage out of date when the flow started. Asked
            again only after a pull, or when a stage in ``upstream`` ran.
        upstream: the records of the stages it depends on that ran before it in this flow.
        remote: a DVC remote to pull the stage's outputs from when they are missing, and to push
            them to afterwards; None for neither.
        restorable: the stage's cached outputs if ``dvc.lock`` had an entry for it when the flow
            started (what a pull can restore), else empty.
        flow_env: the flow process's values of ``NANNY_VARIABLES`` (thread counts, malloc trim)
            for the stage's command, or None to inherit this process's.
        threads: the slots of ``cores_limit`` the stage holds while it runs (its CPU threads).
        cores_limit: the name of the global concurrency limit of this machine's cores, or None
            for no limit.

    Returns:
        ``{"stage", "ran", "seconds", "started", "held", "worker", "pulled"}``: whether DVC ran it
        (it was out of date), the task's wall time and start (epoch seconds), when it held its
        slots and ran (``[start, end]``, epoch seconds; None when it did not run), where it ran,
        and whether it pulled first.
    """
    start, started = time.perf_counter(), time.time()
    env = stage_environment(flow_env)
    pulled = bool(remote and restorable and not all((Path(root) / p).exists() for p in restorable))
    if pulled:  # a pull that finds nothing leaves the outputs missing, and repro recomputes them
        dvc_or_fail(root, env, f"dvc pull of stage {stage} from remote {remote!r}",
                    "pull", "--allow-missing", "-r", remote, stage)
    if pulled or not stale and any(record["ran"] for record in upstream or []):
        stale = stage in out_of_date(root, env, [stage])
    ran, held = stale, None
    if ran:
        with concurrency(cores_limit, occupy=threads, strict=True) if cores_limit else contextlib.nullcontext():
            held = [time.time()]
            code, tail = run_dvc(root, env, "repro", "--single-item", stage)
            held.append(time.time())
        if code:
            bad_input = any(line.startswith("error: ") for line in tail)
            raise (StageInputError if bad_input else RuntimeError)(
                f"stage {stage} failed (exit {code}):\n" + "\n".join(tail))
    if remote:
        dvc_or_fail(root, env, f"dvc push of stage {stage} to remote {remote!r}", "push", "-r", remote, stage)
    return {"stage": stage, "ran": ran, "seconds": time.perf_counter() - start, "started": started,
            "held": held, "worker": where_running(), "pulled": pulled}


def dvc_or_fail(root: str, env: dict[str, str] | None, what: str, *args: str, log: bool = True) -> list[str]:
    """``run_dvc``; its last lines, or RuntimeError naming ``what`` failed with them."""
    code, tail = run_dvc(root, env, *args, log=log)
    if code:
        raise RuntimeError(f"{what} failed (exit {code}):\n" + "\n".join(tail))
    return tail


def out_of_date(root: str, env: dict[str, str] | None, stages: list[str]) -> set[str]:
    """Those of ``stages`` that ``dvc status --json`` reports changed (deps, params, outs or
    command), asked in one call."""
    tail = dvc_or_fail(root, env, f"dvc status of {len(stages)} stage(s)", "status", "--json", *stages,
                       log=False)
    report = next((line for line in reversed(tail) if line.startswith("{")), None)
    if report is None:
        raise RuntimeError("dvc status --json printed no JSON:\n" + "\n".join(tail))
    return set(json.loads(report))


def limit_name() -> str:
    """The name of this machine's cores limit: ``retdm-cores-<host>``."""
    return f"retdm-cores-{socket.gethostname()}"


def machine_cores_limit(cores: int) -> str:
    """The global concurrency limit of this machine's ``cores``, created (or resized) on the
    flow's Prefect server; its name (``limit_name``)."""
    name = limit_name()
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, cores)
    return name


def submit_stages(stages: list[str], graph: dict[str, list[str]], root: Path, stale: list[str], remote: str | None,
                  restorable: dict[str, list[str]], threads: dict[str, int], cores_limit: str | None,
                  on_dask: bool = False) -> list[dict[str, Any]]:
    """Submit one ``run_stage`` per stage (in ``run_order``) to the current flow's task runner,
    each told whether it is in ``stale`` (out of date when the flow started), waiting for its
    upstream stages' records and holding ``threads[stage]`` slots of ``cores_limit`` while it runs;
    ``on_dask``, each with a Dask priority by that order (which stage a free worker takes); wait
    for all. Returns their results in that order (upstream first)."""
    flow_env = {key: os.environ.get(key) for key in NANNY_VARIABLES}
    futures: dict[str, PrefectFuture] = {}
    for i, name in enumerate(stages):  # upstream first, so every dependency is already submitted
        with dask_priority(len(stages) - i) if on_dask else contextlib.nullcontext():
            upstream = [futures[d] for d in graph[name] if d in futures]  # resolved to their records
            futures[name] = run_stage.submit(name, str(root), name in stale, upstream, remote, restorable.get(name, []),
                                             flow_env, threads[name], cores_limit)
    return [futures[name].result() for name in stages]


@flow(name="reproduce-stages", log_prints=True)
def reproduce_stages(stages: list[str], graph: dict[str, list[str]], root: str, stale: list[str], remote: str | None,
                     restorable: dict[str, list[str]], threads: dict[str, int], cores_limit: str | None,
                     on_dask: bool) -> list[dict[str, Any]]:
    """The stages on the task runner this flow is given (``with_options``): as their upstream
    stages finish, a worker is free and their slots of the cores limit are."""
    # Task runs on Dask workers report to this flow's Prefect API; without this, a worker process
    # with no PREFECT_API_URL would start a temporary server of its own.
    with temporary_settings(updates={PREFECT_API_URL: str(FlowRunContext.get().client.api_url)}):
        return submit_stages(stages, graph, Path(root), stale, remote, restorable, threads, cores_limit, on_dask)


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
        create_link_artifact(page.as_uri(), link_text="reports/index.html", key="retdm-report",
                             description="The report: the tables and figures (also reports/index.md)")


@flow(name="reproduce", log_prints=True)
def reproduce(datasets: list[str] | None = None, methods: list[str] | None = None, root: str = ".",
              runner: str = "threads", workers: int | None = None, dask_address: str | None = None,
              remote: str | None = None) -> list[dict[str, Any]]:
    """Reproduce the comparison table: the DVC stages for ``datasets`` × ``methods``, with the
    params.yaml of the checkout (never edited).

    Args:
        datasets: dataset names from params.yaml (default: all).
        methods: method names from params.yaml (default: all).
        root: the repository root.
        runner: ``threads`` (stages from threads of this process) or ``dask`` (on Dask workers).
        workers: how many stages may run at once (``dask``: the local cluster's worker
            processes); default: as many as the stages' threads fit the cores
            (``parallel_stages``); 1: one at a time. The cores limit holds either way.
        dask_address: with ``dask``, a running scheduler to use instead of a local cluster.
        remote: a DVC remote (a configured name, or a path/URL) to pull missing outputs from
            and push every stage's outputs to; the flow then checks it holds them all.

    Returns:
        One ``run_stage`` record (``{"stage", "ran", "seconds", "started", "held", "worker",
        "pulled"}``) per stage, upstream first; DVC ran a stage (``ran``) only if it was out of
        date.

    Raises:
        ConfigError: a bad runner setting, dataset, method or remote (before anything runs).
    """
    check_runner(runner, workers, dask_address)
    logger = get_run_logger()
    root_path = Path(root).resolve()
    params = load_params(root_path / PARAMS_FILE)
    graph, commands = stage_graph(root_path)
    stages = run_order(select(graph, params, datasets, methods), graph, commands)
    remote_name = dvc_remote(root_path, remote) if remote else None
    restorable = locked_outputs(root_path) if remote else {}
    cores = os.cpu_count() or 1
    threads = {s: min(threads_of_stage(params, commands[s], cores), cores) for s in stages}
    cores_limit = None if dask_address else machine_cores_limit(cores)
    size = None if dask_address else workers or parallel_stages(params, {s: graph[s] for s in stages}, commands, cores)
    where = f"the Dask scheduler at {dask_address}" if dask_address else \
        f"{runner}, at most {size} at once, within the {cores} slots of {cores_limit}"
    logger.info(f"{len(stages)} stages on {where}" + (f", DVC remote {remote_name!r}" if remote_name else ""))
    task_runner = dask_task_runner(size, dask_address) if runner == "dask" else ThreadPoolTaskRunner(size)
    stale = sorted(out_of_date(str(root_path), None, stages))
    # One stage at a time: the flow holds its largest stage's slots for its whole run (one lease, not one
    # per stage: an acquisition costs ~2 s on the local server), and only if a stage may run.
    whole = cores_limit if size == 1 and (stale or remote_name) else None
    with concurrency(whole, occupy=max(threads.values()), strict=True) if whole else contextlib.nullcontext():
        done = reproduce_stages.with_options(task_runner=task_runner)(
            stages, graph, str(root_path), stale, remote_name, restorable, threads,
            None if size == 1 else cores_limit, runner == "dask")
    if remote_name:
        check_in_sync(root_path, stages, remote_name)
        logger.info(f"dvc status is clean and remote {remote_name!r} holds every cached output")
    if "compare" in stages:
        publish(root_path)
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Run the retdm DVC pipeline as a Prefect flow: one task per DVC stage, the same dvc.lock "
                    "as `dvc repro`.",
        epilog="Examples: `--workers 1` (one stage at a time); `--runner dask --workers 2 --remote /mnt/store/retdm` "
               "(a local Dask cluster of 2 processes, outputs pushed to a local-path remote); `--runner dask "
               "--dask-address tcp://10.0.0.5:8786 --remote s3://bucket/retdm` (the workers of a running scheduler, "
               "which must see this checkout at the same path on shared storage).")
    parser.add_argument("--datasets", nargs="+", default=None, help="dataset names (default: all in params.yaml)")
    parser.add_argument("--methods", nargs="+", default=None, help="method names (default: all in params.yaml)")
    parser.add_argument("--runner", choices=RUNNERS, default="threads",
                        help="threads: stages run from threads of this process; dask: each stage on a Dask worker "
                             "process (prefect-dask), of a local cluster or of --dask-address (default: threads)")
    parser.add_argument("--workers", type=int, default=None,
                        help="how many stages run at once; with --runner dask, the local cluster's worker processes "
                             "(one thread each). Default: as many as the stages' threads fit the cores; 1: one at a "
                             "time. Each stage's torch still uses train.threads threads (0: all cores), or its "
                             "method's own, and holds as many of the machine's cores (a Prefect global concurrency "
                             "limit) while it runs: for N at once on C cores set train.threads to C / N")
    parser.add_argument("--dask-address", default=None,
                        help="with --runner dask: the address of a running `dask scheduler` (e.g. tcp://host:8786) "
                             "instead of a local cluster; its workers (`dask worker ADDRESS --nthreads 1`) must see "
                             "this checkout at the same path and reach the Prefect API (PREFECT_API_URL)")
    parser.add_argument("--remote", default=None,
                        help="a DVC remote: the name of one configured in .dvc/config, or a path/URL (added to "
                             f".dvc/config.local as remote {FLOW_REMOTE!r}). Each stage pulls its outputs from it "
                             "when dvc.lock has them but the workspace lacks them, and pushes its outputs after "
                             "running; the flow ends by checking the remote holds every cached output")
    args = parser.parse_args(argv)
    try:
        check_runner(args.runner, args.workers, args.dask_address)
    except ConfigError as err:
        parser.error(str(err))
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    # The temporary server this process starts (no PREFECT_API_URL): a stage waiting for cores asks
    # again within 2 s of a slot freeing, not Prefect's 30 s default.
    os.environ.setdefault("PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS", "2")
    reproduce(args.datasets, args.methods, runner=args.runner, workers=args.workers,
              dask_address=args.dask_address, remote=args.remote)
    print(yaml.safe_dump({"results": [str(RESULTS / "comparison.parquet"), str(COMPARISON_MD)]}))


if __name__ == "__main__":
    main()
