"""Stage ``evaluate@<dataset>-<method>``: the method's final model on the test split →
``results/evaluations/<dataset>/<method>/{metrics,predictions}.parquet``.

Usage: ``python -m pipelines.evaluate DATASET METHOD``.
"""

from __future__ import annotations

from pipelines.cache import image_cache
from pipelines.params import Layout, load_params, stage_main
from retdm.evaluate import evaluate_method


def main(dataset: str, method: str) -> None:
    """python -m pipelines.evaluate DATASET METHOD: metrics and predictions of one trained method."""
    params = load_params()
    layout = Layout(dataset)
    out = layout.evaluation(method)
    applied = {"evaluate": params["evaluate"], "methods": {method: params["methods"].get(method)},
               "train": params["train"], "profile": params["profile"], "seed": params["seed"],
               "dataset_train": params["datasets"][dataset]["train"]}
    evaluate_method(layout.runs, method, layout.table, out / "metrics.parquet", out / "predictions.parquet",
                    threshold=params["evaluate"]["threshold"], extra={"params": applied},
                    image_cache=image_cache(params, dataset))


if __name__ == "__main__":
    stage_main(main)
