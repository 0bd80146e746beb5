"""Stage ``cache@<dataset>``: every image decoded and resized once → ``data/<dataset>/cache/``.

Built when the dataset's training config sets ``data.image_cache`` (the ``lite`` profile does):
uint8 shards at ``data.resize``, which the training, features and evaluate stages read instead of
decoding JPEGs every epoch. The result is the same bits as without the cache
(``retdm.data.image_cache``). Otherwise, and for feature tables, the folder holds only a note.

Either way every image is decoded here, before anything trains: a missing, truncated or corrupt
file fails this stage with the list of such files (``validate`` only probes a sample), instead of
failing a training or the features stage hours later.
Usage: ``python -m pipelines.cache DATASET``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pipelines.params import Layout, load_params, stage_main, train_config
from retdm.data.table import read_label_table
from retdm.errors import DataError

NOTE = "NOT_BUILT.txt"


def image_cache(params: dict, dataset: str) -> Path | None:
    """The dataset's image cache folder when its config reads one and the stage built it, else ``None``."""
    cache = Layout(dataset).cache
    return cache if train_config(params, "bce", dataset).data.image_cache and (cache / "cache.json").is_file() else None


def main(dataset: str) -> None:
    """python -m pipelines.cache DATASET: build the image cache (or leave a note why not)."""
    from retdm.data.image_cache import build_image_cache
    from retdm.data.images import find_unreadable_images, unreadable_message

    params, layout = load_params(), Layout(dataset)
    cfg = train_config(params, "bce", dataset)
    table = read_label_table(layout.table)
    if table.has_images and cfg.data.image_cache:
        build_image_cache(table, layout.cache, size=cfg.data.resize)
        print(f"{dataset}: {len(table)} images cached at {cfg.data.resize} px in {layout.cache}")
        return
    if table.has_images:  # no cache to build, but the images are checked all the same
        bad = find_unreadable_images(table.root, table.frame["path"], progress=True)
        if bad:
            raise DataError(f"{layout.table} (images under {table.root}): {unreadable_message(bad, len(table))}; "
                            f"replace or remove them (and their rows), then run the stages from download again")
    why = "the dataset holds feature vectors" if not table.has_images else \
        f"data.image_cache is false for it (profile {cfg.profile}); set it true to decode each image once"
    shutil.rmtree(layout.cache, ignore_errors=True)
    layout.cache.mkdir(parents=True)
    (layout.cache / NOTE).write_text(f"No image cache for {dataset}: {why}.\n")


if __name__ == "__main__":
    stage_main(main)
