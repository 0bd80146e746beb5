"""One training at a time per stage directory: an advisory lock that names its holder.

Two trainings writing the same stage directory interleave their checkpoints and logs, and both
"succeed". :func:`hold` takes an exclusive ``flock`` on ``<dir>/.retdm.lock`` and writes this
process's pid into it, so a second process is refused with the holder's pid. The kernel drops a
flock when its process dies, so a lock file left behind by a killed run (its pid no longer
alive) is simply taken over: nothing to clean by hand. The file is removed on release (and
``.dvcignore`` lists it), so the directory's contents, and their DVC hashes, are what training
wrote, byte for byte.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from retdm.errors import TrainingError

LOCK_FILE = ".retdm.lock"  # excluded from DVC hashes by .dvcignore


@contextlib.contextmanager
def hold(directories: Sequence[str | os.PathLike]) -> Iterator[None]:
    """Hold the lock of every directory in ``directories`` for the duration of the block.

    Directories are created as needed; those created here are removed again on exit when they
    are still empty (a run that failed before writing leaves nothing behind).

    Raises:
        TrainingError: another live process holds one of the directories (naming it, its pid
            and the fix); the locks already taken are released.
    """
    with contextlib.ExitStack() as stack:
        for directory in dict.fromkeys(Path(d) for d in directories):  # each once, in order
            stack.enter_context(_hold_one(directory))
        yield


@contextlib.contextmanager
def _hold_one(directory: Path) -> Iterator[None]:
    created = _make_dirs(directory)
    path = directory / LOCK_FILE
    try:
        fd = _acquire(path)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # while still held: a waiting process never sees our pid again
            os.close(fd)  # releases the flock
    finally:
        for d in created:  # deepest first
            with contextlib.suppress(OSError):  # not empty: the run wrote into it, keep it
                d.rmdir()


def _acquire(path: Path) -> int:
    """An open descriptor of ``path`` with an exclusive flock on it and our pid inside."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise TrainingError(
                f"{path.parent}: in use by another training (pid {holder}, lock file {path}); wait for it to "
                f"finish or stop it, or train into another output directory") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file its previous holder unlinked between our open and our flock
            break
        os.close(fd)
    os.ftruncate(fd, 0)  # a stale pid from a killed run is overwritten
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _make_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; the ones created, deepest first."""
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    directory.mkdir(parents=True, exist_ok=True)
    return missing
