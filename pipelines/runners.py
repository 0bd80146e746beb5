"""What the ``reproduce`` flow needs to run its stages on Dask workers and keep a DVC remote in
sync: the runner options, the Dask task runner, the remote, the stages' environment and the final
status check. How they fit together: the docstring of ``pipelines.flows``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from prefect.task_runners import TaskRunner

from retdm.errors import ConfigError

RUNNERS = ("threads", "dask")
FLOW_REMOTE = "retdm-reproduce"  # the name under which a remote given as a path/URL goes into .dvc/config.local


# What a Dask nanny sets in its workers (distributed.nanny.pre-spawn-environ): the thread counts
# of OpenMP/MKL/OpenBLAS to 1, and glibc's malloc trim threshold to 64 KiB, which makes a torch
# training run 1.6x as long (measured here: 54 s against 34 s). A stage gets the flow process's
# values back, so that it runs as under `dvc repro`, with the same threads, hence the same bits.
NANNY_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def dvc_command(*args: str) -> list[str]:
    """``dvc`` from this environment (the venv's, when not on PATH) with ``args``."""
    exe = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    return [exe, *args]


def locked_outputs(root: Path) -> dict[str, list[str]]:
    """Every stage that has a ``dvc.lock`` entry → its cached outputs (what ``dvc pull <stage>``
    can restore); stages without an entry are left out."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {s.name: [str(o.def_path) for o in s.outs if o.use_cache] for s in repo.index.stages
                if hasattr(s, "cmd") and any(o.use_cache for o in s.outs)
                and all(o.hash_info for o in s.outs if o.use_cache)}


def check_runner(runner: str, workers: int | None, dask_address: str | None) -> None:
    """Reject a runner setting that cannot work, before anything runs.

    Raises:
        ConfigError: an unknown ``runner``, ``workers`` below 1, or options that do not go
            together (``dask_address`` without ``runner="dask"``, or with ``workers``).
    """
    if runner not in RUNNERS:
        raise ConfigError(f"runner {runner!r} is not one of {', '.join(RUNNERS)}: 'threads' runs the stages from "
                          f"threads of the flow's process, 'dask' on the workers of a Dask cluster")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be a whole number >= 1, got {workers!r}: how many stages run at once "
                          f"(with runner 'dask', the local cluster's worker processes); 1 runs them one at a time")
    if dask_address and runner != "dask":
        raise ConfigError(f"dask_address {dask_address!r} needs runner 'dask' (got {runner!r})")
    if dask_address and workers is not None:
        raise ConfigError(f"workers ({workers}) sizes a local Dask cluster; with dask_address the scheduler's own "
                          f"workers run the stages (start each with `dask worker {dask_address} --nthreads 1`): "
                          f"leave workers out")


def dask_task_runner(workers: int | None, address: str | None) -> TaskRunner:
    """A ``prefect_dask.DaskTaskRunner``: on the scheduler at ``address``, else on a local cluster
    of ``workers`` processes with one thread each (so at most ``workers`` stages at once)."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as err:
        raise ConfigError("runner 'dask' needs prefect-dask: `pip install -r requirements.txt`") from err
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": ":0", "silence_logs": logging.WARNING})


def dask_priority(priority: int) -> contextlib.AbstractContextManager:
    """A context in which Dask tasks are submitted with ``priority``: a free worker takes the
    ready task of highest priority. Without it, tasks submitted within 100 ms of each other (a
    flow's stages all are) run in no set order, and a long training may start last."""
    import dask

    return dask.annotate(priority=priority)


def dvc_remote(root: Path, remote: str) -> str:
    """The name of the DVC remote ``remote`` stands for: a remote configured for ``root``, or a
    path/URL, which is added (or updated) as remote ``FLOW_REMOTE`` in ``.dvc/config.local``
    (a relative path is taken from the current directory, as on the command line).

    Raises:
        ConfigError: ``remote`` is neither a configured remote nor a path/URL.
    """
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        configured = list(repo.config["remote"])
    if remote in configured:
        return remote
    if "://" not in remote and "/" not in remote and os.sep not in remote and not remote.startswith((".", "~")):
        raise ConfigError(f"remote {remote!r} is neither a DVC remote of {root} (configured: "
                          f"{', '.join(configured) or 'none'}) nor a path or URL; give one of those, a path such as "
                          f"/mnt/store/retdm, or a URL such as s3://bucket/retdm")
    url = remote if "://" in remote else str(Path(remote).expanduser().resolve())
    proc = subprocess.run(dvc_command("remote", "add", "--local", "--force", FLOW_REMOTE, url), check=False, cwd=root,
                          capture_output=True, text=True)
    if proc.returncode:
        raise ConfigError(f"cannot add {url!r} as DVC remote {FLOW_REMOTE!r} of {root}: {proc.stderr.strip()}")
    return FLOW_REMOTE


def stage_environment(flow_env: dict[str, str | None] | None) -> dict[str, str] | None:
    """This process's environment with the flow process's values of ``NANNY_VARIABLES`` put back
    (``None``: unset), or ``None`` (inherit as is) when ``flow_env`` is ``None``."""
    if flow_env is None:
        return None
    env = dict(os.environ)
    for key, value in flow_env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def where_running() -> str:
    """The Dask worker running this task (its address), else ``host:pid``."""
    if "distributed" in sys.modules:  # a Dask worker has imported it; this process has not otherwise
        from distributed import get_worker

        try:
            return get_worker().address
        except ValueError:  # not inside a Dask worker
            pass
    return f"{socket.gethostname()}:{os.getpid()}"


def check_in_sync(root: Path, stages: list[str], remote: str) -> None:
    """``dvc status`` of ``stages`` is clean and ``remote`` holds all their cached outputs.

    Raises:
        RuntimeError: what is out of date, or missing from the remote.
    """
    for where, extra in (("the workspace", ()), (f"remote {remote!r}", ("--cloud", "-r", remote))):
        proc = subprocess.run(dvc_command("--wait-for-lock", "status", "--json", *extra, *stages), check=False,
                              cwd=root, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"dvc status{' --cloud' if extra else ''} failed in {root}: {proc.stderr.strip()}")
        changed = json.loads(proc.stdout or "{}")
        if changed:
            raise RuntimeError(f"after the flow, {where} is not in sync with dvc.lock of {root}: "
                               f"{json.dumps(changed)[:2000]}")
