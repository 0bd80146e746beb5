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
``{difficult: ignore}`` for voc2007).

``inputs`` (required) is the file or folder the dataset is made from: ``dvc.yaml`` lists it as a
dependency of ``download@<name>``, so editing a label in your CSV, replacing an image or a table
re-runs download and everything after it (``dvc status`` says so). It must hold every file the
entry names (``images``, ``csv``, ``table`` and the images the table points to, ``from``, the
MULAN files), which :func:`check_inputs` enforces before anything is read. Why a key of its own:
DVC dependencies are paths written into ``dvc.yaml``, and its templates cannot leave a path out
for a dataset without it (``${item.csv}`` fails for ``synthetic``) nor splice in a list, so every
dataset names one path; a generated or downloaded dataset, with no file of yours, names its code
(``retdm/data/synthetic.py``; ``retdm/data/sources.py``, whose pinned checksums the downloads are
checked against). A fingerprint written by a stage would not do: ``dvc status`` compares
dependencies only, and a stage that always runs to refresh it would never let the pipeline be up
to date. Usage: ``python -m pipelines.download DATASET``.
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.params import Layout, dataset_spec, load_params, stage_main
from retdm.data.folder import import_folder
from retdm.data.registry import DATASETS, load_importers
from retdm.data.synthetic import make_synthetic
from retdm.data.table import copy_table, recorded_root
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
    check_inputs(name, spec)
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


def check_inputs(name: str, spec: dict[str, Any]) -> None:
    """Check that ``spec["inputs"]`` exists and holds every file of the user's that the dataset is
    made from, so that DVC, which hashes ``inputs``, sees any of them change.

    Raises:
        ConfigError: ``inputs`` is not set, or a file lies outside it (naming the key, the file and the fix).
        DataError: ``inputs`` does not exist.
    """
    if not spec.get("inputs"):
        raise ConfigError(f"params.yaml datasets.{name}.inputs is not set; name the file or folder the dataset is "
                          f"made from (a dependency of download@{name})")
    inputs = Path(spec["inputs"])
    if not inputs.exists():
        raise DataError(f"{inputs}: datasets.{name}.inputs not found; set it to the file or folder the dataset is "
                        f"made from")
    if Path.cwd().resolve().is_relative_to(inputs.resolve()):
        raise ConfigError(f"params.yaml datasets.{name}.inputs is {str(inputs)!r}, which holds this repository and "
                          f"so the pipeline's own outputs; name a file or folder outside it, or inside but outside "
                          f"data/, runs/ and results/")
    used = {key: spec[key] for key in ("images", "csv", "table", "from") if spec.get(key)}
    used |= {f"options.{key}": value for key, value in (spec.get("options") or {}).items()
             if key in ("arff", "xml", "test_arff", "images") and value}
    if spec.get("source") == "table" and Path(spec.get("table", "")).is_file():
        with contextlib.suppress(pa.ArrowInvalid, OSError):  # not Parquet: copy_table says so next
            used["table's retdm.root"] = recorded_root(spec["table"])  # its images, wherever they are
    outside = {key: str(path) for key, path in used.items()
               if not Path(path).resolve().is_relative_to(inputs.resolve())}
    if outside:
        key, path = next(iter(outside.items()))
        raise ConfigError(f"params.yaml datasets.{name}.inputs is {str(inputs)!r}, but {key} ({path}) lies outside "
                          f"it, so DVC would not see it change; set inputs to a folder that holds "
                          f"{', '.join(map(str, used.values()))}")


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
