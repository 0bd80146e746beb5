"""Stage ``download@<dataset>``: get a dataset into ``data/<dataset>/raw/`` (images + labels.parquet).

``source: synthetic`` generates the embedded dataset from its seed; ``source: folder`` imports
your own images and CSV (``images:`` and ``csv:`` paths in ``params.yaml``); ``source: table``
takes a label table you made (``table:``), as it is: the ``validate`` stage checks it. The files
named by ``images``/``csv``/``table`` are not DVC dependencies (only their params are): after
changing them in place, run ``dvc repro -f download@<name>``. Usage:
``python -m pipelines.download DATASET``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.params import Layout, dataset_spec, load_params, stage_main
from retdm.data.folder import import_folder
from retdm.data.registry import DATASETS
from retdm.data.synthetic import make_synthetic
from retdm.data.table import copy_table
from retdm.errors import ConfigError, DataError

SYNTHETIC_KEYS = ("num_images", "image_size", "seed")


def download(name: str, spec: dict[str, Any], out_dir: Path) -> Path:
    """Write dataset ``name`` as described by ``spec`` (its ``params.yaml`` entry) to ``out_dir``.

    Returns:
        The label table written.
    """
    source = spec.get("source")
    if source == "synthetic":
        make_synthetic(out_dir, **{k: spec[k] for k in SYNTHETIC_KEYS if k in spec}, progress=True)
    elif source == "folder":
        missing = [k for k in ("images", "csv") if k not in spec]
        if missing:
            raise ConfigError(f"params.yaml datasets.{name}: source 'folder' needs {missing} (your image folder "
                              f"and its label CSV)")
        if not Path(spec["images"]).is_dir():
            raise DataError(f"{spec['images']}: image folder of dataset {name!r} not found; put your images there "
                            f"or set datasets.{name}.images in params.yaml")
        import_folder(spec["images"], spec["csv"], out_dir / "labels.parquet", separator=spec.get("separator", " "),
                      name=name)
    elif source == "table":
        if "table" not in spec:
            raise ConfigError(f"params.yaml datasets.{name}: source 'table' needs `table:` (the path of your label table)")
        if not Path(spec["table"]).is_file():
            raise DataError(f"{spec['table']}: label table of dataset {name!r} not found; write it with "
                            f"`retdm data import` or set datasets.{name}.table in params.yaml")
        copy_table(spec["table"], out_dir / "labels.parquet")
    else:
        raise ConfigError(f"params.yaml datasets.{name}.source is {source!r}; the pipeline can download: "
                          f"synthetic, folder, table (registered importers: {', '.join(DATASETS.names())})")
    return out_dir / "labels.parquet"


def main(dataset: str) -> None:
    """python -m pipelines.download DATASET: the dataset's raw label table and images."""
    params = load_params()
    download(dataset, dataset_spec(params, dataset), Layout(dataset).raw)


if __name__ == "__main__":
    stage_main(main)
