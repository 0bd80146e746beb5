"""An on-disk cache of decoded, resized images: decode each JPEG once, read uint8 shards after.

Layout of a cache directory::

    cache.json           format version, size, count, shard_size, shards, table fingerprint, resize call
    index.parquet        image_id, shard, row, path, bytes (one row per image, in table order)
    shard_00000.npy      (n, 3, size, size) uint8, n = shard_size except in the last shard
    shard_00001.npy      ...

Every image of the label table is decoded with :func:`retdm.data.images.decode_image` and resized
to ``size × size`` by :func:`retdm.data.transforms.resize_square` (bilinear, antialiased), the
very call the transforms make. Shards are opened with
``np.load(mmap_mode="r")``, so reading an image is a 3·size² byte copy from the page cache.

What to cache, and what it changes
    Build the cache at ``size = data.resize`` (the train transform's first, square resize) and
    train with ``data.image_cache: true``, which records ``source_size = resize`` in the run's
    :class:`~retdm.data.transforms.TransformSpec`: every image is first resized to that size,
    from the cache or, without one, from the decoded file by the same call, so a run gives the
    same bits with or without the cache. Training crops are byte-identical to those of an
    uncached run; the test transform resizes a second time (``original → resize → image_size``).

Staleness
    ``cache.json`` holds the SHA-256 of the table's ``image_id``, ``path`` and file size of every
    row; ``index.parquet`` holds each row's ``path`` and file size, so a subset of the table (a
    split) can be checked against the cache too (``ImageCache(..., expect_table=split)``).
    Pixel values are not hashed: an image rewritten in place at the same byte size goes unnoticed;
    rebuild after editing images. Results are byte-exact only for the torch version that built
    the cache (recorded in ``cache.json``).

Builds are atomic: everything is written to a temporary sibling directory that is renamed onto
``out_dir`` only when complete; an existing cache there is replaced only then, and left untouched
by a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from retdm.data.images import decode_image, decode_workers, unreadable_message
from retdm.data.table import LabelTable
from retdm.data.transforms import resize_square
from retdm.errors import DataError
from retdm.files import remove_stale_temporaries, replace_dir
from retdm.log import bar

FORMAT_VERSION = 1
META_FILE, INDEX_FILE = "cache.json", "index.parquet"
_META_KEYS = ("format", "size", "count", "shard_size", "shards", "table_sha256")


def shard_name(k: int) -> str:
    """File name of shard ``k``."""
    return f"shard_{k:05d}.npy"


def table_files(table: LabelTable) -> pd.DataFrame:
    """``image_id``, ``path`` and file ``bytes`` of every row (the staleness key), in table order.

    Raises:
        DataError: the table holds features instead of images, or an image file is missing.
    """
    if not table.has_images:
        raise DataError(f"dataset {table.name!r} holds feature vectors, not image paths; there is nothing to cache")
    ids = table.frame["image_id"].astype(str).to_numpy()
    paths = table.frame["path"].astype(str).to_numpy()
    sizes = np.empty(len(paths), dtype=np.int64)
    missing = []
    for i, p in enumerate(paths):
        try:
            sizes[i] = (table.root / p).stat().st_size
        except OSError as err:
            missing.append((f"image_id {ids[i]!r} {table.root / p}", f"does not exist ({err.strerror})"))
    if missing:
        raise DataError(f"dataset {table.name!r}: {unreadable_message(missing, len(paths))}; fix the path column or "
                        f"restore the files")
    return pd.DataFrame({"image_id": ids, "path": paths, "bytes": sizes})


def fingerprint(files: pd.DataFrame) -> str:
    """SHA-256 of the ``image_id``, ``path`` and ``bytes`` of every row, in order."""
    digest = hashlib.sha256()
    for image_id, path, size in zip(files["image_id"], files["path"], files["bytes"]):
        digest.update(f"{image_id}\t{path}\t{int(size)}\n".encode())
    return digest.hexdigest()


def build_image_cache(table: LabelTable, out_dir: str | os.PathLike, *, size: int, shard_size: int = 1024,
                      workers: int | None = None, progress: bool = True) -> Path:
    """Decode and resize every image of ``table`` once, into uint8 shards under ``out_dir``.

    Args:
        table: label table with a ``path`` column (any split; usually the whole table).
        out_dir: cache directory to create or replace. An existing non-empty directory without
            ``cache.json`` is refused rather than deleted.
        size: side of the cached square images; use ``data.resize`` (see the module docstring).
        shard_size: images per shard file.
        workers: decoding threads (``retdm.data.images.decode_workers``). PIL and torch release the GIL.
        progress: show a progress bar.

    Returns:
        ``out_dir``.

    Raises:
        DataError: images are missing or cannot be decoded (every image is decoded, and the
            message lists those that fail by image_id and file), ``image_id`` repeats, or
            ``out_dir`` is not a cache; nothing is left behind.
    """
    out_dir = Path(out_dir)
    if size < 1 or shard_size < 1:
        raise DataError(f"image cache {out_dir}: size and shard_size must be >= 1, got size={size}, "
                        f"shard_size={shard_size}")
    files = table_files(table)
    if len(files) == 0:
        raise DataError(f"dataset {table.name!r}: the label table is empty; nothing to cache")
    dup = files["image_id"][files["image_id"].duplicated()]
    if len(dup):
        raise DataError(f"dataset {table.name!r}: image_id {dup.iloc[0]!r} repeats; image_ids must be unique")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise DataError(f"{out_dir}: exists and is not a directory; choose another cache directory")
        if any(out_dir.iterdir()) and not (out_dir / META_FILE).exists():
            raise DataError(f"{out_dir}: a non-empty directory without {META_FILE}; refusing to replace it with an "
                            f"image cache. Choose an empty or new directory")
    n = len(files)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        shards, bad = _write_shards(table.root, files, tmp, size, shard_size, decode_workers(workers), progress)
        if bad:
            raise DataError(f"dataset {table.name!r}: {unreadable_message(bad, n)}; replace or remove them (and "
                            f"their rows), then build the cache again")
        index = files.assign(shard=np.arange(n) // shard_size, row=np.arange(n) % shard_size)
        index[["image_id", "shard", "row", "path", "bytes"]].to_parquet(tmp / INDEX_FILE, index=False)
        meta = {
            "format": FORMAT_VERSION, "size": size, "count": n, "shard_size": shard_size, "shards": shards,
            "table_sha256": fingerprint(files), "table_name": table.name,
            "resize": {"call": "torch.nn.functional.interpolate", "interpolation": "bilinear",
                       "antialias": True, "torch": torch.__version__},
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _write_shards(root: Path, files: pd.DataFrame, tmp: Path, size: int, shard_size: int, workers: int,
                  progress: bool) -> tuple[int, list[tuple[str, str]]]:
    """Decode, resize and save every shard. Returns the number of shards and the images that do
    not decode, every one of them (``(image_id and file, why)``, in table order; the caller fails)."""
    ids, paths, n = files["image_id"].to_numpy(), files["path"].to_numpy(), len(files)
    bad: list[tuple[int, str, str]] = []

    def load(i: int) -> Tensor | None:
        image = decode_image(root / paths[i])
        if isinstance(image, str):
            bad.append((i, f"image_id {ids[i]!r} {root / paths[i]}", image))  # list.append is thread-safe
            return None
        return resize_square(image, size)  # (3, size, size)

    shown = bar(show=progress, total=n, desc=f"cache images at {size} px")
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        shards = 0
        for start in range(0, n, shard_size):
            rows = range(start, min(start + shard_size, n))
            block = np.empty((len(rows), 3, size, size), dtype=np.uint8)  # (n, 3, size, size)
            for j, image in enumerate(pool.map(load, rows) if pool else map(load, rows)):
                if image is not None:
                    block[j] = image.numpy()
                shown.update()
            np.save(tmp / shard_name(shards), block)
            shards += 1
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        shown.close()
    return shards, [(name, why) for _, name, why in sorted(bad)]  # in table order




class ImageCache:
    """Read access to a cache written by :func:`build_image_cache`.

    Shards are memory-mapped read-only. Pickling (DataLoader workers) sends the directory, not the
    pixels; each process re-maps the shards.

    Args:
        out_dir: the cache directory.
        expect_size: if given, the side the caller needs (``data.resize``); another size raises.
        expect_table: if given, a label table (or a split of it) whose every row must be cached
            with the same path and file size.

    Raises:
        DataError: naming the directory and the fix (rebuild with ``build_image_cache``) when
            ``cache.json``, the index or a shard is missing or corrupt, the size differs, or the
            table does not match.
    """

    def __init__(self, out_dir: str | os.PathLike, *, expect_size: int | None = None,
                 expect_table: LabelTable | None = None) -> None:
        self.dir = Path(out_dir)
        self.meta = self._read_meta()
        self.size: int = self.meta["size"]
        if expect_size is not None and expect_size != self.size:
            raise DataError(f"image cache {self.dir}: holds images at {self.size} px, but {expect_size} px were "
                            f"asked for; {self._fix(expect_size)}")
        try:
            index = pd.read_parquet(self.dir / INDEX_FILE)
        except (OSError, ValueError) as err:  # missing file, or not Parquet (pyarrow's errors are ValueErrors)
            raise DataError(f"image cache {self.dir}: cannot read {INDEX_FILE} ({err}); {self._fix()}") from err
        if len(index) != self.meta["count"] or not {"image_id", "path", "bytes"} <= set(index.columns):
            raise DataError(f"image cache {self.dir}: {INDEX_FILE} does not match {META_FILE} "
                            f"({len(index)} rows, {self.meta['count']} expected); {self._fix()}")
        self.index = index
        self._position = pd.Index(index["image_id"].astype(str))
        self._shards: list[np.ndarray] | None = None
        self._open()
        if expect_table is not None:
            self.check_table(expect_table)

    def _fix(self, size: int | None = None) -> str:
        return (f"rebuild it with retdm.data.image_cache.build_image_cache(table, {str(self.dir)!r}, "
                f"size={size or 'data.resize'})")

    def _read_meta(self) -> dict:
        path = self.dir / META_FILE
        if not path.is_file():
            raise DataError(f"image cache {self.dir}: no {META_FILE} (not built, or the build did not finish); "
                            f"{self._fix()}")
        try:
            meta = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"image cache {self.dir}: {META_FILE} is not valid JSON ({err}); {self._fix()}") from err
        missing = [k for k in _META_KEYS if not isinstance(meta, dict)
                   or not isinstance(meta.get(k), str if k == "table_sha256" else int)]
        if missing:
            raise DataError(f"image cache {self.dir}: {META_FILE} lacks or mistypes {missing}; {self._fix()}")
        if meta["format"] != FORMAT_VERSION:
            raise DataError(f"image cache {self.dir}: format {meta['format']}, this code reads format "
                            f"{FORMAT_VERSION}; {self._fix()}")
        return meta

    def _open(self) -> None:
        """Memory-map every shard and check its shape against ``cache.json``."""
        count, shard_size, size = self.meta["count"], self.meta["shard_size"], self.size
        shards = []
        for k in range(self.meta["shards"]):
            path = self.dir / shard_name(k)
            expected = (min(shard_size, count - k * shard_size), 3, size, size)
            try:
                shard = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as err:
                raise DataError(f"image cache {self.dir}: cannot read {path.name} ({err}); {self._fix()}") from err
            if shard.shape != expected or shard.dtype != np.uint8:
                raise DataError(f"image cache {self.dir}: {path.name} is {shard.dtype} {shard.shape}, expected uint8 "
                                f"{expected}; {self._fix()}")
            shards.append(shard)
        self._shards = shards

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_shards": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return int(self.meta["count"])

    @property
    def image_ids(self) -> list[str]:
        """Cached image_ids in position order."""
        return self._position.tolist()

    def rows(self, image_ids: Iterable[str]) -> np.ndarray:
        """Positions (0 … len-1) of ``image_ids`` in the cache: (n,) int64.

        Raises:
            DataError: an image_id is not cached (naming the first and how many).
        """
        ids = pd.Index([str(i) for i in image_ids])
        pos = self._position.get_indexer(ids)
        absent = np.flatnonzero(pos < 0)
        if len(absent):
            raise DataError(f"image cache {self.dir}: {len(absent)} image_id(s) not cached, first "
                            f"{ids[absent[0]]!r}; the table changed since the cache was built. {self._fix()}")
        return pos.astype(np.int64)

    def at(self, position: int) -> Tensor:
        """The cached image at ``position``: uint8 (3, size, size), a private (writable) copy."""
        if not 0 <= position < len(self):
            raise IndexError(f"image cache {self.dir}: position {position} out of range [0, {len(self)})")
        k, row = divmod(int(position), self.meta["shard_size"])
        return torch.from_numpy(np.array(self._shards[k][row]))  # (3, size, size)

    def get(self, image_id: str) -> Tensor:
        """The cached image of ``image_id``: uint8 (3, size, size)."""
        return self.at(int(self.rows([image_id])[0]))

    def check_table(self, table: LabelTable) -> None:
        """Check that every row of ``table`` is cached from the same path and file size.

        Raises:
            DataError: naming the first row that is missing or changed, and the fix.
        """
        files = table_files(table)
        pos = self.rows(files["image_id"])
        cached = self.index.iloc[pos]
        changed = np.flatnonzero((cached["path"].to_numpy() != files["path"].to_numpy())
                                 | (cached["bytes"].to_numpy() != files["bytes"].to_numpy()))
        if len(changed):
            i = changed[0]
            raise DataError(
                f"image cache {self.dir} is stale: image_id {files['image_id'].iloc[i]!r} was cached from "
                f"{cached['path'].iloc[i]!r} ({cached['bytes'].iloc[i]} bytes), the table now has "
                f"{files['path'].iloc[i]!r} ({files['bytes'].iloc[i]} bytes); {len(changed)} row(s) differ. "
                f"{self._fix(self.size)}"
            )


class _CachedLoader:
    """Row ``i`` of a table → its cached uint8 image; a class so that it pickles."""

    def __init__(self, cache: ImageCache, positions: np.ndarray) -> None:
        self.cache, self.positions = cache, positions

    def __call__(self, i: int) -> Tensor:
        return self.cache.at(int(self.positions[i]))  # (3, size, size)


def cached_loader(cache: ImageCache, image_ids: Iterable[str]) -> Callable[[int], Tensor]:
    """A loader of row ``i`` (position in ``image_ids``) → uint8 (3, size, size) cached image.

    Args:
        cache: an open :class:`ImageCache`.
        image_ids: the dataset's image_ids in row order (e.g. ``table.frame["image_id"]``).

    Raises:
        DataError: an image_id is not cached (checked once, up front).
    """
    return _CachedLoader(cache, cache.rows(image_ids))
