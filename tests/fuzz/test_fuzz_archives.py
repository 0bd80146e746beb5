"""Fuzz archive extraction (retdm.data.archives.safe_extract): zip and tar (plain, gz, bz2, xz) with
generated entries (files, folders, symlinks, hard links, a FIFO; names with ``..``, absolute,
backslashes, repeats), random byte damage, and a target that already holds files.

Invariant: the archive is extracted, nothing is written outside the target and every symlink in
it stays inside; or ``DataError`` names the archive, the target is as it was and no temporary
folder is left beside it."""

import io
import os
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

from fuzzing import budget, expect_clean_error, files_under, mutated
from hypothesis import given
from hypothesis import strategies as st

from retdm.data.archives import MARKER_PREFIX, safe_extract
from retdm.errors import DataError

parts = st.sampled_from(("a", "b", "c.txt", "d", "..", ".", "", "é", "x\\y", "C:", " "))
names = st.builds(lambda lead, ps: lead + "/".join(ps), st.sampled_from(("", "", "", "/", "./")),
                  st.lists(parts, min_size=1, max_size=3))
safe_names = st.lists(st.sampled_from(("a", "b", "c.txt", "é")), min_size=1, max_size=3).map("/".join)
entry = st.one_of(
    st.tuples(st.just("file"), names, st.binary(max_size=8)),
    st.tuples(st.just("dir"), names, st.just(b"")),
    st.tuples(st.just("symlink"), names, names.map(str.encode) | st.sampled_from((b"\xff\xfe", b"/etc", b"../.."))),
    st.tuples(st.just("hardlink"), names, names.map(str.encode)),
    st.tuples(st.just("fifo"), names, st.just(b"")),
)
FORMATS = ("zip", "zip-deflated", "tar", "tar.gz", "tar.bz2", "tar.xz")


def write_archive(path: Path, fmt: str, entries) -> None:
    """``entries`` (kind, name, payload) as a zip or tar file; zip has no hard links or FIFOs (skipped)."""
    if fmt.startswith("zip"):
        method = zipfile.ZIP_DEFLATED if fmt == "zip-deflated" else zipfile.ZIP_STORED
        with warnings.catch_warnings(), zipfile.ZipFile(path, "w", method) as zf:
            warnings.simplefilter("ignore")  # repeated names are what we want here
            for kind, name, payload in entries:
                if kind in ("hardlink", "fifo") or not name:
                    continue
                info = zipfile.ZipInfo(name + "/" if kind == "dir" and not name.endswith("/") else name)
                info.external_attr = {"file": 0o100644, "dir": 0o40755, "symlink": 0o120777}[kind] << 16
                zf.writestr(info, payload)
        return
    mode = {"tar": "w", "tar.gz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}[fmt]
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tf:
        for kind, name, payload in entries:
            info = tarfile.TarInfo(name)
            info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                         "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            info.mode = 0o755 if kind == "dir" else 0o644
            if kind in ("symlink", "hardlink"):
                info.linkname = payload.decode("utf-8", "replace")
            info.size = len(payload) if kind == "file" else 0
            tf.addfile(info, io.BytesIO(payload) if kind == "file" else None)


def escapes(sandbox: Path, target: Path) -> list[str]:
    """Symlinks below ``target`` that resolve outside it."""
    top = os.path.realpath(target)
    return [str(p) for p in target.rglob("*")
            if p.is_symlink() and os.path.commonpath([top, os.path.realpath(p)]) != top]


def _extract(sandbox: Path, archive: Path, target: Path, into: str | None):
    """``safe_extract`` under the invariant; True when it extracted."""
    outside = sandbox / "outside"
    (outside / "keep.txt").parent.mkdir(parents=True, exist_ok=True)
    (outside / "keep.txt").write_text("must not change")
    before_target, before_sandbox = files_under(target), _sandbox_state(sandbox, target)
    try:
        safe_extract(archive, target, into=into)
    except DataError as err:
        expect_clean_error(err, [archive], target, before_target)
        assert _sandbox_state(sandbox, target) == before_sandbox, "an error left something beside the target"
        return False
    assert _sandbox_state(sandbox, target) == before_sandbox, "extraction wrote outside the target"
    assert not escapes(sandbox, target), f"symlinks escape the target: {escapes(sandbox, target)}"
    assert (target / f"{MARKER_PREFIX}{archive.name}").is_file()
    return True


def _sandbox_state(sandbox: Path, target: Path) -> dict[str, int]:
    return {k: v for k, v in files_under(sandbox).items() if not (sandbox / k).is_relative_to(target)}


@budget(80, "archive extraction")
@given(st.lists(entry, max_size=5), st.sampled_from(FORMATS), st.sampled_from((None, "a", "top")), st.booleans(),
       st.data())
def test_generated_archives(entries, fmt, into, existing, data):
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Path(tmp)
        archive, target = sandbox / f"set.{fmt}", sandbox / "target"
        write_archive(archive, fmt, entries)
        if existing:  # a target that already holds files and folders (a second archive into the same folder)
            ours = [e[1].strip("/") for e in entries]  # names the archive holds too, so that they clash
            clashing = st.sampled_from([n for n in ours if n and not {"", ".", ".."} & set(n.split("/"))] or ["a"])
            for name in data.draw(st.lists(safe_names | clashing, max_size=3)):
                path = target / name
                if path.exists() or any(p.is_file() for p in path.parents):
                    continue
                if data.draw(st.booleans()):
                    path.mkdir(parents=True)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"old")
        _extract(sandbox, archive, target, into)


@budget(80, "archive extraction")
@given(st.lists(st.tuples(safe_names, st.binary(max_size=8)), min_size=1, max_size=4,
                unique_by=lambda e: e[0].split("/")[0]), st.sampled_from(FORMATS), st.data())
def test_plain_archives_extract_exactly_or_damaged_ones_cleanly(files, fmt, data):
    """Files only, under distinct top folders: extracted byte for byte; with random damage, extracted
    or refused cleanly."""
    damaged = data.draw(st.booleans())
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Path(tmp)
        archive, target = sandbox / f"set.{fmt}", sandbox / "target"
        write_archive(archive, fmt, [("file", name, body) for name, body in files])
        if damaged:
            archive.write_bytes(data.draw(mutated(archive.read_bytes())))
        done = _extract(sandbox, archive, target, None)
        if not damaged:
            assert done, "an intact archive was refused"
            for name, body in files:
                assert (target / name).read_bytes() == body
