"""The dataset registry: name → importer that writes a label table and returns it."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from retdm.data.table import LabelTable
from retdm.registry import Registry

DATASETS: Registry[Callable[..., LabelTable]] = Registry("dataset")

# The modules whose importers register themselves here, imported on demand (some import torch).
IMPORTER_MODULES = ("synthetic", "folder", "scene", "mirflickr", "coco", "voc", "nuswide", "mulan")


def load_importers() -> Registry[Callable[..., LabelTable]]:
    """Import every importer module, so that all of them are in :data:`DATASETS`; returns it."""
    for module in IMPORTER_MODULES:
        importlib.import_module(f"retdm.data.{module}")
    return DATASETS
