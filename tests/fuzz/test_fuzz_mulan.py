"""Fuzz the MULAN readers (retdm.data.mulan): generated ARFF files (dense and sparse rows, quoted
names, comments, keyword case, CRLF, BOM, an optional test file) with their label XML (nested,
namespaced or not), read back exactly; then random byte edits of either file."""

import re
import tempfile
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
from fuzzing import budget, expect_clean_error, files_under, mutated
from hypothesis import given
from hypothesis import strategies as st

from retdm.data.mulan import import_mulan
from retdm.data.table import FEATURE_PREFIX, RESERVED, read_label_table
from retdm.errors import DataError

name_chars = st.characters(codec="utf-8", categories=("L", "N"), include_characters=" _-.'\"{},%\\")
names = st.text(name_chars, min_size=1, max_size=6).filter(
    lambda n: n.strip() == n and n not in RESERVED and not n.startswith(FEATURE_PREFIX))
values = st.floats(allow_nan=False, allow_infinity=False, width=32)


@st.composite
def arff_dataset(draw):
    """Attributes (name, kind, nominal values), which are labels (in XML order), and the rows of a
    train and an optional test file (one float per attribute)."""
    attr_names = draw(st.lists(names, min_size=2, max_size=6, unique=True))
    n_labels = draw(st.integers(1, len(attr_names) - 1))
    labels = draw(st.permutations(attr_names))[:n_labels]  # XML order
    attrs = []
    for name in attr_names:
        if name in labels or draw(st.integers(0, 3)) == 0:
            attrs.append((name, "nominal", draw(st.sampled_from((("0", "1"), ("1", "0"))))))
        else:
            attrs.append((name, draw(st.sampled_from(("numeric", "REAL", "integer", "Numeric"))), ()))

    def rows(min_size):  # an ARFF file without rows is refused
        return draw(st.lists(st.tuples(*[values if not vals else st.sampled_from((0.0, 1.0)) for _, _, vals in attrs]),
                             min_size=min_size, max_size=4))

    return attrs, labels, rows(1), (rows(1) if draw(st.booleans()) else None)


def _quote(name: str, quote: str) -> str:
    return quote + name.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


@st.composite
def arff_text(draw, attrs, rows):
    """An ARFF file for ``attrs`` and ``rows``: dense or sparse rows (Weka's rule for absent values),
    comments, blank lines, keyword case."""
    kw = draw(st.sampled_from((str.lower, str.upper, str.title)))
    lines = ["% generated",
             f"{kw('@relation')} {_quote('rel ' + draw(names), chr(39))}", ""]
    for name, kind, vals in attrs:
        plain = re.fullmatch(r"[A-Za-z0-9_.\-]+", name) and draw(st.booleans())
        shown = name if plain else _quote(name, draw(st.sampled_from(("'", '"'))))
        declared = "{" + ",".join(vals) + "}" if vals else kind
        lines.append(f"{kw('@attribute')}{draw(st.sampled_from((' ', '  ', chr(9))))}{shown} {declared}")
    lines += ["", kw("@data")]
    for row in rows:
        if draw(st.booleans()):  # dense
            cells = [repr(v) if not vals else (f"'{int(v)}'" if draw(st.booleans()) else str(int(v)))
                     for v, (_, _, vals) in zip(row, attrs)]
            lines.append(draw(st.sampled_from((",", ", "))).join(cells))
        else:  # sparse: leave out the values equal to the attribute's default (0, or a nominal's first value)
            entries = [f"{j} {repr(v) if not vals else int(v)}" for j, (v, (_, _, vals)) in enumerate(zip(row, attrs))
                       if v != (float(vals[0]) if vals else 0.0) or draw(st.booleans())]
            lines.append("{" + ",".join(draw(st.permutations(entries))) + "}")
        if draw(st.integers(0, 4)) == 0:
            lines.append(draw(st.sampled_from(("", "% a comment", "   "))))
    ending = draw(st.sampled_from(("\n", "\r\n")))
    return draw(st.sampled_from(("", "\ufeff"))) + ending.join(lines) + ending


@st.composite
def xml_text(draw, labels):
    """The MULAN label XML: namespaced or not, labels flat or nested (document order is the order)."""
    ns = draw(st.sampled_from((' xmlns="http://mulan.sourceforge.net/labels"', "")))
    body, open_ = [], 0
    for label in labels:
        body.append(f"<label name={quoteattr(label)}>")
        if draw(st.booleans()):
            open_ += 1  # the next labels nest inside this one
        else:
            body.append("</label>")
    body += ["</label>"] * open_
    return f'<?xml version="1.0" encoding="utf-8"?>\n<labels{ns}>\n' + "\n".join(body) + "\n</labels>\n"


def _run(arff: Path, xml: Path, test: Path | None, out: Path):
    before = files_under(out.parent)
    try:
        import_mulan(arff, xml, out, test_arff=test)
    except DataError as err:
        expect_clean_error(err, [arff, xml, *([test] if test else [])], out.parent, before)
        return None
    return read_label_table(out)


def _write(tmp: Path, attrs, labels, train, test, data):
    arff, xml = tmp / "set-train.arff", tmp / "set.xml"
    arff.write_bytes(data.draw(arff_text(attrs, train)).encode())
    xml.write_bytes(data.draw(xml_text(labels)).encode())
    test_arff = None
    if test is not None:
        test_arff = tmp / "set-test.arff"
        test_arff.write_bytes(data.draw(arff_text(attrs, test)).encode())
    return arff, xml, test_arff


@budget(60, "ARFF and XML readers (`mulan`)")
@given(arff_dataset(), st.data())
def test_valid_arff_reads_back_exactly(dataset, data):
    attrs, labels, train, test = dataset
    with tempfile.TemporaryDirectory() as tmp:
        arff, xml, test_arff = _write(Path(tmp), attrs, labels, train, test, data)
        table = _run(arff, xml, test_arff, Path(tmp) / "out" / "labels.parquet")
        assert table is not None, "a valid ARFF/XML pair was refused"
        rows = np.array(train + (test or []), dtype=np.float64).reshape(-1, len(attrs))  # (N, A)
        order = [a[0] for a in attrs]
        assert table.label_names == tuple(labels)
        assert table.labels().tolist() == rows[:, [order.index(n) for n in labels]].astype(np.uint8).tolist()
        features = [j for j, a in enumerate(attrs) if a[0] not in labels]
        assert table.feature_columns == [f"{FEATURE_PREFIX}{i}" for i in range(len(features))]
        assert np.array_equal(table.frame[table.feature_columns].to_numpy(), rows[:, features].astype(np.float32))
        assert table.frame["image_id"].tolist() == [f"set_{i:05d}" for i in range(len(rows))]
        if test is not None:
            assert table.frame["split"].tolist() == ["train"] * len(train) + ["test"] * len(test)


@budget(60, "ARFF and XML readers (`mulan`)")
@given(arff_dataset(), st.data(), st.sampled_from(("arff", "xml", "test")))
def test_mutated_arff_or_xml_keeps_the_invariant(dataset, data, which):
    attrs, labels, train, test = dataset
    with tempfile.TemporaryDirectory() as tmp:
        arff, xml, test_arff = _write(Path(tmp), attrs, labels, train, test, data)
        target = {"arff": arff, "xml": xml, "test": test_arff or arff}[which]
        target.write_bytes(data.draw(mutated(target.read_bytes())))
        _run(arff, xml, test_arff, Path(tmp) / "out" / "labels.parquet")
