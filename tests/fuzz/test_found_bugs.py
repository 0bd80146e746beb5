"""The bugs the fuzz tests found, each pinned as a plain example (each raised another exception,
named the wrong file, spread its message over several lines, or left files behind)."""

import io
import re
import tarfile
import zipfile
from pathlib import Path

import click
import numpy as np
import pytest
import yaml
from official_layouts import make_mirflickr, make_nuswide, make_scene

from pipelines.params import load_params
from retdm.cli import parse_overrides, resolve_config
from retdm.config import load_config
from retdm.data.archives import safe_extract
from retdm.data.folder import import_folder
from retdm.data.mirflickr import import_mirflickr
from retdm.data.mulan import import_mulan
from retdm.data.nuswide import import_nuswide
from retdm.data.scene import import_scene
from retdm.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]


def _folder(tmp_path, body: str, **options):
    (tmp_path / "imgs").mkdir()
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "imgs" / name).write_bytes(b"jpg")
    csv = tmp_path / "labels.csv"
    csv.write_text(body)
    return lambda: import_folder(tmp_path / "imgs", csv, tmp_path / "out" / "labels.parquet", **options), csv


# --- the folder importer's CSV -----------------------------------------------------------------------

@pytest.mark.parametrize("body, match", [
    ("image,sky\na.jpg,1\nb.jpg,0\na.jpg,0\n", r"labels.csv, lines \[2, 4\]: image 'a.jpg' is listed more than once"),
    ("image,path\na.jpg,1\n", r"labels.csv: label names \['path'\] clash with reserved columns"),
    ("image,labels\na.jpg,split\n", r"labels.csv: label names \['split'\] clash"),
    ("image,labels\na.jpg,\n", r"labels.csv: the 'labels' column names no label at all"),
])
def test_csv_errors_name_the_csv_not_the_table_being_written(tmp_path, body, match):
    run, _ = _folder(tmp_path, body)
    with pytest.raises(DataError, match=match):
        run()
    assert not (tmp_path / "out").exists()


def test_empty_separator_is_a_config_error(tmp_path):
    run, _ = _folder(tmp_path, "image,labels\na.jpg,sky\n", separator="")
    with pytest.raises(ConfigError, match="separator must be a non-empty string"):
        run()  # was ValueError: empty separator


@pytest.mark.parametrize("body", ["image,sky\na.jpg,1\nb.jpg,1,2\n", 'image,sky\n"a\n.jpg",1\n'])
def test_csv_messages_are_one_line(tmp_path, body):
    run, csv = _folder(tmp_path, body)
    with pytest.raises(DataError) as err:
        run()  # pandas ends its message with a newline; an image name may hold one
    assert str(csv) in str(err.value) and "\n" not in str(err.value)


# --- MULAN -------------------------------------------------------------------------------------------

ARFF = "@relation r\n@attribute f numeric\n@attribute sky {0,1}\n@data\n{BODY}\n"
XML = '<?xml version="1.0" encoding="{ENC}"?>\n<labels><label name="{NAME}"></label></labels>\n'


@pytest.mark.parametrize("body, enc, name, match", [
    ("{0 1.5,1 1}", "tf-8", "sky", r"set.xml: not well-formed XML \(unknown encoding"),  # was LookupError
    ("{0 1.5,1 1}", "shift_jis", "sky", r"set.xml: not well-formed XML \(multi-byte"),  # was ValueError
    ("{5² 1.5}", "utf-8", "sky", r"set.arff, line 5: sparse entry '5² 1.5' should be"),  # was ValueError from int()
    ("1.5,1", "utf-8", "split", r"set.xml: label names \['split'\] clash"),  # named the table being written
])
def test_mulan_bad_files_raise_data_errors(tmp_path, body, enc, name, match):
    arff, xml = tmp_path / "set.arff", tmp_path / "set.xml"
    arff.write_text(ARFF.replace("sky", name).replace("{BODY}", body))
    xml.write_text(XML.replace("{ENC}", enc).replace("{NAME}", name))
    with pytest.raises(DataError, match=match):
        import_mulan(arff, xml, tmp_path / "out" / "labels.parquet")


# --- official layouts --------------------------------------------------------------------------------

