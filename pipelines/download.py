"""Stage ``download@<dataset>``: get a dataset into ``data/<dataset>/raw/labels.parquet``.

``source`` in ``params.yaml`` names how (``retdm datasets`` lists them):

- ``synthetic``: generated from its seed (images written beside the table);
- ``folder``: your images and CSV (``images:``, ``csv:``);
- ``table``: a label table you made (``table:``), taken as it is: ``validate`` checks it;
- ``scene``, ``mirflickr``, ``coco``, ``voc2007``, ``nuswide``: the official release. ``from:`` is
  a folder holding its official layout (used in place, nothing copied) or its archives (checked
  and extracted into ``data/<dataset>/download/``); without ``from:`` the archives are downloaded
  there, resumably and checked against their published checksums;
- ``mulan``: MULAN ARFF + XML feature files (``options: {arff:, xml:, test_arff:}``).

``options`` go to the importer as they are (e.g. ``{keep_unannotated: true}`` for coco,
``{difficult: ignore}`` for voc2007). The image files and archives are not DVC dependencies
(only these params are; the label table records what it was made from): after changing them in
place, run ``dvc repro -f download@<name>``. Usage: ``python -m pipelines.download DATASET``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from pipelines.params import Layout, dataset_spec, load_params, stage_main
from retdm.data.folder import import_folder
from retdm.data.registry import DATASETS, load_importers
from retdm.data.synthetic import make_synthetic
from retdm.data.table import copy_table
from retdm.errors import ConfigError, DataError

SYNTHETIC_KEYS = ("num_images", "image_size", "seed")
OFFICIAL = ("scene", "mirflickr", "coco", "voc2007", "nuswide")  # importers of an official release folder


def download(name: str, spec: dict[str, Any], out_dir: Path, downloads: Path | None = None) -> Path:
    """Write dataset ``name`` as described by ``spec`` (its ``params.yaml`` entry) to ``out_dir``.

    Args:
        name: the dataset's name in ``params.yaml``.
        spec: its entry.
        out_dir: where ``labels.parquet`` goes.
        downloads: where official archives are fetched and extracted (default ``out_dir/../download``).

    Returns:
        The label table written.
    """
    source, out = spec.get("source"), out_dir / "labels.parquet"
    options = dict(spec.get("options") or {})
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
        import_folder(spec["images"], spec["csv"], out, separator=spec.get("separator", " "), name=name)
    elif source == "table":
        if "table" not in spec:
            raise ConfigError(f"params.yaml datasets.{name}: source 'table' needs `table:` (the path of your label table)")
        if not Path(spec["table"]).is_file():
            raise DataError(f"{spec['table']}: label table of dataset {name!r} not found; write it with "
                            f"`retdm data import` or set datasets.{name}.table in params.yaml")
        copy_table(spec["table"], out)
    elif source in OFFICIAL:
        from retdm.data.download import obtain

        root = obtain(source, downloads or out_dir.parent / "download", from_path=spec.get("from"))
        _call(name, DATASETS.get(source), options, root, out=out)
    elif source == "mulan":
        _call(name, DATASETS.get(source), options, out=out)
    else:
        raise ConfigError(f"params.yaml datasets.{name}.source is {source!r}; the pipeline can download: "
                          f"{', '.join(('synthetic', 'folder', 'table', *OFFICIAL, 'mulan'))}")
    return out


def _call(name: str, importer, options: dict[str, Any], *args: Any, out: Path) -> None:
    """``importer(*args, out=out, name=name, **options)``; an option it does not take lists those it does."""
    taken = [p for p in inspect.signature(importer).parameters if p not in ("root", "out", "name")]
    unknown = sorted(set(options) - set(taken))
    if unknown:
        raise ConfigError(f"params.yaml datasets.{name}.options: {unknown} unknown to the "
                          f"{importer.__name__} importer; it takes {taken}")
    importer(*args, out=out, name=name, **options)


def main(dataset: str) -> None:
    """python -m pipelines.download DATASET: the dataset's raw label table."""
    load_importers()
    params = load_params()
    layout = Layout(dataset)
    download(dataset, dataset_spec(params, dataset), layout.raw, layout.downloads)


if __name__ == "__main__":
    stage_main(main)
