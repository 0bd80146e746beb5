"""Where and on how many CPU threads torch computes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def pick_device(name: str) -> torch.device:
    """``auto`` → CUDA when available (the current GPU: under torchrun, the process's own), else
    CPU; otherwise the named device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run with ``threads`` CPU threads in torch (0: leave the current setting).

    The last bits of a result depend on the thread count, so a fixed count makes them
    reproducible; small tensors (the shallow estimators, the neighbour search) also run several
    times faster on one thread than on a team of two that keeps waiting for each other.
    """
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
