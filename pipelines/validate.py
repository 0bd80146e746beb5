"""Stage ``validate@<dataset>``: check the split label table with Great Expectations before anything
trains → ``reports/validation/<dataset>.{json,html}``.

On failure the reports are still written (to read what failed), the stage exits 1 with one line
per failed expectation (its column, count and example values), and DVC records nothing, so no
later stage runs. Usage: ``python -m pipelines.validate DATASET``.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from pipelines.params import Layout, dataset_spec, load_params, stage_main
from retdm.data.synthetic import LABEL_NAMES
from retdm.errors import DataError


def main(dataset: str) -> None:
    """python -m pipelines.validate DATASET: run the label-table suite and write its reports."""
    from pipelines.label_checks import check_label_table, write_reports

    params = load_params()
    spec, layout = dataset_spec(params, dataset), Layout(dataset)
    if not layout.table.is_file():
        raise DataError(f"{layout.table}: split table not found; run `dvc repro split@{dataset}` first")
    declared = spec.get("labels") or declared_labels(spec.get("source", ""), layout.table)
    # The images are where the table says (``retdm.root``): beside the raw table for a generated
    # or downloaded dataset, the user's own folder for ``source: table`` or ``folder``.
    report = check_label_table(layout.table, None, list(declared), dataset=dataset,
                               test_fraction=None if spec.get("official_split") else params["split"]["test_fraction"],
                               tolerance=params["validate"]["tolerance"],
                               sample_images=params["validate"]["sample_images"], seed=params["split"]["seed"])
    json_path, html_path = layout.validation
    write_reports(report, json_path, html_path)
    if not report.success:
        raise DataError(f"{layout.table} failed validation (report: {html_path}):\n{report.message()}")
    print(f"{dataset}: {len(report.results)} expectations passed; report {html_path}")


def declared_labels(source: str, table_path) -> list[str]:
    """The label names a dataset declares: the generator's own for ``synthetic``, otherwise the
    order recorded when the table was imported (``params.yaml`` ``datasets.<name>.labels`` wins)."""
    if source == "synthetic":
        return list(LABEL_NAMES)
    meta = pq.read_schema(table_path).metadata or {}
    if b"retdm.label_names" not in meta:
        raise DataError(f"{table_path}: file metadata lacks 'retdm.label_names'; re-run the download stage")
    return json.loads(meta[b"retdm.label_names"])


if __name__ == "__main__":
    stage_main(main)
