"""Great Expectations checks of a label table, run by the pipeline's ``validate`` stage.

The raw Parquet file is read with pyarrow (not :func:`retdm.data.read_label_table`, which stops
at the first problem) and checked by one ExpectationSuite, ``retdm_label_table``, so that every
problem is reported at once: the schema and label count against the declared label names, unique
non-null ``image_id``, 0/1 labels, a positive of every label in the train split, the split
proportions, and that a seeded sample of the images exists and decodes, or, for a feature table
(``feat_*`` columns, e.g. a MULAN import), that every feature value is a finite number. Some
expectations run on derived frames (the train rows, a 0/1 ``is_test`` column, the probed image
sample, one row per feature column, the recorded label order), each its own batch of an
ephemeral, in-memory GX context. Great Expectations is
imported lazily: it takes seconds to import and ``retdm`` itself never depends on it.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from retdm.data.table import FEATURE_PREFIX, META_PREFIX, SPLITS, recorded_root
from retdm.errors import DataError
from retdm.files import atomic_write

SUITE_NAME = "retdm_label_table"
LABEL_KEY = f"{META_PREFIX}label_names"
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Failure:
    """One failed (or, for a missing column, skipped) expectation."""

    expectation: str
    column: str | None
    unexpected_count: int | None
    examples: list
    detail: str


@dataclass(frozen=True)
class LabelCheckReport:
    """The outcome of :func:`check_label_table`."""

    dataset: str
    table: str
    success: bool
    results: list[dict]
    failures: list[Failure]

    def message(self) -> str:
        """One line per failure (expectation, column, count, examples, detail); ``""`` on success."""
        return "\n".join(
            f"FAILED {f.expectation} on {f'column {f.column!r}' if f.column else 'the table'}"
            + ("" if f.unexpected_count is None else f": {f.unexpected_count} unexpected")
            + (f", examples {json.dumps(f.examples)}" if f.examples else "") + f" -- {f.detail}"
            for f in self.failures
        )

    def to_json(self) -> dict:
        """The report as JSON-able plain Python."""
        return {"suite": SUITE_NAME, "dataset": self.dataset, "table": self.table, "success": self.success,
                "results": self.results, "failures": [asdict(f) for f in self.failures]}


@dataclass
class _Check:
    batch: str  # which frame the expectation runs on: table, train, split, images or metadata
    column: str | None  # the column named in the report
    expected: str  # what should hold, in words
    fix: str
    expectation: object  # the GX expectation
    skip: str = ""  # why it could not run, if it cannot
    examples: tuple = ()  # examples known beforehand (a schema check's mismatched columns)


def check_label_table(table_path, root, declared_labels: list[str], *, dataset: str = "",
                      test_fraction: float | None = 0.2, tolerance: float = 0.02,
                      sample_images: int = 32, seed: int = 0) -> LabelCheckReport:
    """Check a label table with Great Expectations and report every failed expectation.

    Args:
        table_path: the Parquet label table.
        root: directory the ``path`` column is relative to; ``None``: the table's recorded
            ``retdm.root`` (where its importer put or found the images), else its directory.
        declared_labels: the label names the dataset declares, in column order.
        dataset: dataset name, for the report.
        test_fraction: expected share of ``test`` rows; ``None`` for an official split (any share in [0, 1]).
        tolerance: allowed absolute deviation of the test share from ``test_fraction``.
        sample_images: how many images (a seeded sample) must exist and decode; 0 skips that check,
            as do feature tables.
        seed: seed of the image sample.

    Returns:
        The report; ``success`` is False when any expectation failed or could not run.

    Raises:
        DataError: the file is missing, not Parquet, or lacks the ``retdm.label_names`` metadata.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    frame, recorded = _read_raw(Path(table_path))
    root = recorded_root(table_path) if root is None else Path(root)
    declared = [str(n) for n in declared_labels]
    checks, frames = _plan(frame, recorded, declared, root, test_fraction, tolerance, sample_images, seed)
    context = gx.get_context(mode="ephemeral")  # in memory: no files, no network
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.suites.add(gx.ExpectationSuite(name=SUITE_NAME, expectations=[c.expectation for c in checks]))
    source = context.data_sources.add_pandas("retdm")
    batches = {name: source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
               .get_batch(batch_parameters={"dataframe": df}) for name, df in frames.items()}
    index = {"images": ["path", "error"], "features": ["column", "error"],
             "table": ["image_id"] if "image_id" in frame.columns else []}
    results, failures = [], []
    for c in checks:
        if c.skip:
            entry = {"expectation": c.expectation.expectation_type, "column": c.column, "batch": c.batch,
                     "success": False, "skipped": True, "unexpected_count": None, "examples": [],
                     "detail": f"not checked: {c.skip}"}
        else:
            fmt = {"result_format": "SUMMARY", "partial_unexpected_count": 20,
                   "unexpected_index_column_names": index.get(c.batch, [])}  # rows named by these columns
            entry = _entry(c, batches[c.batch].validate(c.expectation, result_format=fmt))
        results.append(entry)
        if not entry["success"]:
            failures.append(Failure(entry["expectation"], c.column, entry["unexpected_count"], entry["examples"],
                                    entry["detail"]))
    return LabelCheckReport(dataset, str(table_path), not failures, results, failures)


