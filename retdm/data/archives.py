"""Dataset files on disk: checksums and safe, all-or-nothing extraction.

``digest`` and ``check_file`` verify a file against its size, md5 or sha256 (a bad one is set
aside as ``<file>.bad`` by ``retdm.files.set_aside``, never deleted). ``safe_extract`` unpacks
zip, tar (plain, gz, bz2, xz) and RAR.

Every member is checked before anything is written: an absolute name, a ``..`` component, or a
symbolic or hard link whose target leaves the extraction folder raises ``DataError`` naming the
archive and the entry. Tar members are then extracted with ``filter="data"``, which repeats the
link checks on the real file system. RAR goes through the first external tool found on PATH
(``unrar``, ``7z``, ``bsdtar``); its listing is checked the same way and its output is checked for
escaping links before anything is moved into place.

Extraction writes into a temporary sibling of the target and moves the result in only once it is
complete; a marker ``.retdm-extracted-<archive name>`` holding the archive's checksum is written
last. An interrupted run therefore leaves no marker (and at most whole files, which the next run
overwrites); a finished one is skipped.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

from retdm.errors import DataError
from retdm.files import atomic_write
from retdm.log import bar

MARKER_PREFIX = ".retdm-extracted-"
RAR_TOOLS = ("unrar", "7z", "bsdtar")
_CHUNK = 1 << 20
# zlib/lzma/EOF: a truncated or corrupt compressed stream; OSError: bz2's "Invalid data stream";
# RuntimeError: zipfile's "encrypted, password required" and NotImplementedError (an unknown compression method);
# UnicodeDecodeError: a zip entry's local header flags its name as UTF-8, and it is not.
_DAMAGED = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, OSError, RuntimeError,
            UnicodeDecodeError)


def digest(path: str | os.PathLike, algorithm: str = "sha256", *, progress: bool = False) -> str:
    """Hex digest of a file, read in 1 MiB chunks.

    Args:
        path: the file.
        algorithm: a ``hashlib`` name ("md5", "sha256").
        progress: show a tqdm bar (worth it for multi-GB archives).

    Returns:
        The lower-case hex digest.
    """
    path = Path(path)
    h = hashlib.new(algorithm)
    with open(path, "rb") as f, bar(show=progress, total=path.stat().st_size, desc=f"{algorithm} {path.name}",
                                    unit="B", unit_scale=True, unit_divisor=1024) as shown:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            shown.update(len(chunk))
    return h.hexdigest()


def check_file(path: Path, md5: str | None, sha256: str | None, size: int | None, progress: bool) -> str | None:
    """What is wrong with ``path``, or ``None`` when it passes every check that is given.

    Args:
        path: the file.
        md5: expected md5 hex digest, or ``None``.
        sha256: expected sha256 hex digest, or ``None``.
        size: expected size in bytes, or ``None``.
        progress: show a tqdm bar while hashing.

    Returns:
        E.g. ``"md5 mismatch: expected …, got …"``, or ``None``.
    """
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"size mismatch: expected {size} bytes, got {actual}"
    for name, expected in (("md5", md5), ("sha256", sha256)):
        if expected is not None:
            got = digest(path, name, progress=progress)
            if got != expected.lower():
                return f"{name} mismatch: expected {expected.lower()}, got {got}"
    return None


def marker_path(archive_name: str, target: str | os.PathLike) -> Path:
    """Where the "extraction finished" marker of ``archive_name`` lives inside ``target``."""
    return Path(target) / f"{MARKER_PREFIX}{archive_name}"


def is_extracted(archive_name: str, target: str | os.PathLike, checksum: str | None = None) -> bool:
    """Whether ``archive_name`` was fully extracted into ``target`` (and, if given, from this checksum).

    Args:
        archive_name: file name of the archive (not its path: the archive may have been deleted since).
        target: the extraction folder.
        checksum: e.g. ``"md5:0a37…"``; ``None`` accepts any marker.

    Returns:
        True when the marker exists and, if ``checksum`` is given, holds it.
    """
    marker = marker_path(archive_name, target)
    if not marker.is_file():
        return False
    return checksum is None or marker.read_text().strip() == checksum


def rar_tool() -> str | None:
    """Name of the first RAR-capable tool on PATH (``unrar``, ``7z``, ``bsdtar``), or ``None``."""
    return next((tool for tool in RAR_TOOLS if shutil.which(tool)), None)


def archive_kind(archive: str | os.PathLike) -> str:
    """``"zip"``, ``"tar"`` or ``"rar"``, read from the file's first bytes (not its name).

    Raises:
        DataError: the file is none of these.
    """
    archive = Path(archive)
    with open(archive, "rb") as f:
        head = f.read(8)
    if head.startswith(b"Rar!\x1a\x07"):
        return "rar"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    try:
        if tarfile.is_tarfile(archive):
            return "tar"
    except _DAMAGED as err:  # a compressed stream that breaks off or is corrupt (is_tarfile lets it through)
        raise DataError(f"{archive}: cannot be read as a compressed tar, it looks damaged or truncated "
                        f"({type(err).__name__}: {err}); move it away and download it again") from err
    raise DataError(f"{archive}: not a zip, tar (plain, gz, bz2, xz) or RAR archive (it starts with {head!r}); "
                    "the download may be an HTML error page or truncated: move it away and fetch it again")


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike, *, checksum: str | None = None,
                 into: str | None = None, nested: Sequence[str] = (), force: bool = False) -> Path:
    """Extract ``archive`` into ``target`` safely and atomically, skipping it when already done.

    Args:
        archive: a zip, tar (plain, gz, bz2, xz) or RAR file.
        target: folder that receives the archive's top-level entries (created if needed).
        checksum: what the marker records, e.g. ``"md5:…"``; default ``"sha256:<digest of archive>"``.
        into: a sub-folder of ``target`` to extract into, unless every entry already lies under
            a top folder of that name (archives that were zipped without their folder).
        nested: names of archives inside this one to extract in turn, each into a folder named
            after its stem unless it has that top folder itself; the inner archives are not kept.
        force: extract even when the marker says it was done.

    Returns:
        ``target``.

    Raises:
        DataError: an entry escapes ``target`` (nothing is written), the archive is damaged
            (nothing is moved into ``target``), or a RAR needs a tool that is not installed.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise DataError(f"{archive}: archive not found; download it or give the right path")
    checksum = checksum or f"sha256:{digest(archive)}"
    if not force and is_extracted(archive.name, target, checksum):
        return target
    target.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.retdm-extract-{archive.name}-"
    for stale in target.parent.glob(f"{prefix}*"):  # left by a killed run of this same extraction
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        _extract_any(archive, tmp, into)
        for name in nested:
            inner = sorted(tmp.rglob(name))
            if not inner:
                found = sorted(p.name for p in tmp.iterdir())
                raise DataError(f"{archive}: expected an inner archive {name!r}, found only {found}; "
                                "the archive is not the expected release")
            _extract_any(inner[0], inner[0].parent, PurePosixPath(name).stem)
            inner[0].unlink()
        _check_links(tmp, archive)
        _merge(tmp, target, archive, move=False)  # every clash first, so that an error moves nothing
        _merge(tmp, target, archive)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write(marker_path(archive.name, target), lambda tmp_path: Path(tmp_path).write_text(checksum + "\n"))
    return target


