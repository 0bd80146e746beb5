"""Download and unpack the official files of the real datasets, verified and resumable.

:data:`retdm.data.sources.SOURCES` is the catalogue: per dataset, the official archives (URL,
published checksum, what each unpacks to) and the layout an importer can rely on. ``obtain`` turns a dataset
name into a folder holding that layout: it reuses a finished extraction, verifies archives the
user placed by hand (``from_path``), or downloads them with ``fetch`` (resuming ``.part`` files)
and unpacks them with :func:`retdm.data.archives.safe_extract`. Nothing is ever deleted: a file
that fails its checksum is kept as ``<file>.bad``.

Datasets without a published checksum (``scene``) get one pinned on first download: once the file
has passed the safety checks and been extracted, its sha256 goes to ``<file>.sha256`` beside it and
later runs verify against it (an archive refused as unsafe or damaged pins nothing). NUS-WIDE and
MULAN have no fixed download; ``obtain`` explains how to get them and accepts the folder via
``from_path``.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from retdm.data.archives import (
    archive_kind,
    check_file,
    digest,
    is_extracted,
    marker_path,
    rar_tool,
    safe_extract,
)
from retdm.data.sources import DatasetSource, SourceFile, get_source, human_size
from retdm.errors import DataError
from retdm.files import atomic_write, set_aside
from retdm.log import bar

_CHUNK = 1 << 20
_NETWORK = (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)


class DownloadError(DataError):
    """The server could not be reached or the transfer broke off; the message says what to place by hand.

    Args:
        message: the full message.
        reason: the short cause ("HTTP 404 Not Found", "Connection refused").
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def fetch(url: str, dest: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None,
          size: int | None = None, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` over HTTP(S), resuming ``<dest>.part``, then verify it.

    A ``dest`` that is already there and passes the checks is not downloaded again; one that fails
    them is set aside as ``<dest>.bad`` and downloaded afresh.

    Args:
        url: http:// or https:// address.
        dest: the file to write.
        md5: expected md5 hex digest, or ``None``.
        sha256: expected sha256 hex digest, or ``None``.
        size: expected size in bytes, or ``None``.
        progress: show a tqdm bar.
        timeout: seconds a connect or read may stall before giving up.

    Returns:
        ``dest``.

    Raises:
        DownloadError: the server is unreachable, answered an error, or the transfer broke off
            (the bytes received so far stay in ``<dest>.part`` and the next call resumes).
        DataError: the finished file fails a check; it is kept as ``<dest>.bad``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        if check_file(dest, md5, sha256, size, progress) is None:
            return dest
        set_aside(dest)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    if size is not None and start > size:
        set_aside(part, dest)  # longer than the whole file: not a prefix of it
        start = 0
    if size is None or start < size:
        _transfer(url, dest, part, start, size, progress, timeout, md5)
    wrong = check_file(part, md5, sha256, size, progress)
    if wrong is not None:
        bad = set_aside(part, dest)
        raise DataError(f"{dest}: {wrong}. The download is kept at {bad} (nothing was deleted). The server may have "
                        f"sent a damaged or different file: run again to download afresh, or place a good copy of "
                        f"{url} at {dest}")
    os.replace(part, dest)
    return dest


def obtain(dataset: str | DatasetSource, dest: str | os.PathLike, *, from_path: str | os.PathLike | None = None,
           offline: bool = False, progress: bool = True) -> Path:
    """A folder holding ``dataset``'s official layout, downloading and unpacking what is missing.

    Args:
        dataset: a name in ``SOURCES`` or a ``DatasetSource``.
        dest: folder to download and extract into.
        from_path: a folder that already holds the layout (returned as is), or that holds the
            official archives (verified, then extracted into ``dest``). Needed for NUS-WIDE and MULAN.
        offline: never touch the network; archives must already be in ``dest``.
        progress: show download and checksum progress bars.

    Returns:
        The folder with the layout: ``from_path`` when it already had it, else ``dest``.

    Raises:
        DataError: listing the files to place by hand (no network, ``offline``, no download exists),
            what a ``from_path`` lacks, or a checksum that does not match.
    """
    src = get_source(dataset)
    dest = Path(dest)
    if from_path is not None:
        return _from_folder(src, Path(from_path), dest, progress)
    if src.manual is not None:
        raise DataError(f"{src.name}: {src.manual}")
    managed = any(marker_path(f.filename, dest).exists() for f in src.files)
    if not managed and dest.is_dir() and not missing_layout(src, dest):
        return dest  # unpacked by hand into dest
    pending = [f for f in src.files if not _done(f, dest)]
    if offline:
        absent = [f for f in pending if not (dest / f.filename).is_file()]
        if absent:
            raise DataError(_place(src, dest, absent, "offline mode"))
    for f in pending:
        archive = dest / f.filename
        if offline:
            _verify_placed(f, archive, progress)
            continue
        try:
            fetch(f.url, archive, md5=f.md5, sha256=_pinned(archive), size=f.size, progress=progress)
        except DownloadError as err:  # list every file still missing, not only the one that failed
            absent = [g for g in pending if not (dest / g.filename).is_file()]
            raise DataError(_place(src, dest, absent, f"cannot download {f.url}: {err.reason}")) from err
    for f in pending:
        _unpack(src, f, dest / f.filename, dest, progress)
    return _checked(src, dest, pending)


def missing_layout(source: str | DatasetSource, folder: str | os.PathLike) -> list[str]:
    """Entries of the dataset's layout that ``folder`` lacks (a glob counts when anything matches; an
    entry ``a | b`` when either alternative is there).

    Args:
        source: a name in ``SOURCES`` or a ``DatasetSource``.
        folder: the candidate dataset folder.

    Returns:
        The missing layout entries, in catalogue order (empty when complete).
    """
    src, folder = get_source(source), Path(folder)

    def present(entry: str) -> bool:
        return next(folder.glob(entry), None) is not None if any(c in entry for c in "*?[") else \
            (folder / entry).exists()

    return [e for e in src.layout if not any(present(alt.strip()) for alt in e.split("|"))]


def _from_folder(src: DatasetSource, folder: Path, dest: Path, progress: bool) -> Path:
    if not folder.is_dir():
        raise DataError(f"{folder}: --from folder not found; pass the folder that holds the {src.name} files")
    missing = missing_layout(src, folder)
    if not missing and (src.layout or any(folder.iterdir())):
        return folder
    if not src.layout:
        raise DataError(f"{folder}: the folder is empty; {src.manual}")
    present = [f for f in src.files if (folder / f.filename).is_file()]
    if not present:
        archives = f" nor its archives ({', '.join(f.filename for f in src.files)})" if src.files else ""
        raise DataError(f"{folder}: holds neither the {src.name} layout (missing: {', '.join(missing)}){archives}; "
                        "pass the folder that holds them" + (f". {src.manual}" if src.manual else ""))
    pending = [f for f in src.files if not _done(f, dest)]
    absent = [f for f in pending if not (folder / f.filename).is_file()]
    if absent:
        raise DataError(_place(src, folder, absent, f"{folder} holds only some of the archives"))
    for f in pending:
        _verify_placed(f, folder / f.filename, progress)
        _unpack(src, f, folder / f.filename, dest, progress)
    return _checked(src, dest, pending)


def _done(f: SourceFile, dest: Path) -> bool:
    """Extracted before (marker with the published md5, when there is one) and its entries still there."""
    return is_extracted(f.filename, dest, f"md5:{f.md5}" if f.md5 else None) and \
        all((dest / e).exists() for e in f.extracts_to)


def _verify_placed(f: SourceFile, archive: Path, progress: bool) -> None:
    """Check a file the user placed by hand; it is left where it is either way."""
    wrong = check_file(archive, f.md5, _pinned(archive), f.size, progress)
    if wrong is not None:
        raise DataError(f"{archive}: {wrong}; the file is damaged or not the official release: replace it with "
                        f"a good copy of {f.url}")


def _unpack(src: DatasetSource, f: SourceFile, archive: Path, dest: Path, progress: bool) -> None:
    pinned = _pinned(archive) if f.md5 is None else None
    checksum = f"md5:{f.md5}" if f.md5 else f"sha256:{pinned or digest(archive, 'sha256', progress=progress)}"
    if archive_kind(archive) == "rar" and rar_tool() is None:
        raise DataError(f"{archive}: a RAR archive, and none of unrar, 7z, bsdtar is on PATH. Install one "
                        f"(apt install unrar, p7zip-full or libarchive-tools) and run again, or extract it by hand "
                        f"({f.hint or 'so that ' + ', '.join(src.layout) + ' exist'}) and pass that folder with --from")
    safe_extract(archive, dest, checksum=checksum, into=f.into, nested=f.nested, force=True)
    if f.md5 is None and pinned is None:
        # Pinned only now: an archive refused as unsafe or damaged must not make every later good copy
        # fail its checksum.
        value = checksum.removeprefix("sha256:")
        try:
            atomic_write(archive.with_name(archive.name + ".sha256"),
                         lambda tmp: Path(tmp).write_text(f"{value}  {archive.name}\n"))
        except OSError:  # a read-only --from folder: the extraction marker still records it
            pass


def _checked(src: DatasetSource, dest: Path, unpacked: list[SourceFile]) -> Path:
    missing = missing_layout(src, dest)
    if missing:
        names = ", ".join(f.filename for f in unpacked) or "nothing (all marked done)"
        raise DataError(f"{dest}: after unpacking {names}, {', '.join(missing)} is still missing; the archives do not "
                        f"have the layout this version expects. Unpack them by hand so that {', '.join(src.layout)} "
                        "exist and pass that folder with --from")
    return dest


def _place(src: DatasetSource, folder: Path, files: list[SourceFile], reason: str) -> str:
    lines = [f"    {folder / f.filename} ({'md5 ' + f.md5 if f.md5 else 'no published checksum'}, from {f.url})"
             for f in files]
    return (f"{src.name}: some files are not there ({reason}). Place these files:\n" + "\n".join(lines) +
            f"\nthen run again (or pass a folder that already holds {', '.join(src.layout)} with --from)")


def _pinned(path: Path) -> str | None:
    """The sha256 recorded in ``<path>.sha256`` on first download, if any."""
    sidecar = path.with_name(path.name + ".sha256")
    return sidecar.read_text().split()[0] if sidecar.is_file() else None


def _transfer(url: str, dest: Path, part: Path, start: int, size: int | None, progress: bool, timeout: float,
              md5: str | None) -> None:
    """Append the bytes from ``start`` on to ``part``; restart from 0 when the server ignores Range."""
    headers = {"User-Agent": "retdm", **({"Range": f"bytes={start}-"} if start else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # nothing left past ``start``: the part is complete
            return
        raise _cannot(url, dest, md5, part, f"HTTP {err.code} {err.reason}") from err
    except _NETWORK as err:
        raise _cannot(url, dest, md5, part, str(getattr(err, "reason", err))) from err
    with response:
        length = int(response.headers.get("Content-Length", -1))
        if response.status == 206:
            if not re.match(rf"bytes {start}-", response.headers.get("Content-Range", "")):
                response.close()  # a range we did not ask for: start over without Range
                return _transfer(url, dest, part, 0, size, progress, timeout, md5)
            mode = "ab"
        else:  # 200: Range ignored (or never sent), the body is the whole file
            mode, start = "wb", 0
        total = size or (start + length if length >= 0 else None)
        if total is not None and total - start > shutil.disk_usage(part.parent).free:
            raise DataError(f"{part.parent}: {human_size(total - start)} needed for {dest.name}, only "
                            f"{human_size(shutil.disk_usage(part.parent).free)} free; make room or choose another folder")
        got = start
        try:
            with open(part, mode) as out, bar(show=progress, total=total, initial=start, desc=dest.name, unit="B",
                                              unit_scale=True, unit_divisor=1024) as shown:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    got += len(chunk)
                    shown.update(len(chunk))
        except _NETWORK as err:
            raise _cannot(url, dest, md5, part, f"transfer broke off: {err}") from err
    if length >= 0 and got != start + length:
        raise _cannot(url, dest, md5, part, f"transfer broke off after {got} of {start + length} bytes")


def _cannot(url: str, dest: Path, md5: str | None, part: Path, reason: str) -> DownloadError:
    kept = f" The {part.stat().st_size} bytes received so far are kept in {part}; running again resumes there." \
        if part.is_file() and part.stat().st_size else ""
    return DownloadError(f"could not download {url} ({reason}). Place the file by hand: {dest} "
                         f"({'md5 ' + md5 if md5 else 'no published checksum'}, from {url}).{kept}", reason)