def _read_raw(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """The raw table and its recorded label order, or ``DataError`` naming the file and the fix."""
    if not path.is_file():
        raise DataError(f"{path}: label table not found; run the stages before `validate` "
                        f"(or `retdm data synth`) to create it")
    try:
        arrow = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: not a readable Parquet file ({err}); re-create it with "
                        f"retdm.data.write_label_table") from err
    meta = arrow.schema.metadata or {}
    if LABEL_KEY.encode() not in meta:
        raise DataError(f"{path}: file metadata lacks {LABEL_KEY!r}; write label tables with "
                        f"retdm.data.write_label_table")
    return arrow.to_pandas(), [str(n) for n in json.loads(meta[LABEL_KEY.encode()])]


def _schema_checks(cols: list[str], recorded: list[str], declared: list[str], n_feat: int) -> list[_Check]:
    """The table's shape: its columns in order and count, the recorded label order, at least one row."""
    import great_expectations.expectations as gxe

    data_cols = [f"{FEATURE_PREFIX}{i}" for i in range(n_feat)] if n_feat else ["path"]
    expected = ["image_id", *data_cols, "split", *declared]
    missing = [c for c in expected if c not in cols]
    extra = [c for c in cols if c not in expected]
    reimport = "re-import the dataset or fix the declared label names"
    mismatch = (*missing, *extra) or tuple(c for c, want in zip(cols, expected) if c != want)
    order = tuple(n for n in [*declared, *recorded] if (n in declared) != (n in recorded)) or \
        tuple(n for n, want in zip(recorded, declared) if n != want)
    fix = (f"missing {missing}, unexpected {extra}" if missing or extra else "the columns are out of order") + \
        f"; {reimport}"
    return [
        _Check("table", None, f"have the columns image_id, {'feat_*' if n_feat else 'path'}, split and the "
               f"{len(declared)} declared labels, in this order", fix,
               gxe.ExpectTableColumnsToMatchOrderedList(column_list=expected), examples=mismatch),
        _Check("table", None, f"have {len(expected)} columns ({len(expected) - len(declared)} reserved + "
               f"{len(declared)} declared labels)", fix, gxe.ExpectTableColumnCountToEqual(value=len(expected)),
               examples=mismatch),
        _Check("metadata", None, f"record the declared label order {declared} in {LABEL_KEY!r}", reimport,
               gxe.ExpectTableColumnsToMatchOrderedList(column_list=declared), examples=order),
        _Check("table", None, "have at least one row", "the dataset is empty; add images and labels",
               gxe.ExpectTableRowCountToBeBetween(min_value=1)),
    ]


