"""The ``mulan`` importer: a MULAN multi-label dataset (ARFF features + XML label names) → a feature table.

MULAN (mulan.sourceforge.net) ships each dataset as an ARFF file, or a train/test pair of them
(``yeast-train.arff``, ``yeast-test.arff``), plus an XML file naming which ARFF attributes are
labels::

    <labels xmlns="http://mulan.sourceforge.net/labels">
      <label name="Class1"></label> …
    </labels>

Labels may nest (hierarchical datasets); every ``label`` element counts, in document order.
Every other attribute is a feature: numeric ones become float32 ``feat_*`` columns, nominal
``{0,1}`` ones 0/1 floats. Label columns follow the XML order.

The ARFF reader is our own because ``scipy.io.arff`` cannot read sparse rows, which most MULAN
text datasets use. It reads ``@relation``, ``@attribute name numeric|real|integer|{v1,…}``
(names quoted with ``'`` or ``"`` may hold spaces), ``%`` comments and ``@data`` rows, dense
(``1.5,0,1``) or sparse (``{3 1.5,7 1}``). In a sparse row an absent value is 0 for a numeric
attribute and the first declared value for a nominal one (Weka's rule; ``0`` for ``{0,1}``).
``?`` (missing) is refused: MULAN's datasets have none, and guessing a value would be silent.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from retdm.data.registry import DATASETS
from retdm.data.split import assign_split
from retdm.data.table import FEATURE_PREFIX, LabelTable, check_label_names, write_imported
from retdm.errors import DataError

NUMERIC_TYPES = ("numeric", "real", "integer")
BINARY = ("0", "1")


@dataclass(frozen=True)
class Attribute:
    """One ``@attribute`` line.

    Attributes:
        name: the attribute's name, unquoted.
        kind: ``"numeric"``, ``"nominal"``, or the unsupported type's keyword (``string``, ``date`` …).
        values: the declared values of a nominal attribute, in order.
        line: where it was declared (1-based).
    """

    name: str
    kind: str
    values: tuple[str, ...] = ()
    line: int = 0

    @property
    def binary(self) -> bool:
        """A nominal attribute whose values are exactly 0 and 1 (in either order)."""
        return self.kind == "nominal" and sorted(self.values) == list(BINARY)

    def signature(self) -> tuple:
        return self.name, self.kind, self.values


@dataclass(frozen=True)
class ArffHeader:
    """An ARFF file's header and where its ``@data`` section starts."""

    path: Path
    relation: str
    attributes: tuple[Attribute, ...]
    lines: list[str]
    data_start: int  # index into ``lines`` of the first line after @data

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.attributes]


