import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from retdm.data.split import assign_split
from retdm.data.table import LabelTable, read_label_table, resplit_table, write_label_table
from retdm.errors import DataError
from retdm.files import atomic_write


def frame(**changes):
    f = pd.DataFrame({"image_id": ["a", "b", "c"], "path": ["a.png", "b.png", "c.png"],
                      "split": ["train", "train", "test"], "sky": [1, 0, 1], "cloud": [0, 1, 1]})
    for k, v in changes.items():
        f[k] = v
    return f


def test_round_trip_keeps_order_and_metadata(tmp_path):
    t = LabelTable(frame(), ("sky", "cloud"), tmp_path, "toy", '{"how": "test"}')
    write_label_table(t, tmp_path / "labels.parquet")
    back = read_label_table(tmp_path / "labels.parquet")
    assert back.label_names == ("sky", "cloud") and back.name == "toy" and back.source == '{"how": "test"}'
    assert back.labels().dtype == np.uint8 and back.labels().tolist() == [[1, 0], [0, 1], [1, 1]]
    assert list(back.frame.columns) == ["image_id", "path", "split", "sky", "cloud"]
    assert len(back.split("train")) == 2 and back.split("test").frame["image_id"].tolist() == ["c"]


def test_table_away_from_its_images_records_their_root(tmp_path):
    raw = tmp_path / "raw"
    t = LabelTable(frame(), ("sky", "cloud"), raw, "toy")
    write_label_table(t, tmp_path / "split" / "labels.parquet")
    assert read_label_table(tmp_path / "split" / "labels.parquet").root.resolve() == raw.resolve()
    assert read_label_table(tmp_path / "split" / "labels.parquet", root=tmp_path).root == tmp_path
    write_label_table(t, raw / "labels.parquet")  # beside its images: nothing recorded, still found
    assert b"retdm.root" not in pq.read_schema(raw / "labels.parquet").metadata
    assert read_label_table(raw / "labels.parquet").root == raw


@pytest.mark.parametrize("changes, match", [
    ({"sky": [1, 2, 0]}, r"label column 'sky', row 1 \(image_id 'b'\): expected 0 or 1, got 2"),
    ({"image_id": ["a", "a", "c"]}, r"image_id must be unique; 'a' repeats"),
    ({"split": ["train", "val", "test"]}, r"row 1: split must be 'train' or 'test', got 'val'"),
])
def test_contract_violations_name_row_and_column(tmp_path, changes, match):
    t = LabelTable(frame(**changes), ("sky", "cloud"), tmp_path)
    with pytest.raises(DataError, match=match):
        write_label_table(t, tmp_path / "labels.parquet")
    assert not list(tmp_path.iterdir())  # nothing written, not even a temporary file


def test_missing_label_column_and_empty_table(tmp_path):
    with pytest.raises(DataError, match=r"missing column\(s\) \['rain'\]"):
        write_label_table(LabelTable(frame(), ("sky", "rain"), tmp_path), tmp_path / "x.parquet")
    with pytest.raises(DataError, match="empty"):
        write_label_table(LabelTable(frame().iloc[:0], ("sky", "cloud"), tmp_path), tmp_path / "x.parquet")


def test_declared_label_count_mismatch(tmp_path):
    write_label_table(LabelTable(frame(), ("sky", "cloud"), tmp_path), tmp_path / "labels.parquet")
    with pytest.raises(DataError, match=r"has 2 labels .* but 3 were declared"):
        read_label_table(tmp_path / "labels.parquet", expect_labels=("sky", "cloud", "sun"))


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "labels.parquet"
    write_label_table(LabelTable(frame(), ("sky", "cloud"), tmp_path), path)
    before = path.read_bytes()
    with pytest.raises(DataError):
        write_label_table(LabelTable(frame(sky=[1, 5, 0]), ("sky", "cloud"), tmp_path), path)
    assert path.read_bytes() == before


def test_missing_or_garbage_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_label_table(tmp_path / "nope.parquet")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="not a readable Parquet"):
        read_label_table(tmp_path / "bad.parquet")


def test_assign_split_is_seeded_80_20():
    a, b = assign_split(1000, 0.2, 7), assign_split(1000, 0.2, 7)
    assert (a == b).all() and (a == "test").sum() == 200
    assert not (assign_split(1000, 0.2, 8) == a).all()