def _plan(frame, recorded, declared, root, test_fraction, tolerance, sample_images, seed):
    """The suite's checks and the frames (batches) they run on."""
    import great_expectations.expectations as gxe

    cols = [str(c) for c in frame.columns]
    n_feat = sum(c.startswith(FEATURE_PREFIX) for c in cols)
    frames = {"table": frame, "metadata": pd.DataFrame(columns=recorded)}
    checks = _schema_checks(cols, recorded, declared, n_feat)

    def column_check(batch, column, expected_text, fix, expectation, needs=()):
        """Add a check of ``column``; skipped when it or a column it ``needs`` is missing from the table."""
        absent = [c for c in (column, *needs) if c not in cols]
        skip = f"column(s) {absent} missing from the table (see the schema check)" if absent else ""
        checks.append(_Check(batch, column, expected_text, fix, expectation, skip))

    column_check("table", "image_id", "hold no nulls", "give every row an image_id",
                 gxe.ExpectColumnValuesToNotBeNull(column="image_id"))
    column_check("table", "image_id", "be unique", "drop or rename the duplicated items",
                 gxe.ExpectColumnValuesToBeUnique(column="image_id"))
    column_check("table", "split", "hold no nulls", "re-run the split stage",
                 gxe.ExpectColumnValuesToNotBeNull(column="split"))
    column_check("table", "split", f"be one of {list(SPLITS)}", "re-run the split stage",
                 gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)))
    if "split" in cols:
        frames["train"] = frame[frame["split"] == "train"].reset_index(drop=True)
        frames["split"] = pd.DataFrame({"is_test": (frame["split"] == "test").astype(float).to_numpy()})
    if test_fraction is None:  # an official split (COCO, VOC, NUS-WIDE, MULAN): kept, whatever its share
        test_fraction, tolerance = 0.5, 0.5
    low, high = max(0.0, test_fraction - tolerance), min(1.0, test_fraction + tolerance)
    column_check("split", "split",
                 f"have a test share in [{low:.3f}, {high:.3f}] (test_fraction {test_fraction} ± {tolerance})",
                 "re-run the split stage with the configured test_fraction",
                 gxe.ExpectColumnMeanToBeBetween(column="is_test", min_value=low, max_value=high))
    for label in declared:
        column_check("table", label, "hold no nulls", "fill the missing labels with 0 or 1",
                     gxe.ExpectColumnValuesToNotBeNull(column=label))
        column_check("table", label, "hold only 0 or 1", "label columns are 0/1; fix the importer or source data",
                     gxe.ExpectColumnValuesToBeInSet(column=label, value_set=[0, 1]))
        column_check("train", label, "have at least one positive in the train split",
                     "drop the label or re-split so that train has a positive",
                     gxe.ExpectColumnMaxToBeBetween(column=label, min_value=1), needs=("split",))
    if not n_feat:
        column_check("table", "path", "hold no nulls", "give every row the path of its image",
                     gxe.ExpectColumnValuesToNotBeNull(column="path"))
    else:
        # One row per feature column, not one expectation per column: MULAN tables have up to thousands.
        frames["features"] = _probe_features(frame, [c for c in cols if c.startswith(FEATURE_PREFIX)])
        checks.append(_Check("features", f"{FEATURE_PREFIX}*", f"hold finite numbers only ({n_feat} feature columns)",
                             "re-import the dataset; the source has missing (NaN) or infinite feature values",
                             gxe.ExpectColumnValuesToBeInSet(column="finite", value_set=[True])))
    if not n_feat and sample_images > 0:
        if "path" in cols:
            frames["images"] = _probe_images(frame["path"], root, sample_images, seed)
        column_check("images", "path",
                     f"name files under {str(root)!r} that exist and decode (sample of {sample_images}, seed {seed})",
                     "restore or re-download the listed images, or fix the dataset root",
                     gxe.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True]))
    return checks, frames


