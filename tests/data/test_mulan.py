"""The ``mulan`` importer: our ARFF reader (dense, sparse, quoted names), the label XML, and its errors."""

import json

import numpy as np
import pytest

from retdm.data.mulan import import_mulan, read_arff_data, read_arff_header, read_mulan_labels
from retdm.data.registry import DATASETS
from retdm.data.table import read_label_table
from retdm.errors import DataError

XML = """<?xml version="1.0" encoding="utf-8"?>
<labels xmlns="http://mulan.sourceforge.net/labels">
<label name="{a}"></label>
<label name="{b}"></label>
</labels>
"""

DENSE = """% a comment
@relation 'tiny: -C 2'

@attribute f1 numeric
@attribute 'big size' REAL
@attribute flag {0,1}
@attribute sky {0,1}
@attribute "sea side" {0,1}

@data
% rows
1.5,2,1,0,1
-3,0.25,0,1,1

7e-1,1e3,1,0,0
"""

SPARSE = """@relation sparse
@attribute w0 numeric
@attribute w1 numeric
@attribute 'w two' {0,1}
@attribute sky {0,1}
@attribute 'sea side' {0,1}
@data
{0 1.5,4 1}
{}
{1 -2,2 1,3 1, 4 1}
{3 '1'}
"""


def files(tmp_path, arff_text, a="sky", b="sea side", name="tiny"):
    arff, xml = tmp_path / f"{name}.arff", tmp_path / f"{name}.xml"
    arff.write_text(arff_text)
    xml.write_text(XML.format(a=a, b=b))
    return arff, xml


def test_dense_rows_quoted_names_and_xml_order(tmp_path):
    arff, xml = files(tmp_path, DENSE)
    table = import_mulan(arff, xml, tmp_path / "out" / "labels.parquet", test_fraction=0.34, seed=0)
    back = read_label_table(tmp_path / "out" / "labels.parquet")
    assert back.label_names == ("sky", "sea side") and back.name == "tiny" == table.name
    assert not back.has_images and back.feature_columns == ["feat_0", "feat_1", "feat_2"]
    feats = back.frame[back.feature_columns].to_numpy()
    assert feats.dtype == np.float32
    np.testing.assert_array_equal(feats, np.array([[1.5, 2, 1], [-3, 0.25, 0], [0.7, 1000, 1]], np.float32))
    assert back.labels().tolist() == [[0, 1], [1, 1], [0, 0]]
    assert back.frame["image_id"].tolist() == ["tiny_00000", "tiny_00001", "tiny_00002"]
    assert (back.frame["split"] == "test").sum() == 1
    source = json.loads(back.source)
    assert source["feature_names"] == ["f1", "big size", "flag"] and source["num_features"] == 3
    assert source["num_labels"] == 2 and source["relation"] == "tiny: -C 2"
    assert source["split"] == {"test_fraction": 0.34, "seed": 0} and str(arff) in source["sha256"]


def test_sparse_rows_absent_values_are_zero(tmp_path):
    arff, xml = files(tmp_path, SPARSE)
    table = import_mulan(arff, xml, tmp_path / "t.parquet")
    feats = table.frame[table.feature_columns].to_numpy()
    np.testing.assert_array_equal(feats, np.array([[1.5, 0, 0], [0, 0, 0], [0, -2, 1], [0, 0, 0]], np.float32))
    assert table.labels().tolist() == [[0, 1], [0, 0], [1, 1], [1, 0]]


def test_sparse_absent_nominal_takes_its_first_declared_value(tmp_path):
    arff = tmp_path / "x.arff"
    arff.write_text("@relation x\n@attribute a numeric\n@attribute b {1,0}\n@data\n{0 2}\n{1 0}\n")
    header = read_arff_header(arff)
    np.testing.assert_array_equal(read_arff_data(header), [[2, 1], [0, 0]])  # Weka's rule: absent = index 0


def test_official_train_test_pair_keeps_its_split_and_names(tmp_path):
    arff, xml = files(tmp_path, DENSE, name="tiny-train")
    test = tmp_path / "tiny-test.arff"
    test.write_text(DENSE.split("@data")[0] + "@data\n{0 4,3 1}\n9,9,0,0,0\n")
    table = import_mulan(arff, xml, tmp_path / "t.parquet", test_arff=test)
    assert table.name == "tiny"
    assert table.frame["split"].tolist() == ["train"] * 3 + ["test"] * 2
    assert table.frame["image_id"].tolist()[-2:] == ["tiny_00003", "tiny_00004"]
    np.testing.assert_array_equal(table.frame["feat_0"].to_numpy()[-2:], [4, 9])
    assert table.labels()[-2:].tolist() == [[1, 0], [0, 0]]
    assert json.loads(table.source)["split"] == "official"


def test_hierarchical_xml_takes_every_label_in_document_order(tmp_path):
    xml = tmp_path / "h.xml"
    xml.write_text('<labels xmlns="http://mulan.sourceforge.net/labels"><label name="A"><label name="A.1"/>'
                   '<label name="A.2"><label name="A.2.x"/></label></label><label name="B"></label></labels>')
    assert read_mulan_labels(xml) == ["A", "A.1", "A.2", "A.2.x", "B"]


def test_registered_as_mulan():
    assert DATASETS.get("mulan") is import_mulan and "ARFF" in DATASETS.help("mulan")


