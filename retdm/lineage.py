"""Lineage: which data, split, validation, model, params and code produced each result row.

Joins two records: the provenance every result Parquet carries in its file metadata (written by
:func:`retdm.provenance.write_parquet`: checkpoint and label-table sha256, config, code revision),
and the pipeline's ``dvc.lock`` (the hash of every stage's inputs and outputs and the params it
ran with). Reads ``dvc.lock`` as YAML; DVC itself is not needed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from retdm.errors import DataError
from retdm.provenance import read_provenance

FIELDS = ("dataset", "method", "seed", "source", "source_hash", "split_table", "split_hash", "validation_report",
          "validation_hash", "checkpoint", "checkpoint_sha256", "params", "code_revision", "trained_code_revision")


def read_lock(path: str | os.PathLike) -> dict[str, Any]:
    """The ``stages`` mapping of a ``dvc.lock`` file (``{}`` when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        return (yaml.safe_load(path.read_text()) or {}).get("stages", {})
    except yaml.YAMLError as err:
        raise DataError(f"{path}: not a readable dvc.lock ({err})") from err


def _out(lock: dict[str, Any], stage: str, suffix: str = "") -> tuple[str | None, str | None]:
    """(path, hash) of the first output of ``stage`` whose path ends with ``suffix``."""
    for out in lock.get(stage, {}).get("outs", []):
        if out["path"].endswith(suffix):
            return out["path"], out.get("md5") or out.get("hash")
    return None, None


def _params(lock: dict[str, Any], stage: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for values in lock.get(stage, {}).get("params", {}).values():
        merged.update(values)
    return merged


def lineage(result: str | os.PathLike, lock_path: str | os.PathLike = "dvc.lock") -> pd.DataFrame:
    """One row per (dataset, method, training seed) of a results Parquet (comparison, metrics or one evaluation).

    Raises:
        DataError: the file is missing or carries no provenance.
    """
    result = Path(result)
    if not result.is_file():
        raise DataError(f"{result}: not found; run `dvc repro` (or `retdm evaluate --out`) first")
    meta = read_provenance(result)
    if not meta:
        raise DataError(f"{result}: carries no retdm provenance in its Parquet metadata; it was not written by retdm")
    # compare writes {"inputs": {path: {"provenance": ...}}}; evaluate writes the provenance itself.
    records = [i["provenance"] for i in meta["inputs"].values()] if "inputs" in meta else [meta]
    lock = read_lock(lock_path)
    rows = []
    for rec in records:
        dataset = _dataset_of(rec) or rec.get("dataset")
        method = rec.get("method")
        seed = (rec.get("config") or {}).get("seed")
        raw = f"download@{dataset}"
        split_table, split_hash = _out(lock, f"split@{dataset}", "split.parquet")
        report, report_hash = _out(lock, f"validate@{dataset}", ".json")
        source_path, source_hash = _out(lock, raw)
        stage_params = {**_params(lock, raw), **_params(lock, f"pretrain@{dataset}-{seed}")}
        for stage in lock:  # the method's own stages: embed, finetune, finetune_baseline, fit, evaluate
            if stage.endswith(f"@{dataset}-{method}-{seed}"):
                stage_params.update(_params(lock, stage))
        rows.append({
            "dataset": dataset, "method": method, "seed": seed,
            "source": json.dumps(_params(lock, raw).get(f"datasets.{dataset}")) if raw in lock else rec.get("data_path"),
            "source_hash": source_hash,
            "split_table": split_table or rec.get("data_path"), "split_hash": split_hash or rec.get("data_sha256"),
            "validation_report": report, "validation_hash": report_hash,
            "checkpoint": rec.get("checkpoint"), "checkpoint_sha256": rec.get("checkpoint_sha256"),
            "params": json.dumps(stage_params or (rec.get("params") or rec.get("config")), sort_keys=True, default=str),
            "code_revision": rec.get("code_revision"), "trained_code_revision": rec.get("trained_code_revision"),
        })
    return pd.DataFrame(rows, columns=list(FIELDS))


def _dataset_of(record: dict[str, Any]) -> str | None:
    """The dataset name of a provenance record in the pipeline's layout: ``data/<dataset>/…``, or
    ``runs/<dataset>/…`` for a feature method (fitted on the features the pipeline exported)."""
    parts = Path(record.get("data_path") or "").parts[:-1]
    for top in ("data", "runs"):
        if top in parts and parts.index(top) + 1 < len(parts):
            return parts[parts.index(top) + 1]
    return None


def format_lineage(frame: pd.DataFrame) -> str:
    """Human-readable: one block per row, one ``field: value`` line per field."""
    blocks = []
    for row in frame.to_dict("records"):
        head = f"{row['dataset']} / {row['method']} / seed {row['seed']}"
        lines = [head, "-" * len(head)] + [f"  {k:<22} {row[k]}" for k in FIELDS[3:]]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
