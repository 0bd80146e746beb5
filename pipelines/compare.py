"""Stage ``compare``: every dataset × method × seed → ``results/metrics.parquet`` (long form),
``results/comparison.parquet`` and ``reports/comparison.md`` (the paper's layout: mean ± std over
seeds) and ``results/metrics.json`` (DVC's metrics file: ``dvc metrics show``, ``dvc exp show``).

Usage: ``python -m pipelines.compare``.
"""

from __future__ import annotations

from pipelines.params import COMPARISON_MD, METRICS_JSON, RESULTS, Layout, load_params, stage_main
from retdm.compare import compare


def main() -> None:
    """python -m pipelines.compare: gather the per-method metrics into the comparison table."""
    params = load_params()
    methods = list(params["methods"])
    paths = [Layout(d, seed=s).evaluation(m) / "metrics.parquet"
             for d in params["datasets"] for m in methods for s in params["seeds"]]
    compare(paths, RESULTS / "metrics.parquet", RESULTS / "comparison.parquet", COMPARISON_MD, json_out=METRICS_JSON,
            method_order=methods, extra={"params": {k: params[k] for k in ("datasets", "methods", "profile", "seeds")}})
    print(COMPARISON_MD.read_text())


if __name__ == "__main__":
    stage_main(main)
