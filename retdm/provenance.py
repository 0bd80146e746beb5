"""Provenance helpers that need neither torch nor the models: file hashes and Parquet files that
carry, as file metadata, what produced them. Light on purpose: the ``compare`` stage and
``retdm lineage`` import only this.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from retdm.files import atomic_write


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_parquet(frame: pd.DataFrame, path: str | os.PathLike, provenance: dict[str, Any]) -> Path:
    """Write ``frame`` atomically with ``provenance`` (JSON) in the file metadata under ``retdm``."""
    path = Path(path)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {**(table.schema.metadata or {}), b"retdm": json.dumps(provenance, default=str).encode()}
    atomic_write(path, lambda tmp: pq.write_table(table.replace_schema_metadata(meta), tmp))
    return path


def read_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance :func:`write_parquet` recorded in a Parquet file (``{}`` when there is none)."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[b"retdm"]) if b"retdm" in meta else {}