def replace(text, old, new):
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize("arff_text, labels, match", [
    (DENSE, ("sky", "rain"), r"tiny\.xml names 1 label\(s\) that .*tiny\.arff does not declare.*\['rain'\]; use the "
                             r"XML that ships with this ARFF"),
    (replace(DENSE, "@attribute sky {0,1}", "@attribute sky numeric"), ("sky", "sea side"),
     r"tiny\.arff, line 7: label attribute 'sky' \(named in .*tiny\.xml\) is numeric; a label must be nominal"),
    (replace(DENSE, "@attribute sky {0,1}", "@attribute sky {0,1,2}"), ("sky", "sea side"),
     r"label attribute 'sky' .* is \{0,1,2\}"),
    (replace(DENSE, "@attribute flag {0,1}", "@attribute flag {red,blue}"), ("sky", "sea side"),
     r"line 6: feature attribute 'flag' is nominal \{red,blue\}; features must be numeric or nominal \{0,1\}"),
    (replace(DENSE, "@attribute f1 numeric", "@attribute f1 string"), ("sky", "sea side"),
     r"feature attribute 'f1' is string"),
    (replace(DENSE, "-3,0.25", "-3,?"), ("sky", "sea side"), r"tiny\.arff, line 13: attribute 'big size' is missing"),
    (replace(SPARSE, "{1 -2,", "{1 ?,"), ("sky", "sea side"), r"tiny\.arff, line 10: attribute 'w1' is missing"),
    (replace(DENSE, "-3,0.25,0,1,1", "-3,0.25,0,1"), ("sky", "sea side"), r"line 13: 4 values, expected .* \(5\)"),
    (replace(DENSE, "-3,0.25,0,1,1", "-3,0.25,0,2,1"), ("sky", "sea side"),
     r"line 13: attribute 'sky' is '2'; expected one of \['0', '1'\]"),
    (replace(DENSE, "-3,0.25", "-3,abc"), ("sky", "sea side"), r"line 13: attribute 'big size' is 'abc'; expected a "
                                                               r"number"),
    (replace(DENSE, "-3,0.25", "-3,inf"), ("sky", "sea side"), r"line 13: attribute 'big size' is inf; expected a "
                                                               r"finite number"),
    (replace(SPARSE, "{0 1.5,", "{9 1.5,"), ("sky", "sea side"), r"line 8: sparse index 9 is out of range"),
    (replace(DENSE, "@attribute f1 numeric", "@attribute f1 numeric\n@attribute f1 numeric"), ("sky", "sea side"),
     r"\['f1'\] declared more than once"),
    (DENSE.split("@data")[0], ("sky", "sea side"), "no @data line"),
    (replace(DENSE, "@attribute f1 numeric", "@atribute f1 numeric"), ("sky", "sea side"),
     r"line 4: expected @relation, @attribute or @data"),
])
def test_bad_input_names_file_line_and_writes_nothing(tmp_path, arff_text, labels, match):
    arff, xml = files(tmp_path, arff_text, *labels)
    out = tmp_path / "out" / "labels.parquet"
    with pytest.raises(DataError, match=match):
        import_mulan(arff, xml, out)
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_mismatched_train_and_test_attributes(tmp_path):
    arff, xml = files(tmp_path, DENSE)
    test = tmp_path / "tiny-test.arff"
    test.write_text(replace(DENSE, "@attribute 'big size' REAL", "@attribute size REAL"))
    out = tmp_path / "t.parquet"
    with pytest.raises(DataError, match=r"tiny-test\.arff: its 5 attributes differ from the 5 of .*tiny\.arff "
                                        r"\(only in the train file \['big size'\], only in the test file \['size'\]\)"):
        import_mulan(arff, xml, out, test_arff=test)
    test.write_text(replace(DENSE, "@attribute flag {0,1}", "@attribute flag numeric"))
    with pytest.raises(DataError, match=r"differently typed: \['flag'\]"):
        import_mulan(arff, xml, out, test_arff=test)
    assert not out.exists()


@pytest.mark.parametrize("xml_text, match", [
    ("<labels><label/></labels>", "label element 1 .* has no name"),
    ('<labels><label name="a"/><label name="a"/></labels>', r"\['a'\] appear more than once"),
    ("<labels></labels>", "no <label name"),
    ("<labels><label name='a'></labels>", "not well-formed XML"),
])
def test_bad_label_xml(tmp_path, xml_text, match):
    xml = tmp_path / "l.xml"
    xml.write_text(xml_text)
    with pytest.raises(DataError, match=match):
        read_mulan_labels(xml)


def test_missing_files_are_named(tmp_path):
    arff, xml = files(tmp_path, DENSE)
    with pytest.raises(DataError, match=r"nope\.arff: ARFF file not found"):
        import_mulan(tmp_path / "nope.arff", xml)
    with pytest.raises(DataError, match=r"nope\.xml: MULAN label XML not found"):
        import_mulan(arff, tmp_path / "nope.xml")


def test_the_validate_suite_accepts_a_feature_table_and_flags_non_finite_features(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.label_checks import check_label_table

    rows = "".join(f"{i * 0.5},{i % 3},{i % 2},{int(i % 4 == 0)}\n" for i in range(40))
    arff, xml = files(tmp_path, "@relation r\n@attribute x numeric\n@attribute y numeric\n@attribute sky {0,1}\n"
                                "@attribute 'sea side' {0,1}\n@data\n" + rows)
    good = tmp_path / "good.parquet"
    table = import_mulan(arff, xml, good, test_fraction=0.2)
    report = check_label_table(good, tmp_path, list(table.label_names), test_fraction=0.2)
    assert report.success, report.message()
    arrow = pq.read_table(good)
    frame = arrow.to_pandas()
    frame.loc[3, "feat_1"] = np.nan
    bad = tmp_path / "bad.parquet"
    meta = arrow.schema.metadata
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(meta), bad)
    report = check_label_table(bad, tmp_path, list(table.label_names), test_fraction=0.2)
    assert not report.success
    assert [f.column for f in report.failures] == ["feat_*"]
    assert report.failures[0].examples == ["feat_1"] and "image_id 'tiny_00003'" in report.failures[0].detail
