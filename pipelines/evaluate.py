"""Stage ``evaluate@<dataset>-<method>-<seed>``: the method's final model on the test split →
``results/evaluations/<dataset>/seed<seed>/<method>/``: ``metrics.parquet`` (at ``evaluate.threshold``, the
comparison table's convention), ``predictions.parquet``, ``thresholds.json`` (per-class thresholds
tuned on the run's validation part, never the test split) and ``metrics_tuned.parquet`` (the same
metrics at those thresholds).

Usage: ``python -m pipelines.evaluate DATASET METHOD SEED``.
"""

from __future__ import annotations

from pipelines.cache import image_cache
from pipelines.params import Layout, load_params, seed_arg, stage_main
from retdm.evaluate import evaluate_method
from retdm.thresholds import FILENAME, tune_method


def main(dataset: str, method: str, seed: str) -> None:
    """python -m pipelines.evaluate DATASET METHOD SEED: metrics, predictions and tuned thresholds of one run."""
    params = load_params()
    layout = Layout(dataset, seed=seed_arg(seed))
    out = layout.evaluation(method)
    applied = {"evaluate": params["evaluate"], "methods": {method: params["methods"].get(method)},
               "train": params["train"], "profile": params["profile"], "seed": layout.seed,
               "dataset_train": params["datasets"][dataset]["train"]}
    cache = image_cache(params, dataset)
    tuned = tune_method(layout.runs, method, layout.table, out / FILENAME, mode="per_class", image_cache=cache)
    evaluate_method(layout.runs, method, layout.table, out / "metrics.parquet", out / "predictions.parquet",
                    threshold=params["evaluate"]["threshold"], extra={"params": applied}, image_cache=cache,
                    tuned=tuned, tuned_metrics_out=out / "metrics_tuned.parquet")


if __name__ == "__main__":
    stage_main(main)