def test_nuswide_non_utf8_list_and_reserved_concept(tmp_path):
    root = make_nuswide(tmp_path / "a", ["sky"], [("actor/1.jpg", {"sky"})], [("actor/2.jpg", set())])
    (root / "ImageList" / "TrainImagelist.txt").write_bytes(b"\x80actor\\1.jpg\r\n")
    with pytest.raises(DataError, match=r"TrainImagelist.txt: cannot be read as UTF-8 text"):
        import_nuswide(root, tmp_path / "out" / "labels.parquet")  # was UnicodeDecodeError
    root = make_nuswide(tmp_path / "b", ["split"], [("actor/1.jpg", {"split"})], [("actor/2.jpg", set())])
    with pytest.raises(DataError, match=r"TrainTestLabels: label names \['split'\] clash"):
        import_nuswide(root, tmp_path / "out" / "labels.parquet")  # named the table being written


def test_mirflickr_odd_digits(tmp_path):
    root = make_mirflickr(tmp_path / "m", 2, {"sky": [1]})
    (root / "mirflickr25k_annotations_v080" / "sky.txt").write_text("1\n²\n")
    with pytest.raises(DataError, match=r"sky.txt, line 2: expected an image number, got '²'"):
        import_mirflickr(root, tmp_path / "out" / "labels.parquet")  # was ValueError from int()
    (root / "mirflickr25k_annotations_v080" / "sky.txt").write_text("1\n")
    (root / "mirflickr" / "im٣.jpg").write_bytes(b"jpg")  # an Arabic-Indic 3: \d matched it, int() read it as 3
    table = import_mirflickr(root, tmp_path / "out" / "labels.parquet")
    assert table.frame["image_id"].tolist() == ["im1", "im2"]


def test_scene_csv_odd_digit(tmp_path):
    root = make_scene(tmp_path / "s", np.ones((5, 1)), mat=False, csv=True)
    (root / "data.csv").write_text("image,desert,mountains,sea,sunset,trees\n².jpg,1,1,1,1,1\n")
    with pytest.raises(DataError, match=r"data.csv, line 2: image '².jpg' is not of the form <number>.jpg"):
        import_scene(root, tmp_path / "out" / "labels.parquet")  # was ValueError from int()


@pytest.mark.parametrize("damage", [lambda blob: b"", lambda blob: blob[:128] + bytes([blob[128] ^ 0x40]) + blob[129:]])
def test_scene_damaged_mat(tmp_path, damage):
    root = make_scene(tmp_path / "s", np.ones((5, 2)))
    mat = root / "processed" / "miml data.mat"
    mat.write_bytes(damage(mat.read_bytes()))  # empty: MatReadError; the first tag not miMATRIX: TypeError
    with pytest.raises(DataError, match=r"miml data.mat: not a readable MATLAB file"):
        import_scene(root, tmp_path / "out" / "labels.parquet")


# --- --set and params.yaml ---------------------------------------------------------------------------

def test_set_value_that_is_not_yaml():
    with pytest.raises(click.BadParameter, match=r"'loss.alpha=\[': the value is not valid YAML \(.* at line 1"):
        parse_overrides(("loss.alpha=[",))  # was yaml.parser.ParserError


def test_set_key_with_a_control_character_is_named_escaped():
    """make fuzz's case: the message names the key as repr writes it (the test used to look for it raw)."""
    with pytest.raises(ConfigError, match=re.escape(r"unknown config key(s) ['data.image_size\x1b']")):
        resolve_config("cpu", ("data.image_size\x1b=",), None)


def test_set_mapping_with_mixed_keys_and_a_profile_that_is_not_a_name():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['data.1', 'data.a'\]"):
        load_config("cpu", {"data": {1: 2, "a": 3}})  # was TypeError from sorted([1, 'a'])
    with pytest.raises(ConfigError, match="unknown profile"):
        load_config(["cpu"])  # a list from params.yaml; was TypeError: unhashable type


