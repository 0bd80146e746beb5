"""Fuzz the ``folder`` importer's CSV reader (retdm.data.folder): both layouts (wide 0/1 columns and
a ``labels`` list), UTF-8 with or without BOM, other encodings, CRLF, every quoting style, an
optional ``split`` column, then random byte edits of such files and random separators."""

import base64
import csv
import io
import tempfile
from pathlib import Path

from fuzzing import budget, expect_clean_error, files_under, mutated
from hypothesis import given
from hypothesis import strategies as st

from retdm.data.folder import import_folder
from retdm.data.table import FEATURE_PREFIX, RESERVED, read_label_table
from retdm.errors import ConfigError, DataError

# Names a user might give: letters (non-ASCII too), digits, spaces, and the CSV-special , " ;
name_chars = st.characters(codec="utf-8", categories=("L", "N", "Zs"), include_characters=",\";|-_.")
SEPARATORS = (" ", ";", "|", ",")


def _label_name_ok(name: str) -> bool:
    return (name == name.strip() and name not in ("image", "split", "labels", *RESERVED)
            and not name.startswith(FEATURE_PREFIX) and not name.startswith("Unnamed"))


label_names = st.text(name_chars, min_size=1, max_size=6).filter(_label_name_ok)
image_names = st.builds(lambda sub, stem, ext: f"{sub}{stem}{ext}", st.sampled_from(("", "sub/")),
                        st.text(name_chars, min_size=1, max_size=8).filter(lambda s: s == s.strip()),
                        st.sampled_from((".jpg", ".png")))


@st.composite
def csv_dataset(draw):
    """A valid dataset: (images, header, rows, expected label names, (N, M) labels, split or None, separator)."""
    images = draw(st.lists(image_names, min_size=1, max_size=5, unique=True))
    layout = draw(st.sampled_from(("wide", "list")))
    separator = draw(st.sampled_from(SEPARATORS))
    if layout == "wide":
        names = draw(st.lists(label_names, min_size=1, max_size=4, unique=True))
    else:
        names = draw(st.lists(label_names.filter(lambda n: separator not in n and not any(c.isspace() for c in n)),
                              min_size=1, max_size=4, unique=True))
    labels = [[draw(st.integers(0, 1)) for _ in names] for _ in images]
    if layout == "list" and not any(map(any, labels)):
        labels[0][0] = 1  # a list CSV must name at least one label
    split = draw(st.none() | st.lists(st.sampled_from(("train", "test")), min_size=len(images), max_size=len(images)))
    columns = ["image", *(names if layout == "wide" else ["labels"]), *(["split"] if split else [])]
    order = draw(st.permutations(range(len(columns))))
    rows = []
    for i, image in enumerate(images):
        cells = [image, *(map(str, labels[i]) if layout == "wide" else
                          [separator.join(n for n, v in zip(names, labels[i]) if v)]), *([split[i]] if split else [])]
        rows.append([cells[k] for k in order])
    header = [columns[k] for k in order]
    # wide: the CSV's column order; list: the names some row carries, sorted
    expected = [c for c in header if c in names] if layout == "wide" else \
        sorted(n for j, n in enumerate(names) if any(row[j] for row in labels))
    expected_labels = [[row[names.index(n)] for n in expected] for row in labels]
    return images, header, rows, expected, expected_labels, split, separator


@st.composite
def rendered(draw, header, rows):
    """The CSV bytes in a drawn dialect: quoting, line end, BOM, trailing newline."""
    buf = io.StringIO()
    quoting = draw(st.sampled_from((csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC)))
    ending = draw(st.sampled_from(("\n", "\r\n")))
    csv.writer(buf, quoting=quoting, lineterminator=ending).writerows([header, *rows])
    text = buf.getvalue()
    if draw(st.booleans()):
        text = text[: -len(ending)]  # no newline at the end
    return draw(st.sampled_from(("utf-8", "utf-8-sig"))), text


PNG = base64.b64decode(  # a 1×1 RGB PNG: the importer decodes by content, whatever the extension
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNgZGIGAAAOAAfXb+R4AAAAAElFTkSuQmCC")


def _write_images(folder: Path, images: list[str]) -> None:
    for image in images:
        (folder / image).parent.mkdir(parents=True, exist_ok=True)
        (folder / image).write_bytes(PNG)  # the importer decodes every image


def _run(images_dir: Path, csv_path: Path, out: Path, **options):
    """The importer under the invariant: the table read back, or ``None`` after a clean error."""
    before = files_under(out.parent)
    try:
        import_folder(images_dir, csv_path, out, **options)
    except (DataError, ConfigError) as err:
        expect_clean_error(err, [csv_path, images_dir, "separator"], out.parent, before)
        return None
    return read_label_table(out)


@budget(60, "CSV importer (`folder`)")
@given(csv_dataset(), st.data())
def test_valid_csv_reads_back_exactly(dataset, data):
    images, header, rows, names, labels, split, separator = dataset
    encoding, text = data.draw(rendered(header, rows))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _write_images(tmp / "imgs", images)
        (tmp / "labels.csv").write_bytes(text.encode(encoding))
        table = _run(tmp / "imgs", tmp / "labels.csv", tmp / "out" / "labels.parquet", separator=separator)
        assert table is not None, "a valid CSV was refused"
        assert table.label_names == tuple(names)
        assert table.frame["image_id"].tolist() == images
        assert table.labels().tolist() == labels
        if split:
            assert table.frame["split"].tolist() == split
        assert all((table.root / p).is_file() for p in table.frame["path"])


@budget(60, "CSV importer (`folder`)")
@given(csv_dataset(), st.data(), st.sampled_from(("utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16")),
       st.sampled_from(SEPARATORS + ("", "  ", "\t", "\n")))
def test_mutated_csv_keeps_the_invariant(dataset, data, encoding, separator):
    images, header, rows, *_ = dataset
    _, text = data.draw(rendered(header, rows))
    blob = data.draw(st.just(text.encode(encoding, "replace")) | mutated(text.encode(encoding, "replace")))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _write_images(tmp / "imgs", images)
        (tmp / "labels.csv").write_bytes(blob)
        _run(tmp / "imgs", tmp / "labels.csv", tmp / "out" / "labels.parquet", separator=separator)
