"""The download layer against a real HTTP server on 127.0.0.1 (no internet): fetch, resume, verify, extract."""

import hashlib
import io
import socket
import tarfile
import zipfile
from pathlib import Path

import pytest

from retdm.data.archives import is_extracted, safe_extract
from retdm.data.download import fetch, missing_layout, obtain
from retdm.data.sources import SOURCES, DatasetSource, SourceFile, describe
from retdm.errors import DataError
from tests.http_server import server  # noqa: F401 (a fixture)

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_zip(path: Path, files: dict[str, bytes], links: dict[str, str] = {}) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in links.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return path


def make_tar(path: Path, files: dict[str, bytes], mode: str = "w", links: dict[str, tuple[bytes, str]] = {}) -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, (kind, target) in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
    return path


def everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ---- fetch -------------------------------------------------------------------------------------------------


def test_fetch_downloads_and_verifies(server, tmp_path):
    (server.root / "a.bin").write_bytes(PAYLOAD)
    out = fetch(f"{server.url}/a.bin", tmp_path / "dl" / "a.bin", md5=md5(PAYLOAD), size=len(PAYLOAD), progress=False)
    assert out.read_bytes() == PAYLOAD and not out.with_name("a.bin.part").exists()
    fetch(f"{server.url}/a.bin", out, md5=md5(PAYLOAD), progress=False)  # present and valid: no second request
    assert server.log == [("/a.bin", None, len(PAYLOAD))]


