"""Stage ``cache@<dataset>``: every image decoded and resized once → ``data/<dataset>/cache/``.

Built when the dataset's training config sets ``data.image_cache`` (the ``lite`` profile does):
uint8 shards at ``data.resize``, which the training, features and evaluate stages read instead of
decoding JPEGs every epoch. The result is the same bits as without the cache
(``retdm.data.image_cache``). Otherwise, and for feature tables, the folder holds only a note.
Usage: ``python -m pipelines.cache DATASET``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pipelines.params import Layout, load_params, stage_main, train_config
from retdm.data.table import read_label_table

NOTE = "NOT_BUILT.txt"


def image_cache(params: dict, dataset: str) -> Path | None:
    """The dataset's image cache folder when its config reads one and the stage built it, else ``None``."""
    cache = Layout(dataset).cache
    return cache if train_config(params, "bce", dataset).data.image_cache and (cache / "cache.json").is_file() else None


def main(dataset: str) -> None:
    """python -m pipelines.cache DATASET: build the image cache (or leave a note why not)."""
    from retdm.data.image_cache import build_image_cache

    params, layout = load_params(), Layout(dataset)
    cfg = train_config(params, "bce", dataset)
    table = read_label_table(layout.table)
    if table.has_images and cfg.data.image_cache:
        build_image_cache(table, layout.cache, size=cfg.data.resize)
        print(f"{dataset}: {len(table)} images cached at {cfg.data.resize} px in {layout.cache}")
        return
    why = "the dataset holds feature vectors" if not table.has_images else \
        f"data.image_cache is false for it (profile {cfg.profile}); set it true to decode each image once"
    shutil.rmtree(layout.cache, ignore_errors=True)
    layout.cache.mkdir(parents=True)
    (layout.cache / NOTE).write_text(f"No image cache for {dataset}: {why}.\n")


if __name__ == "__main__":
    stage_main(main)
