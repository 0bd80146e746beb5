"""Stage ``report``: ``reports/index.html`` (one self-contained page) and ``reports/index.md`` from
everything the pipeline wrote (``retdm.report.build``). Usage: ``python -m pipelines.report``.
"""

from __future__ import annotations

from pipelines.params import load_params, stage_main
from retdm.report.build import build_report


def main() -> None:
    """python -m pipelines.report: the report of every dataset × method in params.yaml."""
    params = load_params()
    path = build_report(".", datasets=list(params["datasets"]), methods=list(params["methods"]),
                        threshold=params["evaluate"]["threshold"], seed=params["seeds"][0])
    print(f"report: {path} (and reports/index.md)")


if __name__ == "__main__":
    stage_main(main)
