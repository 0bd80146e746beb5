"""``retdm data``: create, get or import a dataset into the Parquet label table."""

from __future__ import annotations

from pathlib import Path

import click

from retdm.cli.edge import RetdmGroup, parse_overrides


@click.group(cls=RetdmGroup)
def data() -> None:
    """Create or import datasets into the Parquet label table."""


@data.command("synth")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("data/synthetic"),
              show_default=True, help="Directory to write images/ and labels.parquet into (replaced on success).")
@click.option("--num-images", default=4000, show_default=True, help="Number of images (train + test).")
@click.option("--image-size", default=64, show_default=True, help="Side of the square RGB images, in pixels.")
@click.option("--seed", default=0, show_default=True, help="Generator seed; the same seed gives identical files.")
@click.option("--test-fraction", default=0.2, show_default=True, help="Share of images in the test split.")
@click.option("--force", is_flag=True,
              help="Replace --out even when it holds files the generator did not write (they are deleted). "
                   "Without it such a directory is refused; a synthetic dataset written before is always replaced.")
def data_synth(out: Path, num_images: int, image_size: int, seed: int, test_fraction: float, force: bool) -> None:
    """Generate the embedded `synthetic` dataset (no download)."""
    from retdm.data.synthetic import make_synthetic

    table = make_synthetic(out, num_images=num_images, image_size=image_size, seed=seed, test_fraction=test_fraction,
                           overwrite=force)
    click.echo(f"wrote {len(table)} images with {table.num_labels} labels to {out}/labels.parquet")


@data.command("import")
@click.argument("images_dir", type=click.Path(path_type=Path))
@click.argument("csv_path", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Label table to write [default: IMAGES_DIR/labels.parquet].")
@click.option("--separator", default=" ", show_default=True, help="Separator of label names in an image,labels CSV.")
@click.option("--test-fraction", default=0.2, show_default=True, help="Test share when the CSV has no split column.")
@click.option("--seed", default=0, show_default=True, help="Seed of that split.")
def data_import(images_dir: Path, csv_path: Path, out: Path | None, separator: str, test_fraction: float,
                seed: int) -> None:
    """Import your own images: IMAGES_DIR plus CSV_PATH (image,label_a,… as 0/1, or image,labels)."""
    from retdm.data.folder import import_folder

    table = import_folder(images_dir, csv_path, out, separator=separator, test_fraction=test_fraction, seed=seed)
    click.echo(f"wrote {len(table)} images with labels {list(table.label_names)} to {out or images_dir / 'labels.parquet'}")


OFFICIAL_SOURCES = ("scene", "mirflickr", "coco", "voc2007", "nuswide")


@data.command("get")
@click.argument("name", type=click.Choice(OFFICIAL_SOURCES))
@click.option("--from", "from_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A folder holding the official layout (used in place) or its archives (checked, then extracted "
                   "into --to). Without it the archives are downloaded.")
@click.option("--to", "dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where archives are downloaded and extracted [default: data/NAME/download].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Label table to write [default: data/NAME/labels.parquet].")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="An importer option, e.g. --option keep_unannotated=true (coco), --option difficult=ignore (voc2007).")
@click.option("--offline", is_flag=True, help="Never download; say which files to place where instead.")
def data_get(name: str, from_path: Path | None, dest: Path | None, out: Path | None, options: tuple[str, ...],
             offline: bool) -> None:
    """Get an official release (download or --from) and import it into a label table.

    \b
    Resumable downloads, checked against the published md5; a file that fails the check is
    kept aside as *.bad. `retdm data describe NAME` says what will be fetched.
    """
    from retdm.data.download import obtain
    from retdm.data.registry import load_importers

    importer = load_importers().get(name)
    root = obtain(name, dest or Path("data") / name / "download", from_path=from_path, offline=offline)
    out = out or Path("data") / name / "labels.parquet"
    table = importer(root, out, **parse_overrides(options, "--option"))
    click.echo(f"wrote {len(table)} images with {table.num_labels} labels of {name} from {root} to {out}")


@data.command("describe")
@click.argument("name", type=click.Choice((*OFFICIAL_SOURCES, "mulan")))
def data_describe(name: str) -> None:
    """What getting an official dataset involves: files, sizes, checksums, licence, layout."""
    from retdm.data.sources import describe

    click.echo(describe(name))


@data.command("mulan")
@click.argument("arff", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("xml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--test-arff", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The official test file (e.g. yeast-test.arff with ARFF yeast-train.arff): keeps MULAN's split.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Label table to write [default: beside ARFF, labels.parquet].")
@click.option("--test-fraction", default=0.2, show_default=True, help="Test share without --test-arff.")
@click.option("--seed", default=0, show_default=True, help="Seed of that split.")
def data_mulan(arff: Path, xml: Path, test_arff: Path | None, out: Path | None, test_fraction: float,
               seed: int) -> None:
    """Import a MULAN feature dataset (ARFF + label XML); train it with --profile features (an MLP)."""
    from retdm.data.mulan import import_mulan

    table = import_mulan(arff, xml, out, test_arff=test_arff, test_fraction=test_fraction, seed=seed)
    click.echo(f"wrote {len(table)} rows, {len(table.feature_columns)} features, labels {list(table.label_names)}"
               f" to {out or arff.parent / 'labels.parquet'}")