def test_fetch_resumes_a_partial_download(server, tmp_path):
    (server.root / "a.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:30_000])
    fetch(f"{server.url}/a.bin", dest, md5=md5(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.log == [("/a.bin", "bytes=30000-", len(PAYLOAD) - 30_000)]


def test_fetch_restarts_when_the_server_ignores_range(server, tmp_path):
    (server.root / "a.bin").write_bytes(PAYLOAD)
    server.ignore_range = True
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(b"\xff" * 30_000)  # appending to this would fail the md5
    fetch(f"{server.url}/a.bin", dest, md5=md5(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.log == [("/a.bin", "bytes=30000-", len(PAYLOAD))]


def test_fetch_checksum_mismatch_keeps_the_bad_copy(server, tmp_path):
    (server.root / "a.bin").write_bytes(PAYLOAD)
    dest, wrong = tmp_path / "a.bin", "0" * 32
    with pytest.raises(DataError) as err:
        fetch(f"{server.url}/a.bin", dest, md5=wrong, progress=False)
    msg = str(err.value)
    assert str(dest) in msg and wrong in msg and md5(PAYLOAD) in msg and f"{dest}.bad" in msg
    assert not dest.exists() and (tmp_path / "a.bin.bad").read_bytes() == PAYLOAD
    with pytest.raises(DataError, match=r"a\.bin\.bad\.1"):
        fetch(f"{server.url}/a.bin", dest, md5=wrong, progress=False)
    assert (tmp_path / "a.bin.bad.1").is_file() and (tmp_path / "a.bin.bad").is_file()


def test_fetch_sets_a_wrong_present_file_aside_and_downloads_again(server, tmp_path):
    (server.root / "a.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"not it")
    fetch(f"{server.url}/a.bin", dest, md5=md5(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD and (tmp_path / "a.bin.bad").read_bytes() == b"not it"


def test_fetch_unreachable_says_what_to_place(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/a.bin"
    with pytest.raises(DataError, match="could not download") as err:
        fetch(url, tmp_path / "a.bin", md5="ab" * 16, progress=False, timeout=5)
    assert f"{tmp_path / 'a.bin'} (md5 {'ab' * 16}, from {url})" in str(err.value)


def test_fetch_http_error_is_reported(server, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        fetch(f"{server.url}/missing.bin", tmp_path / "m.bin", progress=False)


# ---- safe_extract ------------------------------------------------------------------------------------------

EVIL_ZIPS = {
    "dotdot": ({"ok.txt": b"x", "../evil": b"x"}, {}),
    "absolute": ({"ok.txt": b"x", "/tmp/evil": b"x"}, {}),
    "symlink": ({"ok.txt": b"x"}, {"evil": "../../outside"}),
}
EVIL_TARS = {
    "dotdot": ({"ok.txt": b"x", "sub/../../evil": b"x"}, {}),
    "absolute": ({"ok.txt": b"x", "/tmp/evil": b"x"}, {}),
    "symlink": ({"ok.txt": b"x"}, {"evil": (tarfile.SYMTYPE, "../outside")}),
    "hardlink": ({"ok.txt": b"x"}, {"evil": (tarfile.LNKTYPE, "../../etc/passwd")}),
}


@pytest.mark.parametrize("case", sorted(EVIL_ZIPS))
def test_zip_escaping_entries_are_rejected_before_writing(case, tmp_path):
    files, links = EVIL_ZIPS[case]
    archive = make_zip(tmp_path / "evil.zip", files, links)
    target = tmp_path / "out"
    with pytest.raises(DataError, match="evil") as err:
        safe_extract(archive, target)
    assert str(archive) in str(err.value) and "nothing was extracted" in str(err.value)
    assert everything(target) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip", "out"]


@pytest.mark.parametrize("case", sorted(EVIL_TARS))
def test_tar_escaping_entries_are_rejected_before_writing(case, tmp_path):
    files, links = EVIL_TARS[case]
    archive = make_tar(tmp_path / "evil.tar", files, links=links)
    target = tmp_path / "out"
    with pytest.raises(DataError, match="evil") as err:
        safe_extract(archive, target)
    assert str(archive) in str(err.value)
    assert everything(target) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar", "out"]


def test_symlink_through_another_symlink_is_caught(tmp_path):
    # Each link looks inside on its own; together a/.. climbs out. Caught after extraction, before the move.
    archive = make_zip(tmp_path / "sneaky.zip", {"ok.txt": b"x"}, {"d/b": "..", "a": "d/b/.."})
    with pytest.raises(DataError, match="symlink"):
        safe_extract(archive, tmp_path / "out")
    assert everything(tmp_path / "out") == []


@pytest.mark.parametrize("mode,suffix", [("w", ".tar"), ("w:gz", ".tar.gz"), ("w:bz2", ".tar.bz2"),
                                         ("w:xz", ".tar.xz")])
def test_tar_flavours_extract_and_merge(mode, suffix, tmp_path):
    target = tmp_path / "out"
    make_tar(tmp_path / f"a{suffix}", {"top/a.txt": b"a", "top/sub/x.txt": b"x"}, mode,
             links={"top/link": (tarfile.SYMTYPE, "a.txt")})
    make_tar(tmp_path / f"b{suffix}", {"top/b.txt": b"b", "top/sub/x.txt": b"x2"}, mode)
    safe_extract(tmp_path / f"a{suffix}", target)
    safe_extract(tmp_path / f"b{suffix}", target)  # shares top/ with the first: merged, like VOC trainval + test
    assert everything(target / "top") == ["a.txt", "b.txt", "link", "sub", "sub/x.txt"]
    assert (target / "top/link").read_bytes() == b"a" and (target / "top/sub/x.txt").read_bytes() == b"x2"
    assert is_extracted(f"a{suffix}", target) and is_extracted(f"b{suffix}", target)
    assert [p.name for p in tmp_path.iterdir() if "retdm-extract" in p.name] == []


def test_into_folder_only_when_the_archive_lacks_it(tmp_path):
    flat = make_zip(tmp_path / "flat.zip", {"animals.txt": b"1\n", "README.txt": b"r"})
    nested = make_zip(tmp_path / "nested.zip", {"ann/x.txt": b"2\n"})
    safe_extract(flat, tmp_path / "out", into="ann")
    safe_extract(nested, tmp_path / "out", into="ann")
    assert everything(tmp_path / "out" / "ann") == ["README.txt", "animals.txt", "x.txt"]


def test_rerun_is_skipped_by_the_marker(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"top/a.txt": b"original"})
    target = tmp_path / "out"
    safe_extract(archive, target, checksum="md5:abc")
    assert (target / ".retdm-extracted-a.zip").read_text().strip() == "md5:abc"
    (target / "top/a.txt").write_bytes(b"edited")
    safe_extract(archive, target, checksum="md5:abc")
    assert (target / "top/a.txt").read_bytes() == b"edited"
    safe_extract(archive, target, checksum="md5:other")  # a different archive under the same name: redone
    assert (target / "top/a.txt").read_bytes() == b"original"


def test_damaged_archive_leaves_nothing(tmp_path):
    good = make_tar(tmp_path / "good.tar.gz", {f"top/{i}.bin": PAYLOAD for i in range(3)}, "w:gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="damaged or truncated"):
        safe_extract(tmp_path / "cut.tar.gz", tmp_path / "out")
    assert everything(tmp_path / "out") == []
    assert [p.name for p in tmp_path.iterdir() if "retdm-extract" in p.name] == []


def test_rar_without_a_tool_says_extract_by_hand(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    (tmp_path / "x.rar").write_bytes(b"Rar!\x1a\x07\x00" + b"\x00" * 32)
    with pytest.raises(DataError, match="none of unrar, 7z, bsdtar"):
        safe_extract(tmp_path / "x.rar", tmp_path / "out")


# ---- obtain ------------------------------------------------------------------------------------------------


@pytest.fixture
def toy(server, monkeypatch):
    """A two-archive dataset served from 127.0.0.1, registered in SOURCES as 'toy'."""
    images = make_zip(server.root / "images.zip", {f"images/{i}.jpg": bytes([i]) * 100 for i in range(3)})
    labels = make_tar(server.root / "labels.tar.gz", {"labels.txt": b"0 1\n"}, "w:gz")
    source = DatasetSource(
        "toy", "a toy", "http://example.invalid", "CC0", layout=("images/*.jpg", "meta/labels.txt"),
        files=(SourceFile(f"{server.url}/images.zip", "images.zip", md5(images.read_bytes()), extracts_to=("images",)),
               SourceFile(f"{server.url}/labels.tar.gz", "labels.tar.gz", md5(labels.read_bytes()),
                          extracts_to=("meta",), into="meta")))
    monkeypatch.setitem(SOURCES, "toy", source)
    return source


def test_obtain_downloads_extracts_and_then_skips(toy, server, tmp_path):
    dest = tmp_path / "toy"
    assert obtain("toy", dest, progress=False) == dest
    assert missing_layout("toy", dest) == [] and (dest / "meta/labels.txt").read_bytes() == b"0 1\n"
    assert [entry[0] for entry in server.log] == ["/images.zip", "/labels.tar.gz"]
    (dest / "images.zip").unlink()  # archives may be deleted once unpacked
    assert obtain("toy", dest, progress=False) == dest
    assert len(server.log) == 2


def test_obtain_offline_and_unreachable_list_files_to_place(toy, tmp_path, monkeypatch):
    with pytest.raises(DataError, match="Place these files") as err:
        obtain("toy", tmp_path / "toy", offline=True, progress=False)
    for f in toy.files:
        assert f"{tmp_path / 'toy' / f.filename} (md5 {f.md5}, from {f.url})" in str(err.value)
    dead = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setitem(SOURCES, "toy", DatasetSource("toy", "t", "h", "l", layout=toy.layout, files=tuple(
        SourceFile(f.url.replace(f.url.rsplit("/", 1)[0], dead), f.filename, f.md5, extracts_to=f.extracts_to)
        for f in toy.files)))
    with pytest.raises(DataError, match="Place these files") as err:
        obtain("toy", tmp_path / "toy", progress=False)
    assert str(tmp_path / "toy" / "images.zip") in str(err.value) and "labels.tar.gz" in str(err.value)


def test_obtain_from_an_extracted_layout(toy, tmp_path):
    ready = tmp_path / "ready"
    (ready / "images").mkdir(parents=True)
    (ready / "images/0.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match=r"missing: meta/labels\.txt"):
        obtain("toy", tmp_path / "unused", from_path=ready)
    (ready / "meta").mkdir()
    (ready / "meta/labels.txt").write_text("0\n")
    assert obtain("toy", tmp_path / "unused", from_path=ready) == ready
    assert not (tmp_path / "unused").exists()


def test_obtain_from_a_folder_of_archives(toy, server, tmp_path):
    placed = tmp_path / "placed"
    placed.mkdir()
    for name in ("images.zip", "labels.tar.gz"):
        (placed / name).write_bytes((server.root / name).read_bytes())
    dest = obtain("toy", tmp_path / "toy", from_path=placed, progress=False)
    assert missing_layout(toy, dest) == [] and server.log == []
    (placed / "labels.tar.gz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="md5 mismatch"):
        obtain("toy", tmp_path / "toy2", from_path=placed, progress=False)
    assert (placed / "labels.tar.gz").read_bytes() == b"garbage"  # a placed file is never moved


def test_unpublished_checksum_is_pinned_on_first_download(server, tmp_path):
    archive = make_zip(server.root / "data.zip", {"data/a.txt": b"a"})
    source = DatasetSource("pinned", "t", "h", "l", layout=("data/a.txt",),
                           files=(SourceFile(f"{server.url}/data.zip", "data.zip", extracts_to=("data",)),))
    dest = obtain(source, tmp_path / "p", progress=False)
    sidecar = dest / "data.zip.sha256"
    assert sidecar.read_text().split()[0] == hashlib.sha256(archive.read_bytes()).hexdigest()
    placed = tmp_path / "placed"  # later runs verify against the pinned value
    placed.mkdir()
    (placed / "data.zip").write_bytes(b"tampered")
    (placed / "data.zip.sha256").write_text(sidecar.read_text())
    with pytest.raises(DataError, match="sha256 mismatch"):
        obtain(source, tmp_path / "q", from_path=placed, progress=False)


def test_an_archive_refused_as_unsafe_pins_nothing_so_a_good_copy_is_then_accepted(server, tmp_path):
    make_zip(server.root / "data.zip", {"data/a.txt": b"a", "../evil": b"x"})
    source = DatasetSource("pinned", "t", "h", "l", layout=("data/a.txt",),
                           files=(SourceFile(f"{server.url}/data.zip", "data.zip", extracts_to=("data",)),))
    dest = tmp_path / "p"
    with pytest.raises(DataError, match=r"data\.zip: entry '\.\./evil'.*nothing was extracted"):
        obtain(source, dest, progress=False)
    assert everything(dest) == ["data.zip"]  # no sidecar, no marker, nothing extracted
    good = make_zip(tmp_path / "good.zip", {"data/a.txt": b"good"})
    (dest / "data.zip").write_bytes(good.read_bytes())  # a good copy in the same place
    assert obtain(source, dest, progress=False) == dest and (dest / "data/a.txt").read_bytes() == b"good"
    assert (dest / "data.zip.sha256").read_text().split()[0] == hashlib.sha256(good.read_bytes()).hexdigest()
    assert len(server.log) == 1


def test_manual_datasets_explain_and_accept_from(tmp_path):
    with pytest.raises(DataError, match="NUS-WIDE.html") as err:
        obtain("nuswide", tmp_path / "n")
    assert "--from" in str(err.value) and "Groundtruth" in str(err.value)
    with pytest.raises(DataError, match="datasets-mlc.html"):
        obtain("mulan", tmp_path / "m")
    nus = tmp_path / "nus"
    (nus / "Groundtruth/TrainTestLabels").mkdir(parents=True)
    (nus / "ImageList").mkdir()
    (nus / "ImageList/TrainImagelist.txt").write_text("actor\\0001_2124494179.jpg\n")
    with pytest.raises(DataError, match=r"missing: ImageList/TestImagelist\.txt"):
        obtain("nuswide", tmp_path / "n", from_path=nus)
    (nus / "ImageList/TestImagelist.txt").write_text("actor\\0002_174174086.jpg\n")
    assert obtain("nuswide", tmp_path / "n", from_path=nus) == nus
    (tmp_path / "mulan").mkdir()
    (tmp_path / "mulan/scene.arff").write_text("@relation scene\n")
    assert obtain("mulan", tmp_path / "m", from_path=tmp_path / "mulan") == tmp_path / "mulan"


def test_catalogue_and_describe():
    for src in SOURCES.values():
        for f in src.files:
            assert f.url.startswith("http") and f.url.endswith("/" + f.filename)
            assert f.md5 is None or (len(f.md5) == 32 and int(f.md5, 16) >= 0)
    text = describe("coco")
    assert "train2014.zip" in text and "0da8c0bd3d6becc4dcb32757491aca88" in text and "CC BY 4.0" in text
    assert "3.1 GB" in describe("mirflickr") and "academic" in describe("scene")
    assert "request" in describe("nuswide")
    with pytest.raises(DataError, match="known sources are: coco"):
        describe("imagenet")


def test_obtain_rar_without_a_tool_points_to_from(server, tmp_path, monkeypatch):
    (server.root / "data.rar").write_bytes(b"Rar!\x1a\x07\x00" + b"\x00" * 32)
    source = DatasetSource("rarry", "t", "h", "l", layout=("original/*.jpg",), files=(
        SourceFile(f"{server.url}/data.rar", "data.rar", extracts_to=("original",), hint="unpack original.rar"),))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    with pytest.raises(DataError, match="unpack original.rar") as err:
        obtain(source, tmp_path / "r", progress=False)
    assert "--from" in str(err.value) and (tmp_path / "r" / "data.rar").is_file()


def test_scene_layout_finds_the_mat_file_anywhere_below_or_a_data_csv(tmp_path):
    (tmp_path / "original").mkdir()
    (tmp_path / "original/1.jpg").write_bytes(b"x")
    assert missing_layout("scene", tmp_path) == ["**/miml data.mat | data.csv"]
    (tmp_path / "miml data.mat").write_bytes(b"m")  # what `unrar e processed.rar` leaves
    assert missing_layout("scene", tmp_path) == []
    (tmp_path / "miml data.mat").unlink()
    (tmp_path / "data.csv").write_text("image,desert\n")  # the 0/1 table some copies carry
    assert missing_layout("scene", tmp_path) == []