@pytest.mark.parametrize("edit, match", [
    (lambda text, tree: "profile: [cpu\n", r"params.yaml: not valid YAML \(.* at line 2"),
    (lambda text, tree: "- a list\n", r"params.yaml: expected a mapping of keys"),
    (lambda text, tree: {**tree, "train": [1]}, r"params.yaml: train must be a mapping"),
    (lambda text, tree: {**tree, "methods": {**tree["methods"], "bce": [1]}}, r"params.yaml: methods.bce must be a"),
    (lambda text, tree: {**tree, "sweep": {**tree["sweep"], "datasets": [{"a": 1}]}},
     r"params.yaml: sweep.datasets must list names"),
    (lambda text, tree: {**tree, "retdm_variants": ["retdm", 1]}, r"params.yaml: retdm_variants must list names"),
    (lambda text, tree: {**tree, "methods": {**tree["methods"], "nope": {}}},
     r"params.yaml: methods \['nope'\] are not registered"),  # was UnknownNameError, which stages let through
    (lambda text, tree: {**tree, "profile": None}, r"params.yaml: profile is None; valid profiles are"),  # no file
    (lambda text, tree: {**tree, "distributed": {0: 1, "nnodes": 1}}, r"params.yaml: distributed must have exactly"),
    (lambda text, tree: {**tree, "seeds": [[]]}, r"params.yaml: seeds is \[\[\]\]; expected a list of distinct"),  # TypeError
])
def test_params_yaml_errors_name_the_file(tmp_path, edit, match):
    text = (REPO / "params.yaml").read_text()
    new = edit(text, yaml.safe_load(text))
    path = tmp_path / "params.yaml"
    path.write_text(new if isinstance(new, str) else yaml.safe_dump(new))
    with pytest.raises(ConfigError, match=match):
        load_params(path)


# --- archives ----------------------------------------------------------------------------------------

def _tar(path: Path, *members: tuple[str, bytes, str]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            tf.addfile(info, io.BytesIO(b""))
    return path


@pytest.mark.parametrize("members, match", [
    ([("a", tarfile.LNKTYPE, "b")], r"entry 'a' is a hard link to 'b', which is not a file stored before it"),  # KeyError
    ([("", tarfile.SYMTYPE, ".")], r"entry '' is a file or link named like the target folder"),  # RecursionError
])
def test_tar_links_tarfile_cannot_extract(tmp_path, members, match):
    with pytest.raises(DataError, match=match):
        safe_extract(_tar(tmp_path / "x.tar", *members), tmp_path / "target")
    assert list((tmp_path / "target").iterdir()) == []


def test_damaged_archives(tmp_path):
    gz = tmp_path / "x.tar.gz"
    with tarfile.open(gz, "w:gz") as tf:
        tf.addfile(tarfile.TarInfo("a"), io.BytesIO(b""))
    gz.write_bytes(gz.read_bytes()[:12])
    with pytest.raises(DataError, match="x.tar.gz: cannot be read as a compressed tar"):
        safe_extract(gz, tmp_path / "t1")  # was EOFError from tarfile.is_tarfile
    for flag, match in ((0x01, "encrypted"), (0x00, "compression method")):  # RuntimeError, NotImplementedError
        z = tmp_path / "x.zip"
        with zipfile.ZipFile(z, "w") as zf:
            zf.writestr("a", b"data")
        blob = bytearray(z.read_bytes())
        for header, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # the local and the central header
            start = blob.find(header) + at
            if flag:
                blob[start] |= flag  # general-purpose flag: encrypted
            else:
                blob[start + 2] = 99  # compression method 99 (AES), which zipfile does not read
        z.write_bytes(bytes(blob))
        with pytest.raises(DataError, match=f"x.zip: cannot be extracted.*{match}"):
            safe_extract(z, tmp_path / "t2")


def test_zip_symlink_target_not_utf8(tmp_path):
    z = tmp_path / "x.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, b"\xff\xfe")
    with pytest.raises(DataError, match="entry 'link' is a symlink whose target is not UTF-8"):
        safe_extract(z, tmp_path / "target")  # was UnicodeDecodeError


def test_zip_local_header_name_not_utf8(tmp_path):
    """The fuzzer's case: the central directory is intact, the local header's name (flagged UTF-8) is not."""
    z = tmp_path / "x.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("é/a", b"x")  # a non-ASCII name: zipfile sets the UTF-8 flag
    blob = z.read_bytes()
    z.write_bytes(blob.replace("é/a".encode(), b"\x80\xa9/a", 1))  # the first occurrence: the local header
    with pytest.raises(DataError, match="x.zip: cannot be extracted.*UnicodeDecodeError"):
        safe_extract(z, tmp_path / "target")  # was UnicodeDecodeError
    assert not any((tmp_path / "target").rglob("*"))


def test_a_clash_moves_nothing_into_the_target(tmp_path):
    z = tmp_path / "x.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a", b"new")
        zf.writestr("b/c", b"x")
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "b").write_bytes(b"a file where the archive has a folder")
    with pytest.raises(DataError, match="holds 'b' as a folder"):
        safe_extract(z, tmp_path / "target")
    assert sorted(p.name for p in (tmp_path / "target").iterdir()) == ["b"]  # 'a' used to be moved in already
