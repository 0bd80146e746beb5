"""A copy of the project for the tests and benchmarks that run the pipeline in a temporary repository.

Only git-tracked files are copied (as they are in the working tree, edits included; a new file
counts once it is ``git add``-ed), never what a run leaves in the checkout: ``dvc.lock`` and the
folders every ``dvc.yaml`` output lives in (``data/``, ``results/``, ``reports/``, ``runs/``), even
if someone committed them. A stray ``dvc.lock`` or ``reports/comparison.md`` from ``make run``
would otherwise make the copy's ``dvc repro`` see a pipeline that already ran.

Used by ``tests/pipelines/test_pipeline.py`` and ``bench/bench_orchestration.py``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
