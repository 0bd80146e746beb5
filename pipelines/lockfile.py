"""``dvc.lock`` before ``dvc repro``: one that a killed run left cut short is set aside, so that the run goes on.

DVC rewrites ``dvc.lock`` in place (truncate, then write) after every stage. A run killed inside
that rewrite (SIGKILL, an OOM kill, a power loss) leaves it empty or cut mid-entry, and every later
``dvc repro`` then stops with "'./dvc.lock' validation failed" until someone removes it by hand.
Setting it aside loses no work: DVC's run-cache restores each stage that had finished, from the
cache and without running it, and the stages whose outputs are not cached run again
(``make crash``: the result equals an uninterrupted run's).

``make run`` runs this first; so does the crash test before every ``dvc repro``.
Usage: ``python -m pipelines.lockfile [ROOT]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

LOCK = "dvc.lock"


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


def set_aside_damaged_lock(root: str | Path = ".") -> Path | None:
    """Move ``ROOT/dvc.lock`` to ``dvc.lock.damaged`` (``.damaged-2``, … when taken) if DVC cannot read it.

    An empty file counts as damaged: DVC writes none. Nothing is deleted.

    Returns:
        Where the damaged file went, or ``None`` when there is no ``dvc.lock`` or it is sound.
    """
    path = Path(root) / LOCK
    if not path.is_file():
        return None
    problem = "empty" if path.stat().st_size == 0 else lock_problem(path)
    if problem is None:
        return None
    target, n = path.with_name(f"{LOCK}.damaged"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{LOCK}.damaged-{n}")
    path.rename(target)
    print(f"{path}: DVC cannot read it ({problem[:200]}), as a run killed while DVC rewrote it leaves it; moved to "
          f"{target.name}. DVC's run-cache restores every stage that had finished", file=sys.stderr)
    return target


if __name__ == "__main__":
    set_aside_damaged_lock(sys.argv[1] if len(sys.argv) > 1 else ".")