def test_resplit_draws_a_seeded_split_and_points_at_the_images(tmp_path):
    n = 50
    f = pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "path": [f"images/{i}.png" for i in range(n)],
                      "split": ["train"] * n, "sky": [i % 2 for i in range(n)], "cloud": [1] * n})
    write_label_table(LabelTable(f, ("sky", "cloud"), tmp_path / "raw", "toy"), tmp_path / "raw" / "labels.parquet")
    a = resplit_table(tmp_path / "raw" / "labels.parquet", tmp_path / "split" / "a.parquet", test_fraction=0.2, seed=3)
    b = resplit_table(tmp_path / "raw" / "labels.parquet", tmp_path / "split" / "b.parquet", test_fraction=0.2, seed=3)
    ta, tb = read_label_table(a), read_label_table(b)
    assert (ta.frame["split"] == "test").sum() == 10 and ta.frame["split"].tolist() == tb.frame["split"].tolist()
    assert ta.root.resolve() == (tmp_path / "raw").resolve() and ta.label_names == ("sky", "cloud")
    assert json.loads(pq.read_schema(a).metadata[b"retdm.split"]) == {"official": False, "test_fraction": 0.2, "seed": 3}
    kept = read_label_table(resplit_table(tmp_path / "raw" / "labels.parquet", tmp_path / "k.parquet", keep_official=True))
    assert (kept.frame["split"] == "train").all()


def test_resplit_keeps_bad_rows_for_validation_to_report(tmp_path):
    f = pd.DataFrame({"image_id": ["a", "a"], "path": ["a.png", "b.png"], "split": ["train", "test"], "sky": [1, 2]})
    meta = {b"retdm.label_names": b'["sky"]'}
    import pyarrow as pa
    pq.write_table(pa.Table.from_pandas(f, preserve_index=False).replace_schema_metadata(meta), tmp_path / "raw.parquet")
    out = resplit_table(tmp_path / "raw.parquet", tmp_path / "s.parquet", test_fraction=0.5, seed=0)
    assert pd.read_parquet(out)["sky"].tolist() == [1, 2]
    with pytest.raises(DataError, match="raw.parquet.*run the download stage"):
        resplit_table(tmp_path / "missing" / "raw.parquet", tmp_path / "t.parquet")
    assert not (tmp_path / "t.parquet").exists()


def test_a_write_removes_what_a_writer_killed_mid_write_left_of_its_own_path(tmp_path):
    """A SIGKILL runs no ``except``: the temporary of an atomic write (a file) or of a directory
    being built (a folder) stays beside the target, e.g. in results/, which the compare stage
    hashes. The next writer of that path removes them, and nothing that is not its own."""
    (tmp_path / ".comparison.parquet.k3x_9a0b.tmp").write_text("half a file")
    (tmp_path / ".comparison.parquet.0123abcd.tmp").mkdir()
    (tmp_path / ".comparison.parquet.0123abcd.tmp" / "part").write_text("half a folder")
    others = [".metrics.parquet.k3x_9a0b.tmp", ".comparison.parquet.json.k3x_9a0b.tmp",
              ".comparison.parquet.k3x_9a0b.tmp.keep", "comparison.parquet.k3x_9a0b.tmp", ".comparison.parquet.k3x.tmp"]
    for name in others:
        (tmp_path / name).write_text("not a temporary of comparison.parquet")
    atomic_write(tmp_path / "comparison.parquet", lambda tmp: Path(tmp).write_text("new"))
    assert (tmp_path / "comparison.parquet").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["comparison.parquet", *others])


def test_atomic_write_gives_the_mode_open_would_not_mkstemps(tmp_path):
    """mkstemp's 0600 would hide results and report figures from the group and a web server."""
    import os

    from retdm.files import atomic_write

    atomic_write(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("x"))
    with open(tmp_path / "b.txt", "w") as handle:  # what a plain open() gives, under this process's umask
        handle.write("y")
    mode = (tmp_path / "a.txt").stat().st_mode & 0o777
    assert mode == (tmp_path / "b.txt").stat().st_mode & 0o777 and mode & 0o044 == os.stat(tmp_path / "b.txt").st_mode & 0o044
    assert (tmp_path / "a.txt").read_text() == "x"
