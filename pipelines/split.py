"""Stage ``split@<dataset>``: the paper's seeded 80/20 train/test split → ``data/<dataset>/split.parquet``.

Datasets with an official split (``official_split: true``, e.g. MS-COCO) keep it. Usage:
``python -m pipelines.split DATASET``.
"""

from __future__ import annotations

from pipelines.params import Layout, dataset_spec, load_params, stage_main
from retdm.data.table import resplit_table


def main(dataset: str) -> None:
    """python -m pipelines.split DATASET: write the split label table."""
    params = load_params()
    layout = Layout(dataset)
    resplit_table(layout.raw / "labels.parquet", layout.table, test_fraction=params["split"]["test_fraction"],
                  seed=params["split"]["seed"], keep_official=bool(dataset_spec(params, dataset).get("official_split")))


if __name__ == "__main__":
    stage_main(main)