def _extract_any(archive: Path, dest: Path, into: str | None) -> None:
    """Check every member of ``archive``, then extract it under ``dest`` (or ``dest/into``)."""
    kind = archive_kind(archive)
    try:
        if kind == "zip":
            _extract_zip(archive, dest, into)
        elif kind == "tar":
            _extract_tar(archive, dest, into)
        else:
            _extract_rar(archive, dest, into)
    except DataError:
        raise
    except tarfile.FilterError as err:  # the data filter caught a link escaping through another link
        raise DataError(f"{archive}: entry {err.tarinfo.name!r} would be written outside the target ({err}); "
                        "nothing was extracted. Do not use this archive; download it again from the official source")
    except _DAMAGED as err:
        raise DataError(f"{archive}: cannot be extracted, it looks damaged or truncated ({type(err).__name__}: {err}); "
                        "nothing was extracted. Move it away and download it again") from err


def _extract_zip(archive: Path, dest: Path, into: str | None) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        links: dict[str, str] = {}
        for info in infos:
            _check_name(archive, info.filename)
            if (info.external_attr >> 16) & 0o170000 == 0o120000:  # a Unix symlink; its body is the target
                try:
                    links[info.filename] = zf.read(info).decode("utf-8")
                except UnicodeDecodeError:
                    raise DataError(f"{archive}: entry {info.filename!r} is a symlink whose target is not UTF-8 text; "
                                    "nothing was extracted. Download the archive again") from None
                _check_link(archive, info.filename, links[info.filename], hard=False)
        root = _root(dest, into, [i.filename for i in infos])
        for info in infos:
            if info.filename not in links:
                zf.extract(info, root)
        for name, link in links.items():  # last, so that no file is written through a link
            path = root / name.rstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(link, path)


def _extract_tar(archive: Path, dest: Path, into: str | None) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        stored: set[str] = set()  # the regular files so far: a hard link refers to one stored before it
        for m in members:
            _check_name(archive, m.name)
            if m.issym() or m.islnk():
                _check_link(archive, m.name, m.linkname, hard=m.islnk())
            elif not (m.isfile() or m.isdir()):
                raise DataError(f"{archive}: entry {m.name!r} is a device, FIFO or other special file, which a "
                                "dataset never holds; nothing was extracted. Download the archive again")
            if not m.isdir() and os.path.normpath(m.name) == ".":  # tarfile would recurse on such a link
                raise DataError(f"{archive}: entry {m.name!r} is a file or link named like the target folder itself; "
                                "nothing was extracted. Download the archive again")
            if m.islnk() and os.path.normpath(m.linkname) not in stored:
                raise DataError(f"{archive}: entry {m.name!r} is a hard link to {m.linkname!r}, which is not a file "
                                "stored before it; nothing was extracted. Download the archive again")
            if m.isfile():
                stored.add(os.path.normpath(m.name))
        tf.extractall(_root(dest, into, [m.name for m in members]), members=members, filter="data")


