"""The dataset registry: name → importer that writes a label table and returns it."""

from __future__ import annotations

from collections.abc import Callable

from retdm.data.table import LabelTable
from retdm.registry import Registry

DATASETS: Registry[Callable[..., LabelTable]] = Registry("dataset")
