"""Stage ``features@<dataset>-<seed>``: the pretrain (BCE) backbone's embedding of every image →
``runs/<dataset>/seed<seed>/bce/features/features.parquet``, the feature table the shallow methods
fit on.

Usage: ``python -m pipelines.features DATASET SEED``.
"""

from __future__ import annotations

from pipelines.cache import image_cache
from pipelines.params import Layout, load_params, seed_arg, stage_main
from retdm.methods import stage_dir
from retdm.train.features import export_features


def main(dataset: str, seed: str) -> None:
    """python -m pipelines.features DATASET SEED: export the BCE backbone's features of every image."""
    layout = Layout(dataset, seed=seed_arg(seed))
    export_features(stage_dir(layout.runs, "bce", "pretrain") / "best.pt", layout.table, layout.features,
                    image_cache=image_cache(load_params(), dataset))


if __name__ == "__main__":
    stage_main(main)
