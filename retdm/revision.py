"""The code revision that produced an output, for provenance (STYLE §10)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from retdm import __version__

CODE_PATHS = ("retdm", "pipelines", "pyproject.toml", "requirements.txt")


@functools.lru_cache(maxsize=1)
def code_revision() -> str:
    """``<git commit>`` of the checkout ``retdm`` runs from, ``+dirty`` when its code (``CODE_PATHS``)
    has uncommitted changes; ``retdm-<version>`` when it is not a git checkout (an installed wheel).
    Data and params are not code: their hashes are recorded separately."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"retdm-{__version__}"
    return sha + ("+dirty" if dirty else "")