def _probe_features(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One row per feature column: ``column``, ``finite`` (bool: every value a finite number) and ``error``."""
    out = {"column": [], "finite": [], "error": []}
    ids = frame["image_id"] if "image_id" in frame.columns else pd.Series(range(len(frame)))
    for c in columns:
        values = pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values)
        error = ""
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            error = f"{int(bad.sum())} non-finite or non-numeric value(s), first {frame[c].iloc[first]!r} at " \
                    f"image_id {ids.iloc[first]!r}"
        out["column"].append(c)
        out["finite"].append(not error)
        out["error"].append(error)
    return pd.DataFrame(out)


def _probe_images(paths: pd.Series, root: Path, size: int, seed: int) -> pd.DataFrame:
    """A seeded sample of ``paths``: columns ``path``, ``decodes`` (bool) and ``error`` (why not),
    each image decoded as training decodes it (``retdm.data.images.find_unreadable_images``)."""
    from retdm.data.images import find_unreadable_images  # torch: only when images are probed

    rows = np.sort(np.random.default_rng(seed).choice(len(paths), size=min(size, len(paths)), replace=False))
    sample = [rel if isinstance(rel, str) else None for rel in paths.iloc[rows]]
    errors = dict(find_unreadable_images(root, sample))
    return pd.DataFrame({"path": sample, "decodes": [rel not in errors for rel in sample],
                         "error": [errors.get(rel, "") for rel in sample]})


def _entry(check: _Check, res) -> dict:
    """One ``results`` entry (JSON-able) from a GX ExpectationValidationResult."""
    r = _plain(dict(res.result or {}))
    error = _exception_message(res.exception_info)
    index = r.get("partial_unexpected_index_list") or []
    if check.batch == "images":
        examples = [row.get("path") for row in index]
    elif check.batch == "features":
        examples = [row.get("column") for row in index]
    elif check.examples:
        examples = list(check.examples)
    else:
        examples = list(r.get("partial_unexpected_list") or [])
    examples = _unique(examples)[:MAX_EXAMPLES]
    count = r.get("unexpected_count")
    if error:
        found = f"GX could not evaluate it ({error})"
    elif count:
        found = f"{count} of {r.get('element_count')} values are unexpected, e.g. {examples}"
        if check.batch in ("images", "features"):
            key = "path" if check.batch == "images" else "column"
            found += " (" + "; ".join(f"{row.get(key)}: {row.get('error')}" for row in index[:MAX_EXAMPLES]) + ")"
        elif index and "image_id" in index[0]:
            found += f" at image_id {_unique([row['image_id'] for row in index])[:MAX_EXAMPLES]}"
    elif r.get("observed_value") is None:
        found = "there were no values to check (an empty table, split or column)"
    else:
        observed = json.dumps(r.get("observed_value"))
        found = f"observed {observed if len(observed) <= 200 else observed[:200] + '...'}"
    subject = f"column {check.column!r}" if check.column else "the label table"
    success = bool(res.success) and not error
    kwargs = {k: v for k, v in res.expectation_config.kwargs.items() if k != "batch_id" and v is not None}
    detail = " ".join(f"{subject} should {check.expected}, but {found}; {check.fix}".split())  # one line
    return {"expectation": check.expectation.expectation_type, "column": check.column, "batch": check.batch,
            "success": success, "skipped": False, "kwargs": _plain(kwargs),
            "observed_value": r.get("observed_value"), "element_count": r.get("element_count"),
            "unexpected_count": count, "examples": examples if not success else [], "unexpected_rows": index,
            "detail": "" if success else detail}


def _exception_message(info) -> str:
    """The message(s) of exceptions GX caught while evaluating an expectation, or ``""``."""
    if not info:
        return ""
    parts = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    return "; ".join(sorted({str(p.get("exception_message")) for p in parts if p.get("raised_exception")}))


def _plain(value):
    """``value`` as JSON-able plain Python (numpy scalars and arrays unwrapped, NaN as None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return None if pd.isna(value) else str(value)


def _unique(values: list) -> list:
    """``values`` without repeats, in first-seen order."""
    return list({json.dumps(v, sort_keys=True): v for v in values}.values())


def write_reports(report: LabelCheckReport, json_path, html_path) -> None:
    """Write ``report`` as JSON and as a self-contained HTML page, each atomically.

    Args:
        report: the report of :func:`check_label_table`.
        json_path: where the JSON goes.
        html_path: where the HTML page goes.
    """
    atomic_write(Path(json_path), lambda tmp: Path(tmp).write_text(json.dumps(report.to_json(), indent=2) + "\n",
                                                                    encoding="utf-8"))
    atomic_write(Path(html_path), lambda tmp: Path(tmp).write_text(_html(report), encoding="utf-8"))


def _html(report: LabelCheckReport) -> str:
    e = lambda v: html.escape("" if v is None else v if isinstance(v, str) else json.dumps(v))  # noqa: E731
    verdict = "PASS" if report.success else "FAIL"
    rows = "\n".join(
        f"<tr class='{'ok' if r['success'] else 'bad'}'><td>{e(r['expectation'])}</td><td>{e(r['column'])}</td>"
        f"<td>{'skipped' if r['skipped'] else 'pass' if r['success'] else 'FAIL'}</td>"
        f"<td>{e(r['unexpected_count'])}</td><td>{e(r.get('observed_value'))}</td><td>{e(r['examples'])}</td>"
        f"<td>{e(r['detail'])}</td></tr>" for r in report.results)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{e(SUITE_NAME)}: {e(report.dataset)} {verdict}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:90%}}
tr.bad{{background:#fde8e8}} tr.ok{{background:#eefbee}} .v{{font-size:150%;font-weight:bold}}</style></head>
<body><h1>Label table check ({e(SUITE_NAME)})</h1>
<p>Dataset: <b>{e(report.dataset)}</b><br>Table: <code>{e(report.table)}</code></p>
<p class="v">{verdict}: {len(report.results) - len(report.failures)} of {len(report.results)} expectations passed</p>
<table><tr><th>expectation</th><th>column</th><th>result</th><th>unexpected</th><th>observed</th>
<th>examples</th><th>detail</th></tr>
{rows}
</table></body></html>
"""
