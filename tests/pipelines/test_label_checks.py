"""The Great Expectations label-table suite of the ``validate`` stage (pipelines/label_checks.py)."""

import html
import json
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.label_checks import check_label_table, write_reports
from retdm.errors import DataError

os.environ["GX_ANALYTICS_ENABLED"] = "false"  # before GX is first imported (lazily, by the first check)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """(root, frame, label names, Parquet metadata) of a 60-image synthetic dataset, shared read-only."""
    from retdm.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("syn")
    make_synthetic(root, num_images=60, image_size=32, progress=False)
    arrow = pq.read_table(root / "labels.parquet")
    labels = json.loads(arrow.schema.metadata[b"retdm.label_names"])
    return root, arrow.to_pandas(), labels, arrow.schema.metadata


def write(frame, path, metadata):
    """Write ``frame`` as a label table at ``path`` with ``metadata``; return ``path``."""
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(arrow.replace_schema_metadata(metadata), path)
    return path


def check(ds, tmp_path, frame=None, root=None, **kwargs):
    """Check ``frame`` (default: the good table) written as a table; every image is probed by default."""
    root_, frame_, labels, meta = ds
    table = write(frame_ if frame is None else frame, tmp_path / "labels.parquet", meta)
    kwargs.setdefault("sample_images", 1000)
    kwargs.setdefault("dataset", "synthetic")
    return check_label_table(table, root or root_, labels, **kwargs)


def failed(report, expectation, column):
    """The failures of ``expectation`` on ``column``."""
    return [f for f in report.failures if f.expectation == expectation and f.column == column]


def test_good_table_passes(dataset, tmp_path):
    report = check(dataset, tmp_path)
    assert report.success, report.message()
    assert report.failures == [] and report.message() == ""
    kinds = {r["expectation"] for r in report.results}
    assert {"expect_table_columns_to_match_ordered_list", "expect_table_column_count_to_equal",
            "expect_column_values_to_be_unique", "expect_column_values_to_be_in_set",
            "expect_column_max_to_be_between", "expect_column_mean_to_be_between"} <= kinds
    assert all(r["success"] for r in report.results)
    json.dumps(report.to_json())  # plain Python throughout


def test_duplicate_image_id_fails_naming_it(dataset, tmp_path):
    frame = dataset[1].copy()
    frame.loc[5, "image_id"] = frame.loc[2, "image_id"]
    report = check(dataset, tmp_path, frame)
    [f] = report.failures
    assert (f.expectation, f.column, f.unexpected_count) == ("expect_column_values_to_be_unique", "image_id", 2)
    assert f.examples == [frame.loc[2, "image_id"]]


def test_label_value_two_fails_naming_column_and_value(dataset, tmp_path):
    frame, label = dataset[1].copy(), dataset[2][1]
    frame.loc[3, label] = 2
    report = check(dataset, tmp_path, frame)
    [f] = failed(report, "expect_column_values_to_be_in_set", label)
    assert f.unexpected_count == 1 and f.examples == [2] and type(f.examples[0]) is int
    assert frame.loc[3, "image_id"] in f.detail
    assert not report.success


def test_missing_label_column_fails_schema_and_count(dataset, tmp_path):
    label = dataset[2][-1]
    report = check(dataset, tmp_path, dataset[1].drop(columns=[label]))
    [schema] = failed(report, "expect_table_columns_to_match_ordered_list", None)
    assert label in schema.examples and label in schema.detail
    [count] = failed(report, "expect_table_column_count_to_equal", None)
    assert label in count.examples
    skipped = [r for r in report.results if r["column"] == label]
    assert skipped and all(r["skipped"] and not r["success"] for r in skipped)


