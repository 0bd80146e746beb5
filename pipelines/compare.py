"""Stage ``compare``: every dataset × method × seed → ``results/metrics.parquet`` (long form, at the
fixed threshold), ``results/metrics_tuned.parquet`` (at the thresholds tuned on the validation part),
``results/comparison.parquet`` and ``reports/comparison.md`` (the paper's layout: mean ± std over
seeds, a row per threshold) and ``results/metrics.json`` (DVC's metrics file: ``dvc metrics show``,
``dvc exp show``).

Usage: ``python -m pipelines.compare``.
"""

from __future__ import annotations

from pipelines.params import COMPARISON_MD, METRICS_JSON, RESULTS, Layout, load_params, stage_main
from retdm.compare import compare


def main() -> None:
    """python -m pipelines.compare: gather the per-method metrics into the comparison table."""
    params = load_params()
    methods = list(params["methods"])
    runs = [Layout(d, seed=s).evaluation(m) for d in params["datasets"] for m in methods for s in params["seeds"]]
    compare([r / "metrics.parquet" for r in runs], RESULTS / "metrics.parquet", RESULTS / "comparison.parquet",
            COMPARISON_MD, json_out=METRICS_JSON, tuned_paths=[r / "metrics_tuned.parquet" for r in runs],
            tuned_out=RESULTS / "metrics_tuned.parquet", method_order=methods,
            extra={"params": {k: params[k] for k in ("datasets", "methods", "profile", "seeds")}})
    print(COMPARISON_MD.read_text())


if __name__ == "__main__":
    stage_main(main)