def _extract_rar(archive: Path, dest: Path, into: str | None) -> None:
    tool = rar_tool()
    if tool is None:
        raise DataError(f"{archive}: a RAR archive, and none of {', '.join(RAR_TOOLS)} is on PATH to extract it; "
                        "install one (apt install unrar, p7zip-full or libarchive-tools) or extract it by hand")
    listing = {"unrar": [tool, "lb", str(archive)], "7z": [tool, "l", "-slt", str(archive)],
               "bsdtar": [tool, "-tf", str(archive)]}[tool]
    out = _run(listing, archive).splitlines()
    if tool == "7z":  # entries follow the "----------" line, one "Path = name" each
        start = out.index("----------") if "----------" in out else len(out)
        names = [line[len("Path = "):] for line in out[start:] if line.startswith("Path = ")]
    else:
        names = [line for line in out if line.strip()]
    for name in names:
        _check_name(archive, name)
    root = _root(dest, into, names)
    _run({"unrar": [tool, "x", "-o+", "-idq", "-y", str(archive), f"{root}{os.sep}"],
          "7z": [tool, "x", "-y", f"-o{root}", str(archive)],
          "bsdtar": [tool, "-xf", str(archive), "-C", str(root)]}[tool], archive)


def _run(command: list[str], archive: Path) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DataError(f"{archive}: {command[0]} failed with exit code {done.returncode}: "
                        f"{(done.stderr or done.stdout).strip()[-500:]}; the archive may be damaged")
    return done.stdout


def _check_name(archive: Path, name: str) -> None:
    """Reject an entry name that is absolute or climbs with ``..`` (before anything is written)."""
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        raise DataError(f"{archive}: entry {name!r} has an absolute path; nothing was extracted. "
                        "The archive is unsafe: do not extract it; download it again from the official source")
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise DataError(f"{archive}: entry {name!r} contains '..' and would be written outside the target; "
                        "nothing was extracted. Do not use this archive; download it again from the official source")


def _check_link(archive: Path, name: str, link: str, *, hard: bool) -> None:
    """Reject a link whose target is absolute or resolves above the extraction folder."""
    kind = "hard link" if hard else "symlink"
    base = PurePosixPath() if hard else PurePosixPath(name.rstrip("/")).parent  # hard links are archive-relative
    resolved = os.path.normpath(base / link.replace("\\", "/"))
    if link.startswith(("/", "\\")) or PureWindowsPath(link).drive or resolved == ".." or resolved.startswith("../"):
        raise DataError(f"{archive}: entry {name!r} is a {kind} to {link!r}, outside the target; nothing was "
                        "extracted. Do not use this archive; download it again from the official source")


def _root(dest: Path, into: str | None, names: Iterable[str]) -> Path:
    """``dest/into`` unless every entry already sits in a top folder called ``into``."""
    if into is None:
        return dest
    tops = {PurePosixPath(n.replace("\\", "/")).parts[:1] for n in names}
    tops.discard(())
    tops.discard((".",))
    if tops == {(into,)}:
        return dest
    root = dest / into
    root.mkdir(parents=True, exist_ok=True)
    return root


def _check_links(tmp: Path, archive: Path) -> None:
    """After extraction, before anything moves: every symlink must resolve inside ``tmp``."""
    top = os.path.realpath(tmp)
    for folder, dirs, files in os.walk(tmp):
        for entry in dirs + files:
            path = os.path.join(folder, entry)
            if os.path.islink(path) and os.path.commonpath([top, os.path.realpath(path)]) != top:
                raise DataError(f"{archive}: entry {os.path.relpath(path, tmp)!r} is a symlink to "
                                f"{os.readlink(path)!r}, outside the target; nothing was extracted. "
                                "Do not use this archive; download it again from the official source")


def _merge(src: Path, dst: Path, archive: Path, move: bool = True) -> None:
    """Move everything under ``src`` into ``dst``, merging folders that both hold (VOC trainval + test);
    with ``move=False`` only check that nothing clashes (a folder where a file is, or the reverse)."""
    for entry in sorted(src.iterdir()):
        there = dst / entry.name
        entry_is_dir = entry.is_dir() and not entry.is_symlink()
        there_is_dir = there.is_dir() and not there.is_symlink()
        if entry_is_dir and there_is_dir:
            _merge(entry, there, archive, move)
        elif there_is_dir or (entry_is_dir and there.exists()):
            raise DataError(f"{archive}: holds {entry.name!r} as a {'folder' if entry_is_dir else 'file'}, but "
                            f"{there} already exists as a {'folder' if there_is_dir else 'file'}; move it away "
                            "and run again")
        elif move:
            if there.is_symlink():
                there.unlink()  # shutil.move would otherwise write through an old link
            shutil.move(str(entry), str(there))