def test_missing_image_fails_naming_path(dataset, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(dataset[0], root)
    gone = dataset[1].loc[7, "path"]
    (root / gone).unlink()
    report = check(dataset, tmp_path, root=root)
    [f] = report.failures
    assert (f.expectation, f.column, f.unexpected_count) == ("expect_column_values_to_be_in_set", "path", 1)
    assert f.examples == [gone] and "does not exist" in f.detail


def test_corrupt_image_fails(dataset, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(dataset[0], root)
    bad = dataset[1].loc[11, "path"]
    (root / bad).write_bytes(b"not a png at all")
    [f] = check(dataset, tmp_path, root=root).failures
    assert f.column == "path" and f.examples == [bad] and "cannot be decoded" in f.detail


def test_image_sample_is_seeded_and_sized(dataset, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(dataset[0], root)
    for rel in dataset[1]["path"][::2]:  # half the images are gone
        (root / rel).unlink()
    first, again = (check(dataset, tmp_path, root=root, sample_images=8, seed=3) for _ in range(2))
    [images] = [r for r in first.results if r["batch"] == "images"]
    assert images["element_count"] == 8 and 0 < images["unexpected_count"] < 8
    assert first.failures == again.failures


def test_split_proportions_far_off_fail(dataset, tmp_path):
    frame = dataset[1].copy()
    frame["split"] = np.where(np.arange(len(frame)) % 2 == 0, "train", "test")
    [f] = failed(check(dataset, tmp_path, frame), "expect_column_mean_to_be_between", "split")
    assert "0.5" in f.detail


def test_bad_split_value_fails(dataset, tmp_path):
    frame = dataset[1].copy()
    frame.loc[0, "split"] = "val"
    [f] = failed(check(dataset, tmp_path, frame, tolerance=0.1), "expect_column_values_to_be_in_set", "split")
    assert f.examples == ["val"]


def test_label_without_train_positive_fails_naming_it(dataset, tmp_path):
    frame, label = dataset[1].copy(), dataset[2][0]
    frame.loc[frame["split"] == "train", label] = 0
    report = check(dataset, tmp_path, frame)
    [f] = report.failures
    assert (f.expectation, f.column) == ("expect_column_max_to_be_between", label)
    assert label in report.message()


def test_message_has_one_line_per_failure_and_reports_parse(dataset, tmp_path):
    frame, labels = dataset[1].copy(), dataset[2]
    frame.loc[1, "image_id"] = frame.loc[0, "image_id"]
    frame.loc[2, labels[2]] = 7
    frame.loc[frame["split"] == "train", labels[4]] = 0
    report = check(dataset, tmp_path, frame, dataset="syn <&>")
    lines = report.message().splitlines()
    assert len(lines) == len(report.failures) == 3
    for line, f in zip(lines, report.failures):
        assert line.startswith(f"FAILED {f.expectation}") and repr(f.column) in line
    write_reports(report, tmp_path / "out" / "report.json", tmp_path / "out" / "report.html")
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["success"] is False and len(data["failures"]) == 3 and data["suite"] == "retdm_label_table"
    page = (tmp_path / "out" / "report.html").read_text()
    assert "FAIL" in page and html.escape("syn <&>") in page and "syn <&>" not in page
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_feature_table_skips_images(dataset, tmp_path):
    frame, labels = dataset[1], dataset[2]
    feats = pd.DataFrame({"image_id": frame["image_id"], "feat_0": 0.5, "feat_1": 1.5, "split": frame["split"]})
    report = check(dataset, tmp_path, pd.concat([feats, frame[labels]], axis=1), root=tmp_path / "nowhere")
    assert report.success, report.message()
    assert "path" not in {r["column"] for r in report.results}


def test_unreadable_inputs_raise_data_error(dataset, tmp_path):
    labels = dataset[2]
    with pytest.raises(DataError, match="not found"):
        check_label_table(tmp_path / "absent.parquet", tmp_path, labels)
    (tmp_path / "junk.parquet").write_text("id,label\n")
    with pytest.raises(DataError, match="junk.parquet.*not a readable Parquet"):
        check_label_table(tmp_path / "junk.parquet", tmp_path, labels)
    pq.write_table(pa.Table.from_pandas(dataset[1], preserve_index=False).replace_schema_metadata({}),
                   tmp_path / "bare.parquet")
    with pytest.raises(DataError, match="retdm.label_names"):
        check_label_table(tmp_path / "bare.parquet", tmp_path, labels)
