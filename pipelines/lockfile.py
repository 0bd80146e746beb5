"""DVC's own state files before ``dvc repro``: one that a killed run left cut short is set aside, so
that the run goes on.

DVC rewrites two files in place (truncate, then write), and a run killed inside either rewrite
(SIGKILL, an OOM kill, a power loss) leaves it empty or cut short:

- ``dvc.lock``, after every stage; every later ``dvc repro`` then stops with "'./dvc.lock'
  validation failed". Setting it aside loses no work: DVC's run-cache restores each stage that had
  finished, from the cache and without running it, and the stages whose outputs are not cached run
  again (``make crash``: the result equals an uninterrupted run's).
- ``.dvc/tmp/rwlock``, DVC's list of the runs holding each output (it takes and drops entries
  around every stage); every later run then stops with "Unable to read RWLock-file". It lists only
  runs in progress, and DVC drops the entries of dead processes itself, so a new empty list is what
  DVC starts from. It is checked under DVC's own guard of that file (``rwlock.lock``), so a DVC run
  going on beside this one is never caught mid-write.

Nothing is deleted: a damaged file moves to ``<name>.damaged`` (``.damaged.1``, … when taken;
``retdm.files.set_aside``).
``make run`` runs this first; so does the crash test before every ``dvc repro``.
Usage: ``python -m pipelines.lockfile [ROOT]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from retdm.files import set_aside

LOCK = "dvc.lock"
RWLOCK = Path(".dvc") / "tmp" / "rwlock"


def lock_problem(path: Path) -> str | None:
    """Why ``path`` is not a ``dvc.lock`` that DVC can read (its own parser and schema), or ``None``."""
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA
    from dvc.utils.strictyaml import YAMLSyntaxError, YAMLValidationError, load

    try:
        load(str(path), COMPILED_LOCKFILE_SCHEMA)
    except (YAMLSyntaxError, YAMLValidationError, UnicodeDecodeError) as err:
        return " ".join(str(err).split()) or type(err).__name__
    except Exception as err:  # noqa: BLE001  (dvc's EncodingError and the like: unreadable all the same)
        return f"{type(err).__name__}: {err}"
    return None


def rwlock_problem(path: Path) -> str | None:
    """Why ``path`` is not an rwlock file that DVC can read (JSON, as DVC reads it), or ``None``."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return str(err)
    return None


def _set_aside(path: Path, problem: str, consequence: str) -> Path:
    target = set_aside(path, suffix=".damaged")
    print(f"{path}: DVC cannot read it ({problem[:200]}), as a run killed while DVC rewrote it leaves it; moved to "
          f"{target.name}. {consequence}", file=sys.stderr)
    return target


def set_aside_damaged_lock(root: str | Path = ".") -> Path | None:
    """Move ``ROOT/dvc.lock`` to ``dvc.lock.damaged`` if DVC cannot read it (an empty file counts:
    DVC writes none).

    Returns:
        Where the damaged file went, or ``None`` when there is no ``dvc.lock`` or it is sound.
    """
    path = Path(root) / LOCK
    if not path.is_file():
        return None
    problem = "empty" if path.stat().st_size == 0 else lock_problem(path)
    if problem is None:
        return None
    return _set_aside(path, problem, "DVC's run-cache restores every stage that had finished")


def set_aside_damaged_rwlock(root: str | Path = ".") -> Path | None:
    """Move ``ROOT/.dvc/tmp/rwlock`` to ``rwlock.damaged`` if DVC cannot read it, holding DVC's guard.

    Returns:
        Where the damaged file went, or ``None`` when there is none or it is sound.
    """
    path = Path(root) / RWLOCK
    if not path.is_file():
        return None
    from dvc.lock import make_lock

    with make_lock(str(path.with_name("rwlock.lock")), tmp_dir=str(path.parent), wait=True):
        problem = rwlock_problem(path)
        if problem is None:
            return None
        return _set_aside(path, problem, "It lists only runs in progress; DVC starts a new one")


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else "."
    set_aside_damaged_lock(folder)
    set_aside_damaged_rwlock(folder)
