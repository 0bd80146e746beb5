"""The label-table contract: one Parquet table per dataset, read by everything downstream.

Columns, in this order:

- ``image_id`` (string, unique): a stable name of the item;
- ``path`` (string, relative to the dataset root) for image datasets, or feature columns
  ``feat_0 … feat_{F-1}`` (float32) for feature datasets;
- ``split`` (string): ``train`` or ``test``;
- one 0/1 ``uint8`` column per label, in the order recorded in the file metadata.

File metadata (Parquet key-value, JSON values) records ``retdm.label_names`` (the order),
``retdm.dataset`` (its name), ``retdm.source`` (how it was made) and, when the images are not
beside the table, ``retdm.root`` (their directory, relative to the table's). Writes are atomic: a
temporary file is renamed into place, so a crash never leaves half a table.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from retdm.data.split import assign_split
from retdm.errors import DataError
from retdm.files import atomic_write

SPLITS = ("train", "test")
RESERVED = ("image_id", "path", "split")
FEATURE_PREFIX = "feat_"
META_PREFIX = "retdm."
IGNORE_KEY = f"{META_PREFIX}ignore"


@dataclass(frozen=True)
class LabelTable:
    """A validated label table.

    Attributes:
        frame: the table, columns as in the module docstring.
        label_names: label column names in their recorded order (M of them).
        root: directory that ``path`` values are relative to.
        name: dataset name.
        source: how the table was made (importer and its options), for provenance.
    """

    frame: pd.DataFrame
    label_names: tuple[str, ...]
    root: Path
    name: str = ""
    source: str = ""

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def has_images(self) -> bool:
        return "path" in self.frame.columns

    @property
    def feature_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c.startswith(FEATURE_PREFIX)]

    def labels(self) -> np.ndarray:
        """Multi-hot labels, (N, M) uint8, in ``label_names`` order."""
        return self.frame[list(self.label_names)].to_numpy(dtype=np.uint8)

    def split(self, which: str) -> "LabelTable":
        """The rows of one split (``train`` or ``test``), index reset."""
        if which not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, got {which!r}")
        part = self.frame[self.frame["split"] == which].reset_index(drop=True)
        return LabelTable(part, self.label_names, self.root, self.name, self.source)

    def take(self, rows: np.ndarray) -> "LabelTable":
        """The given rows (positional indices), index reset."""
        part = self.frame.iloc[np.asarray(rows)].reset_index(drop=True)
        return LabelTable(part, self.label_names, self.root, self.name, self.source)

    def __len__(self) -> int:
        return len(self.frame)


def check_frame(frame: pd.DataFrame, label_names: tuple[str, ...], where: str) -> pd.DataFrame:
    """Check a frame against the contract and return it with canonical column order and dtypes.

    Args:
        frame: the candidate table.
        label_names: the label columns, in order.
        where: file name (or other origin) used in error messages.

    Raises:
        DataError: naming the file, the column and the first offending rows, and the fix.
    """
    check_label_names(label_names, where)
    features = [c for c in frame.columns if str(c).startswith(FEATURE_PREFIX)]
    needed = ["image_id", "split", *label_names] + ([] if features else ["path"])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(
            f"{where}: missing column(s) {missing}; a label table has image_id, path (or {FEATURE_PREFIX}* "
            f"features), split and one column per label {list(label_names)}"
        )
    if len(frame) == 0:
        raise DataError(f"{where}: the dataset is empty (0 rows); add images and labels")
    ids = frame["image_id"].astype(str)
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        rows = dup.index[:5].tolist()
        raise DataError(f"{where}: image_id must be unique; {dup.iloc[0]!r} repeats (rows {rows}); drop or rename duplicates")
    bad_split = ~frame["split"].isin(SPLITS)
    if bad_split.any():
        row = int(np.flatnonzero(bad_split.to_numpy())[0])
        raise DataError(f"{where}: row {row}: split must be 'train' or 'test', got {frame['split'].iloc[row]!r}")
    for name in label_names:
        col = frame[name]
        ok = col.isin([0, 1]) & col.notna()
        if not ok.all():
            row = int(np.flatnonzero(~ok.to_numpy())[0])
            raise DataError(
                f"{where}: label column {name!r}, row {row} (image_id {ids.iloc[row]!r}): expected 0 or 1, "
                f"got {_plain(col.iloc[row])!r}; label columns hold 0/1 only"
            )
    columns = {"image_id": ids.to_numpy()}  # built at once: a feature table has hundreds of columns
    if features:
        columns.update({c: frame[c].to_numpy(dtype=np.float32) for c in features})
    else:
        columns["path"] = frame["path"].astype(str).to_numpy()
    columns["split"] = frame["split"].astype(str).to_numpy()
    columns.update({name: frame[name].to_numpy().astype(np.uint8) for name in label_names})
    return pd.DataFrame(columns)


def check_label_names(label_names: tuple[str, ...], where: str) -> None:
    """Refuse an empty, repeated or reserved (``image_id``, ``path``, ``split``, ``feat_*``) label name.

    Importers call it with the file the names come from, so that the message points there rather
    than at the table being written.

    Raises:
        DataError: naming ``where`` and the offending names.
    """
    if len(label_names) == 0:
        raise DataError(f"{where}: no label columns; a label table needs at least one label")
    clash = [n for n in label_names if n in RESERVED or n.startswith(FEATURE_PREFIX)]
    if clash:
        raise DataError(f"{where}: label names {clash} clash with reserved columns {RESERVED}/{FEATURE_PREFIX}*; rename them")
    if len(set(label_names)) != len(label_names):
        dup = sorted({n for n in label_names if label_names.count(n) > 1})
        raise DataError(f"{where}: duplicate label names {dup}")


def _plain(value):
    """A numpy scalar as the Python value it holds, for readable messages."""
    return value.item() if isinstance(value, np.generic) else value


def write_label_table(table: LabelTable, path: str | os.PathLike, *, ignore: dict[str, list[str]] | None = None
                      ) -> Path:
    """Write ``table`` to ``path`` atomically, with its label order and source in the metadata.

    Args:
        table: the label table.
        path: the Parquet file.
        ignore: label → image_ids whose entry of that label is left out of every metric (VOC's
            "difficult" objects); recorded as ``retdm.ignore``, read back by :func:`ignore_mask`.
    """
    path = Path(path)
    frame = check_frame(table.frame, table.label_names, str(path))
    meta = {
        f"{META_PREFIX}label_names": json.dumps(list(table.label_names)),
        f"{META_PREFIX}dataset": json.dumps(table.name),
        f"{META_PREFIX}source": json.dumps(table.source),
    }
    if ignore:
        unknown = sorted(set(ignore) - set(table.label_names))
        if unknown:
            raise DataError(f"{path}: ignored entries name labels {unknown} that the table does not have")
        meta[IGNORE_KEY] = json.dumps({k: list(v) for k, v in ignore.items()})
    if Path(os.path.abspath(table.root)) != Path(os.path.abspath(path.parent)):
        # Images live elsewhere (e.g. a split table beside the raw data): record where, relative to the table.
        meta[f"{META_PREFIX}root"] = json.dumps(os.path.relpath(os.path.abspath(table.root), os.path.abspath(path.parent)))
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **{k.encode(): v.encode() for k, v in meta.items()}})
    atomic_write(path, lambda tmp: pq.write_table(arrow, tmp))
    return path


def write_imported(out: Path, name: str, label_names: tuple[str, ...], frame: pd.DataFrame, labels: np.ndarray,
                   source: dict, *, ignore: dict[str, list[str]] | None = None) -> LabelTable:
    """The tail every importer shares: ``frame`` (``image_id``, ``path`` or features, ``split``) joined to its
    (N, M) 0/1 ``labels``, the counts every dataset records added to ``source["counts"]`` (images,
    images per split, labels per image, images without a label, images per label), and the table
    written to ``out`` with ``source`` as its ``retdm.source``.

    Returns:
        The written table; its images' folder is ``out``'s (``frame``'s paths are relative to it).
    """
    frame = pd.concat([frame.reset_index(drop=True), pd.DataFrame(labels, columns=list(label_names))], axis=1)
    per_image = labels.sum(axis=1)  # (N,)
    splits = frame["split"].to_numpy()
    source = {**source, "counts": {
        **source.get("counts", {}), "images": len(frame),
        "rows_per_split": {s: int((splits == s).sum()) for s in SPLITS},
        "labels_per_image": round(float(per_image.mean()), 4), "images_without_label": int((per_image == 0).sum()),
        "per_label": dict(zip(label_names, labels.sum(axis=0).tolist())),
    }}
    table = LabelTable(frame, tuple(label_names), out.parent, name, json.dumps(source))
    write_label_table(table, out, ignore=ignore)
    return table


def read_label_table(path: str | os.PathLike, root: str | os.PathLike | None = None,
                     expect_labels: tuple[str, ...] | None = None) -> LabelTable:
    """Read and check a label table.

    Args:
        path: the Parquet file.
        root: directory the ``path`` column is relative to; defaults to the ``retdm.root`` recorded
            in the file (relative to the file's directory), else the file's directory.
        expect_labels: if given, the label names the caller declares; a different count or order raises.

    Raises:
        DataError: the file is missing or unreadable, or breaks the contract.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: label table not found; create it with `retdm data synth` or `retdm data import`")
    try:
        arrow = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: not a readable Parquet file ({err})") from err
    meta = {k.decode(): v.decode() for k, v in (arrow.schema.metadata or {}).items()}
    key = f"{META_PREFIX}label_names"
    if key not in meta:
        raise DataError(f"{path}: file metadata lacks {key!r}; write label tables with retdm.data.write_label_table")
    label_names = tuple(json.loads(meta[key]))
    if expect_labels is not None and tuple(expect_labels) != label_names:
        raise DataError(
            f"{path}: the table has {len(label_names)} labels {list(label_names)}, but {len(expect_labels)} were "
            f"declared {list(expect_labels)}; re-import the dataset or fix the declared label names"
        )
    frame = check_frame(arrow.to_pandas(), label_names, str(path))
    if root is None:
        root = recorded_root(path, meta)
    return LabelTable(
        frame,
        label_names,
        Path(root),
        json.loads(meta.get(f"{META_PREFIX}dataset", '""')),
        json.loads(meta.get(f"{META_PREFIX}source", '""')),
    )


def recorded_root(path: str | os.PathLike, meta: dict[str, str] | None = None) -> Path:
    """The directory the ``path`` column of the table at ``path`` is relative to: its recorded
    ``retdm.root`` (relative to the table's directory), else the table's directory.

    Args:
        path: the Parquet label table.
        meta: its file metadata, decoded, when already read (else read from the file's schema).
    """
    path = Path(path)
    if meta is None:
        meta = {k.decode(): v.decode() for k, v in (pq.read_schema(path).metadata or {}).items()}
    return path.parent / json.loads(meta.get(f"{META_PREFIX}root", '"."'))


def ignore_mask(path: str | os.PathLike, part: LabelTable) -> np.ndarray | None:
    """The entries of ``part`` (rows of the table at ``path``) that metrics leave out.

    Returns:
        (N, M) bool in ``part``'s row and label order, or ``None`` when the table ignores nothing.
    """
    meta = pq.read_schema(path).metadata or {}
    if IGNORE_KEY.encode() not in meta:
        return None
    listed = json.loads(meta[IGNORE_KEY.encode()])
    ids = part.frame["image_id"].to_numpy()
    mask = np.stack([np.isin(ids, listed.get(name, [])) for name in part.label_names], axis=1)  # (N, M)
    return mask if mask.any() else None


def copy_table(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a label table to ``dst`` as it is (rows, columns, metadata), pointing ``retdm.root``
    at its images. No contract check: checking is the pipeline's ``validate`` step, which reports
    every problem at once.

    Raises:
        DataError: ``src`` is missing, unreadable or has no ``retdm.label_names`` metadata.
    """
    arrow, meta = _read_unchecked(Path(src))
    return _write_moved(arrow, meta, Path(src), Path(dst))


def resplit_table(src: str | os.PathLike, dst: str | os.PathLike, *, test_fraction: float = 0.2, seed: int = 0,
                  keep_official: bool = False) -> Path:
    """:func:`copy_table` with a seeded ``train``/``test`` split (the paper's 80/20).

    ``dst`` records in ``retdm.split`` how the split was made.

    Args:
        src: the imported label table.
        dst: where to write the split table.
        test_fraction: share of test items; ``round(n * test_fraction)`` are test.
        seed: seed of the split.
        keep_official: keep ``src``'s own split (datasets with an official one, such as MS-COCO).

    Raises:
        DataError: ``src`` is missing, unreadable, or has no label metadata or split to keep.
    """
    src, dst = Path(src), Path(dst)
    arrow, meta = _read_unchecked(src)
    if keep_official:
        if "split" not in arrow.column_names:
            raise DataError(f"{src}: keep_official is set but the table has no 'split' column; unset it to draw "
                            f"a seeded split")
        how = {"official": True}
    else:
        split = pa.array(assign_split(arrow.num_rows, test_fraction, seed).astype(str))
        if "split" in arrow.column_names:
            arrow = arrow.set_column(arrow.column_names.index("split"), "split", split)
        else:
            arrow = arrow.append_column("split", split)
        how = {"official": False, "test_fraction": test_fraction, "seed": seed}
    meta[f"{META_PREFIX}split".encode()] = json.dumps(how).encode()
    return _write_moved(arrow, meta, src, dst)


def _read_unchecked(src: Path) -> tuple[pa.Table, dict[bytes, bytes]]:
    try:
        arrow = pq.read_table(src)
    except (FileNotFoundError, pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{src}: cannot read the label table ({err}); run the download stage first") from err
    meta = dict(arrow.schema.metadata or {})
    if f"{META_PREFIX}label_names".encode() not in meta:
        raise DataError(f"{src}: file metadata lacks 'retdm.label_names'; write label tables with "
                        f"retdm.data.write_label_table")
    return arrow, meta


def _write_moved(arrow: pa.Table, meta: dict[bytes, bytes], src: Path, dst: Path) -> Path:
    """Write ``arrow`` to ``dst`` with ``retdm.root`` re-pointed from ``src``'s images."""
    root = json.loads(meta.get(f"{META_PREFIX}root".encode(), b'"."'))
    images = os.path.abspath(src.parent / root)
    meta[f"{META_PREFIX}root".encode()] = json.dumps(os.path.relpath(images, os.path.abspath(dst.parent))).encode()
    arrow = arrow.replace_schema_metadata(meta)
    atomic_write(dst, lambda tmp: pq.write_table(arrow, tmp))
    return dst


def read_text(path: Path, fix: str) -> str:
    """The text of an annotation file: UTF-8 (a byte-order mark dropped), universal newlines.

    Raises:
        DataError: the file cannot be read or is not UTF-8; the message names it and ends with ``fix``.
    """
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot be read as UTF-8 text ({err}); {fix}") from err
