"""Writing files so that a crash never leaves half of one: a file or a folder is built beside its
target under a temporary name and renamed onto it, and the temporaries a killed writer left are
removed before the next write. Everything retdm writes (tables, checkpoints, results, figures)
goes through here. A file found bad (a failed checksum, a lock file DVC cannot read) is set aside
under a new name, never deleted (``set_aside``)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries of ``path`` that a writer killed mid-write left beside it.

    A SIGKILL, an OOM kill or a power loss runs no ``except``: the temporary file of
    :func:`atomic_write`, or the folder a directory is built in before :func:`replace_dir`, stays
    (``.<name>.<8 random characters>.tmp``, as ``tempfile.mkstemp``/``mkdtemp`` name them), and
    under ``results/`` it would sit in a folder a DVC stage hashes. The writer of ``path`` calls
    this before it starts; one writer at a time writes a given path.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return
    stale = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    for entry in path.parent.iterdir():
        if stale.fullmatch(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: once, at import, before any thread writes
    os.umask(mask)
    return mask


_UMASK = _read_umask()

def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    On any error the temporary file is removed and whatever was at ``path`` stays untouched; one
    left by a writer killed mid-write is removed first (:func:`remove_stale_temporaries`). The file
    gets the mode a plain ``open()`` would give it (0666 less the umask), not ``mkstemp``'s 0600,
    which would hide results and figures from the group and from a web server.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished ``tmp`` onto ``out_dir``; an existing ``out_dir`` is removed only after."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
    old.rmdir()
    os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        os.replace(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def set_aside(path: Path, name: Path | None = None, suffix: str = ".bad") -> Path:
    """Rename ``path`` to ``<name><suffix>`` (or ``<suffix>.1``, ``<suffix>.2``, … if taken); a bad
    file is never deleted.

    Args:
        path: the file to set aside.
        name: whose name the copy takes (``<dest>`` for a ``<dest>.part``); default ``path``.
        suffix: what the copy's name ends with (``.bad``: failed its check; ``.damaged``: a file
            a killed writer left half-written).

    Returns:
        Where the file now is.
    """
    base = (name or path).with_name((name or path).name + suffix)
    target, n = base, 0
    while target.exists():
        n += 1
        target = base.with_name(f"{base.name}.{n}")
    os.replace(path, target)
    return target
