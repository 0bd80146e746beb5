"""What the library says while it works: ``logging`` under the ``retdm`` logger, and progress bars
that draw only on a terminal.

Library modules log with ``logging.getLogger(__name__)`` and never print; the edges (the ``retdm``
command, each pipeline stage) call :func:`configure` once. Into a file or a pipe (a DVC stage's log,
a Prefect flow run) a long step writes one line per epoch and no bar redraws.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


class _BarSafeHandler(logging.StreamHandler):
    """Writes each message above any progress bar on screen (through ``tqdm.write``), not through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging's contract: a failing handler reports, never raises
            self.handleError(record)


def configure(verbosity: int = 0) -> None:
    """Show the library's messages on stderr: INFO by default, DEBUG at ``verbosity`` ≥ 1 (``-v``),
    WARNING at -1 (``-q``) and ERROR below. Calling it again replaces the earlier setting."""
    levels = {-1: logging.WARNING, 0: logging.INFO}
    logger = logging.getLogger("retdm")
    handler = _BarSafeHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbosity > 0 else levels.get(verbosity, logging.ERROR))
    logger.propagate = False


def bar(iterable: Iterable | None = None, *, show: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm progress bar, drawn only when ``show`` and stderr is a terminal (never into a log file),
    and not under ``-q`` (the ``retdm`` logger set above INFO); it clears itself when done."""
    quiet = logging.getLogger("retdm").level > logging.INFO
    return tqdm(iterable, disable=True if not show or quiet else None, leave=False, **kwargs)
