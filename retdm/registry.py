"""Name → object registries for backbones, methods and datasets.

One registry per kind. A duplicate name raises, and an unknown name raises a
``ConfigError`` (also a ``KeyError``) that lists every valid name, so a typo in
params.yaml or on the command line says what would have worked, as one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from retdm.errors import ConfigError

T = TypeVar("T")


class UnknownNameError(ConfigError, KeyError):
    """An unregistered name was asked for; the message lists the valid ones.

    A ``ConfigError``, so every edge that turns library errors into one line (the CLI, the DVC
    stage entry points) handles a mistyped name without a traceback."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the sentence readable
        return str(self.args[0])


class Registry(Generic[T]):
    """A named collection of builders.

    Args:
        kind: what the registry holds ("backbone", "method", "dataset"); used in messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``; a duplicate name raises ``ValueError``."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
            self._help[name] = help or (doc[0] if doc else "")
            return obj

        return add

    def get(self, name: str) -> T:
        """The object registered as ``name``; raises ``UnknownNameError`` listing valid names."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid {self.kind}s are: {', '.join(sorted(self._items))}"
            ) from None

    def help(self, name: str) -> str:
        """One-line description of ``name``."""
        self.get(name)
        return self._help[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