def read_arff_header(path: str | os.PathLike) -> ArffHeader:
    """Parse the header of an ARFF file (everything up to ``@data``).

    Raises:
        DataError: the file is missing or unreadable, or a header line is malformed (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: ARFF file not found; pass the dataset's .arff file")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the ARFF file ({err})") from err
    relation, attributes = "", []
    for i, raw in enumerate(lines):
        s = raw.strip()
        if not s or s.startswith("%"):
            continue
        keyword = s.split(None, 1)[0].lower()
        if keyword == "@relation":
            relation = _unquote(s[len("@relation"):].strip())
        elif keyword == "@attribute":
            attributes.append(_attribute(s[len("@attribute"):].strip(), path, i + 1))
        elif keyword == "@data":
            if not attributes:
                raise DataError(f"{path}, line {i + 1}: @data before any @attribute; an ARFF file declares its "
                                f"attributes first")
            names = [a.name for a in attributes]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise DataError(f"{path}: attribute name(s) {dup} declared more than once; rename them")
            return ArffHeader(path, relation, tuple(attributes), lines, i + 1)
        else:
            raise DataError(f"{path}, line {i + 1}: expected @relation, @attribute or @data, got {s[:60]!r}")
    raise DataError(f"{path}: no @data line; is this an ARFF file?")


def _attribute(rest: str, path: Path, line: int) -> Attribute:
    """``name type`` of an ``@attribute`` line (the keyword already cut off)."""
    if rest[:1] in ("'", '"'):
        end = _closing_quote(rest, 0)
        if end < 0:
            raise DataError(f"{path}, line {line}: attribute name {rest!r} has no closing quote")
        name, kind = _unquote(rest[: end + 1]), rest[end + 1:].strip()
    else:
        match = re.match(r"([^\s{]+)\s*(.*)$", rest)
        if match is None:
            raise DataError(f"{path}, line {line}: @attribute needs a name and a type")
        name, kind = match.group(1), match.group(2).strip()
    if kind.startswith("{"):
        if not kind.endswith("}"):
            raise DataError(f"{path}, line {line}: nominal type of attribute {name!r} lacks its closing '}}'")
        values = tuple(_unquote(v) for v in _split(kind[1:-1]) if v.strip())
        return Attribute(name, "nominal", values, line)
    keyword = kind.split(None, 1)[0].lower() if kind else ""
    if keyword in NUMERIC_TYPES:
        return Attribute(name, "numeric", (), line)
    if keyword in ("string", "date", "relational"):
        return Attribute(name, keyword, (), line)
    raise DataError(f"{path}, line {line}: attribute {name!r} has type {kind!r}; expected numeric, real, integer "
                    f"or {{v1,v2,…}}")


def _closing_quote(text: str, start: int) -> int:
    """Index of the quote closing the one at ``start`` (backslash escapes skipped), or -1."""
    quote, i = text[start], start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i
        i += 1
    return -1


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in ("'", '"'):
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def _split(text: str) -> list[str]:
    """``text`` split on commas outside quotes (tokens keep their quotes)."""
    if "'" not in text and '"' not in text:
        return text.split(",")
    out, start, i = [], 0, 0
    while i < len(text):
        if text[i] in ("'", '"'):
            end = _closing_quote(text, i)
            i = len(text) if end < 0 else end + 1
            continue
        if text[i] == ",":
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def read_arff_data(header: ArffHeader) -> np.ndarray:
    """The ``@data`` rows of an ARFF file whose attributes are all numeric or nominal ``{0,1}``.

    Returns:
        (N, A) float64 values, one column per attribute (nominal ``{0,1}`` as 0/1).

    Raises:
        DataError: naming the file, line and attribute of a missing (``?``), non-numeric, non-finite
            or undeclared value, or a row of the wrong length.
    """
    path, attrs = header.path, header.attributes
    assert all(a.kind == "numeric" or a.binary for a in attrs), "check the attribute types before reading the data"
    nominal = [j for j, a in enumerate(attrs) if a.kind == "nominal"]
    default = np.array([float(a.values[0]) if a.kind == "nominal" else 0.0 for a in attrs])  # sparse rows' zeros
    rows, numbers = [], []
    for i in range(header.data_start, len(header.lines)):
        s = header.lines[i].strip()
        if not s or s.startswith("%"):
            continue
        where = f"{path}, line {i + 1}"
        rows.append(_sparse(s, attrs, default, where) if s.startswith("{") else _dense(s, attrs, nominal, where))
        numbers.append(i + 1)
    if not rows:
        raise DataError(f"{path}: no rows after @data; the dataset is empty")
    values = np.stack(rows)  # (N, A)
    bad = ~np.isfinite(values)
    if bad.any():
        r, j = (int(a[0]) for a in np.nonzero(bad))
        raise DataError(f"{path}, line {numbers[r]}: attribute {attrs[j].name!r} is {values[r, j]}; expected a "
                        f"finite number")
    return values


def _value(token: str, attr: Attribute, where: str) -> float:
    token = _unquote(token)
    if token == "?":
        raise DataError(f"{where}: attribute {attr.name!r} is missing ('?'); MULAN data has no missing values; "
                        f"fill it in or drop the row")
    if attr.kind == "nominal":
        if token not in attr.values:
            raise DataError(f"{where}: attribute {attr.name!r} is {token!r}; expected one of {list(attr.values)}")
        return float(token)
    try:
        return float(token)
    except ValueError:
        raise DataError(f"{where}: attribute {attr.name!r} is {token!r}; expected a number") from None


def _dense(s: str, attrs: tuple[Attribute, ...], nominal: list[int], where: str) -> np.ndarray:
    tokens = [t.strip() for t in _split(s)]
    if len(tokens) != len(attrs):
        raise DataError(f"{where}: {len(tokens)} values, expected one per attribute ({len(attrs)})")
    try:  # the common case: plain numbers and unquoted 0/1
        if all(tokens[j] in BINARY for j in nominal):
            return np.array([float(t) for t in tokens])
    except ValueError:
        pass
    return np.array([_value(t, a, where) for t, a in zip(tokens, attrs)])


def _sparse(s: str, attrs: tuple[Attribute, ...], default: np.ndarray, where: str) -> np.ndarray:
    if not s.endswith("}"):
        raise DataError(f"{where}: a sparse row starts with '{{' and must end with '}}'")
    row, seen = default.copy(), set()
    for item in _split(s[1:-1]):
        if not item.strip():
            continue
        parts = item.strip().split(None, 1)
        if len(parts) != 2 or not (parts[0].isascii() and parts[0].isdigit()):  # not "²", which int() refuses
            raise DataError(f"{where}: sparse entry {item.strip()!r} should be '<index> <value>'")
        j = int(parts[0])
        if j >= len(attrs):
            raise DataError(f"{where}: sparse index {j} is out of range; the file declares {len(attrs)} attributes")
        if j in seen:
            raise DataError(f"{where}: sparse index {j} appears twice")
        seen.add(j)
        row[j] = _value(parts[1], attrs[j], where)
    return row


def read_mulan_labels(xml: str | os.PathLike) -> list[str]:
    """The label names of a MULAN XML file: every ``label`` element (nested ones too), in document order.

    Raises:
        DataError: the file is missing or malformed, a label has no name, a name repeats or is reserved
            (``image_id``, ``path``, ``split``, ``feat_*``), or there is none.
    """
    xml = Path(xml)
    if not xml.is_file():
        raise DataError(f"{xml}: MULAN label XML not found; pass the dataset's .xml file")
    try:
        root = ET.parse(xml).getroot()
    # LookupError, ValueError: an encoding in the XML declaration that is unknown or that expat cannot decode
    except (ET.ParseError, LookupError, ValueError) as err:
        raise DataError(f"{xml}: not well-formed XML ({err})") from err
    elements = [e for e in root.iter() if isinstance(e.tag, str) and e.tag.rsplit("}", 1)[-1] == "label"]
    names = [e.get("name") for e in elements]
    if not names:
        raise DataError(f"{xml}: no <label name=…> elements; a MULAN label file lists one per label")
    unnamed = [i for i, n in enumerate(names, start=1) if n is None or not n.strip()]
    if unnamed:
        raise DataError(f"{xml}: label element {unnamed[0]} (in document order) has no name attribute; give every "
                        f"<label> a name=\"…\" that is an ARFF attribute")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{xml}: label name(s) {dup} appear more than once")
    check_label_names(tuple(names), str(xml))
    return names


@DATASETS.register("mulan", help="a MULAN feature dataset (yeast, emotions, …): ARFF file(s) + label XML")
def import_mulan(arff: str | os.PathLike, xml: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 test_arff: str | os.PathLike | None = None, test_fraction: float = 0.2, seed: int = 0,
                 name: str | None = None) -> LabelTable:
    """Import a MULAN dataset into a feature label table at ``out`` (default ``<arff dir>/labels.parquet``).

    Args:
        arff: the ARFF file (the train file of a train/test pair).
        xml: the MULAN label XML.
        out: where to write the Parquet label table.
        test_arff: the official test file; then the split is the official one (train rows, then test rows).
            Its attributes must equal ``arff``'s.
        test_fraction: test share of the seeded split drawn without ``test_arff``.
        seed: seed of that split.
        name: dataset name; defaults to ``arff``'s stem without a ``-train``/``_train`` suffix
            (``yeast-train.arff`` → ``yeast``). Items are named ``f"{name}_{row:05d}"``.

    Returns:
        The written label table: ``feat_0 … feat_{F-1}`` (the non-label attributes in file order), split, and
        the labels in XML order. ``source`` records the files, their hashes, the feature names and counts.

    Raises:
        DataError: naming the file(s), line and attribute of the first problem, and the fix. Nothing is
            written then.
    """
    from retdm.provenance import file_sha256

    arff, xml = Path(arff), Path(xml)
    out = Path(out) if out is not None else arff.parent / "labels.parquet"
    name = name or re.sub(r"[-_]train$", "", arff.stem)
    label_names = read_mulan_labels(xml)
    header = read_arff_header(arff)
    labels, features = _roles(header, label_names, xml)
    parts = [read_arff_data(header)]
    if test_arff is not None:
        test_header = read_arff_header(test_arff)
        _same_attributes(header, test_header)
        parts.append(read_arff_data(test_header))
    values = np.concatenate(parts)  # (N, A)
    n, n_train = len(values), len(parts[0])
    split = np.array(["train"] * n_train + ["test"] * (n - n_train), dtype=object) if test_arff is not None \
        else assign_split(n, test_fraction, seed)
    columns = {"image_id": [f"{name}_{row:05d}" for row in range(n)]}
    columns.update({f"{FEATURE_PREFIX}{i}": values[:, j].astype(np.float32) for i, j in enumerate(features)})
    columns["split"] = split
    frame = pd.DataFrame(columns)
    files = [arff] + ([Path(test_arff)] if test_arff is not None else [])
    source = {
        "importer": "mulan", "relation": header.relation, "arff": str(arff), "xml": str(xml),
        "test_arff": None if test_arff is None else str(test_arff),
        "sha256": {str(p): file_sha256(p) for p in [*files, xml]},
        "split": "official" if test_arff is not None else {"test_fraction": test_fraction, "seed": seed},
        "num_train": int((split == "train").sum()), "num_test": int((split == "test").sum()),
        "num_features": len(features), "num_labels": len(label_names),
        "feature_names": [header.attributes[j].name for j in features],
    }
    return write_imported(out, name, tuple(label_names), frame, values[:, labels].astype(np.uint8), source)


def _roles(header: ArffHeader, label_names: list[str], xml: Path) -> tuple[list[int], list[int]]:
    """Attribute indices of the labels (XML order) and of the features (file order), with their types checked."""
    path, index = header.path, {a.name: j for j, a in enumerate(header.attributes)}
    missing = [n for n in label_names if n not in index]
    if missing:
        raise DataError(
            f"{xml} names {len(missing)} label(s) that {path} does not declare as attributes: {missing[:10]}"
            f"{' …' if len(missing) > 10 else ''}; use the XML that ships with this ARFF (same MULAN dataset) or "
            f"fix the names so each XML label is an @attribute of the ARFF")
    labels = [index[n] for n in label_names]
    for j in labels:
        a = header.attributes[j]
        if not a.binary:
            declared = f"{{{','.join(a.values)}}}" if a.kind == "nominal" else a.kind
            raise DataError(f"{path}, line {a.line}: label attribute {a.name!r} (named in {xml}) is {declared}; "
                            f"a label must be nominal {{0,1}}; fix its @attribute line or drop it from {xml}")
    features = [j for j in range(len(header.attributes)) if j not in set(labels)]
    if not features:
        raise DataError(f"{path}: every attribute is a label in {xml}; a MULAN dataset needs feature attributes too")
    for j in features:
        a = header.attributes[j]
        if not (a.kind == "numeric" or a.binary):
            what = f"nominal {{{','.join(a.values)}}}" if a.kind == "nominal" else a.kind
            raise DataError(f"{path}, line {a.line}: feature attribute {a.name!r} is {what}; features must be "
                            f"numeric or nominal {{0,1}}: encode it (e.g. one 0/1 attribute per value) first")
    return labels, features


def _same_attributes(train: ArffHeader, test: ArffHeader) -> None:
    """Refuse a test file whose attributes (names, types, nominal values, order) differ from the train file's."""
    a, b = [x.signature() for x in train.attributes], [x.signature() for x in test.attributes]
    if a == b:
        return
    only_train = [s[0] for s in a if s[0] not in {t[0] for t in b}]
    only_test = [s[0] for s in b if s[0] not in {t[0] for t in a}]
    differ = [s[0] for s, t in zip(a, b) if s != t and s[0] == t[0]]
    detail = (f"only in the train file {only_train[:10]}, only in the test file {only_test[:10]}"
              if only_train or only_test else
              f"differently typed: {differ[:10]}" if differ else "the same attributes in another order")
    raise DataError(f"{test.path}: its {len(b)} attributes differ from the {len(a)} of {train.path} ({detail}); "
                    f"a MULAN train/test pair declares the same attributes: use the matching pair of files")
