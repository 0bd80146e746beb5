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
])
def test_bad_csv_names_line_and_writes_nothing(images, tmp_path, body, match):
    csv = tmp_path / "labels.csv"
    csv.write_text(body)
    with pytest.raises(DataError, match=match):
        import_folder(images, csv, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()
