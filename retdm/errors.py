"""Errors the library raises for bad input.

Each message says what was expected, what came instead, where (file, row, key) and how to fix
it. The CLI turns them into one line on stderr and a non-zero exit; the library never exits.
"""


class RetdmError(Exception):
    """Base class of every user-facing error of the library."""


class DataError(RetdmError, ValueError):
    """A dataset, label table, image or CSV is malformed or missing."""


class ConfigError(RetdmError, ValueError):
    """A config key is unknown, mistyped or out of range."""


class TrainingError(RetdmError, RuntimeError):
    """Training cannot go on (a NaN loss, a checkpoint that does not match the run)."""
