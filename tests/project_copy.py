"""A copy of the project for the tests and benchmarks that run the pipeline in a temporary repository.

Only git-tracked files are copied (as they are in the working tree, edits included; a new file
counts once it is ``git add``-ed), never what a run leaves in the checkout: ``dvc.lock`` and the
folders every ``dvc.yaml`` output lives in (``data/``, ``results/``, ``reports/``, ``runs/``), even
if someone committed them. A stray ``dvc.lock`` or ``reports/comparison.md`` from ``make run``
would otherwise make the copy's ``dvc repro`` see a pipeline that already ran.

Also the tiny pipeline those tests run (:func:`tiny_project`, on ``tests/tiny_params.py``: 160
images of 32 px, one epoch per stage, one method of each kind, two seeds) and the helpers that run commands in such a copy.

Used by ``tests/pipelines/test_pipeline.py``, ``tests/crash_consistency.py`` and
``bench/bench_orchestration.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.tiny_params import TINY_PARAMS, set_params

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # dvc, retdm and python of this environment, put first on the copies' PATH
# What `dvc repro` writes into the checkout: its lock file, and the top folder of every stage output.
RUN_OUTPUTS = ("dvc.lock", "data", "results", "reports", "runs")


def tracked_files(root: Path = ROOT) -> list[str]:
    """The git-tracked files under ``root`` that exist in its working tree (relative paths, sorted),
    less the pipeline's outputs (``RUN_OUTPUTS``)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout.decode()
    return sorted(rel for rel in listed.split("\0")
                  if rel and rel.split("/")[0] not in RUN_OUTPUTS and (root / rel).is_file())


def copy_project(dest: Path, root: Path = ROOT) -> Path:
    """Copy :func:`tracked_files` of ``root`` to ``dest`` (created); returns ``dest``."""
    for rel in tracked_files(root):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / rel)
    return dest


def isolated_environ(state: Path | str) -> dict[str, str]:
    """Environment variables that keep a run's tools off the network and out of shared state: no
    analytics, DVC's site cache and Prefect's home under ``state`` (DESIGN §4)."""
    return {"DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_SITE_CACHE_DIR": f"{state}/dvc-site",
            "PREFECT_HOME": f"{state}/prefect"}


def run_env() -> dict[str, str]:
    """``os.environ`` with this environment's ``bin`` first on ``PATH`` (the copy's ``dvc`` and stages)."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def sh(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``args`` in ``cwd`` (:func:`run_env`), output captured; with ``check``, fail with its output's tail."""
    proc = subprocess.run(list(args), cwd=cwd, env=run_env(), capture_output=True, text=True)
    if check and proc.returncode:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def tiny_project(dest: Path, root: Path = ROOT) -> Path:
    """:func:`copy_project` at ``dest`` with the tiny params (``TINY``, ``METHODS``, ``SEEDS``, a
    two-point sweep), committed in a fresh git repository; returns ``dest``."""
    copy_project(dest, root)
    set_params(dest, **TINY_PARAMS)
    sh(dest, "git", "init", "-q")
    sh(dest, "git", "add", "-A")
    sh(dest, "git", "-c", "user.email=ci@retdm", "-c", "user.name=ci", "commit", "-qm", "tiny")
    return dest


def clone(origin: Path, dest: Path) -> Path:
    """A git clone of ``origin`` at ``dest``: clones share the commit, hence the code revision every output records."""
    sh(dest.parent, "git", "clone", "-q", str(origin), str(dest))
    return dest
