import numpy as np
import pytest
from PIL import Image

from retdm.data.folder import import_folder
from retdm.data.table import read_label_table
from retdm.errors import DataError


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(10):
        Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(root / f"{i}.png")
    return root


def test_wide_csv(images, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("image,sky,cloud\n" + "".join(f"{i}.png,{i % 2},{int(i > 4)}\n" for i in range(10)))
    t = import_folder(images, csv, tmp_path / "out" / "labels.parquet")
    back = read_label_table(tmp_path / "out" / "labels.parquet")
    assert back.label_names == ("sky", "cloud") and len(back) == 10
    assert back.labels()[3].tolist() == [1, 0]
    assert (back.root / back.frame["path"][0]).resolve() == (images / "0.png").resolve()
    assert (back.frame["split"] == "test").sum() == 2 and t.name == "imgs"


def test_list_csv_with_separator_and_split(images, tmp_path):
    csv = tmp_path / "labels.csv"
    rows = [f"{i}.png,{'sky|cloud' if i % 3 == 0 else ('tree' if i % 3 == 1 else '')},{'test' if i < 3 else 'train'}"
            for i in range(10)]
    csv.write_text("image,labels,split\n" + "\n".join(rows) + "\n")
    t = import_folder(images, csv, separator="|")
    assert t.label_names == ("cloud", "sky", "tree")
    assert t.labels()[0].tolist() == [1, 1, 0] and t.labels()[2].tolist() == [0, 0, 0]
    assert t.frame["split"].tolist()[:4] == ["test", "test", "test", "train"]
    assert (images / "labels.parquet").is_file()


@pytest.mark.parametrize("body, match", [
    ("image,sky\n0.png,1\n1.png,2\n", r"line 3, column 'sky': expected 0 or 1, got '2'"),
    ("image,sky\n0.png,1\n99.png,0\n", r"line 3: image file .*99.png' does not exist"),
    ("image,sky\n", "empty"),
    ("name,sky\n0.png,1\n", "no 'image' column"),
    ("image,sky,image\n0.png,1,1\n", r"labels\.csv: column\(s\) \['image'\] appear more than once"),
    ("image,sky,circle,sky,circle\n0.png,1,0,0,1\n", r"labels\.csv: column\(s\) \['circle', 'sky'\] appear more"),
    ("image,sky,\n0.png,1,0\n", r"labels\.csv: header column\(s\) \[3\] \(counting from 1\) have no name"),
])
def test_bad_csv_names_line_and_writes_nothing(images, tmp_path, body, match):
    csv = tmp_path / "labels.csv"
    csv.write_text(body)
    with pytest.raises(DataError, match=match):
        import_folder(images, csv, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_truncated_and_fake_images_are_refused_all_listed(tmp_path):
    from click.testing import CliRunner
    from test_images import spoil, write_images  # tests/data is on the path (pytest's prepend import mode)

    from retdm.cli import main

    root = tmp_path / "imgs"
    paths = write_images(root)
    spoil(root)
    csv = tmp_path / "labels.csv"
    csv.write_text("image,sky\n" + "".join(f"{p},{i % 2}\n" for i, p in enumerate(paths)))
    with pytest.raises(DataError, match=r"labels\.csv: 2 of 6 image file\(s\) cannot be read: 1\.jpg: cannot be "
                                        r"decoded \(OSError: image file is truncated.*; 4\.jpg: cannot be decoded"):
        import_folder(root, csv, tmp_path / "out.parquet", workers=2)
    assert not (tmp_path / "out.parquet").exists()
    result = CliRunner().invoke(main, ["data", "import", str(root), str(csv), "--out", str(tmp_path / "o.parquet")])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "1.jpg" in result.stderr and "4.jpg" in result.stderr and not (tmp_path / "o.parquet").exists()
