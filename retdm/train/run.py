"""Train a registered method on a label table: the stages it needs, shared where they agree.

Layout under ``out_dir``: ``<method>/<stage>/``, except that ``pretrain`` always lives in
``bce/pretrain/``: it is the BCE baseline, and every other method starts from it. The feature
methods' ``features`` stage (the BCE backbone's embeddings) is shared the same way, in
``bce/features/``. A network stage's directory holds ``best.pt``, ``last.pt`` and ``epochs.csv``;
re-running resumes, and a finished stage is not trained again. A ``fit`` stage holds ``best.pt``.

A feature table (e.g. a MULAN dataset) trains the same stages with a feature backbone
(``model.backbone: mlp``) on its standardised ``feat_*`` columns; the config must name it, an
image backbone on a feature table (or ``mlp`` on images) raises ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from retdm import __version__, distributed
from retdm.checkpoint import build_model
from retdm.config import TrainConfig
from retdm.data.table import read_label_table
from retdm.data.transforms import TransformSpec
from retdm.errors import ConfigError
from retdm.hardware import pick_device, torch_threads
from retdm.methods import FEATURES_FILE, METHODS, Method, stage_dir
from retdm.provenance import file_sha256
from retdm.revision import code_revision
from retdm.train import lock
from retdm.train.data import build_training_data, check_backbone
from retdm.train.features import export_features, fit_estimator
from retdm.train.stages import embed, finetune, pretrain, probe

STAGE_FUNCTIONS = {"pretrain": pretrain, "embed": embed, "finetune": finetune, "probe": probe}
# The config sections each stage's result depends on; a resumed stage must agree on them.
STAGE_SECTIONS = {
    "pretrain": ("seed", "data", "model", "optim", "pretrain"),
    "embed": ("seed", "data", "model", "optim", "pretrain", "loss", "embed"),
    "finetune": ("seed", "data", "model", "optim", "pretrain", "loss", "embed", "finetune"),
    "probe": ("seed", "data", "model", "optim", "probe"),
}


def method_config(cfg: TrainConfig, method: Method) -> TrainConfig:
    """``cfg`` with the method's loss overrides applied."""
    return dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, **method.loss)).validate()



def train_method(table_path: str | os.PathLike, out_dir: str | os.PathLike, cfg: TrainConfig,
                 method: str = "retdm", stages: tuple[str, ...] | None = None, *, progress: bool = True,
                 on_epoch_end=None, image_cache: str | os.PathLike | None = None) -> Path:
    """Train ``method`` on the table at ``table_path``, running ``stages`` (default: all it needs).

    A stage reads the best checkpoint of the stage before it, which must exist (run it first).
    Under ``torchrun`` the network stages train data-parallel (``retdm.distributed``); the
    feature stages are not distributed, so run them in one process.
    With ``cfg.data.image_cache``, ``image_cache`` (built at ``cfg.data.resize`` by
    ``retdm.data.image_cache.build_image_cache``) is read instead of decoding the image files; the
    result is the same without it, only slower.

    Each stage directory it writes is locked for the run (``retdm.train.lock``; under torchrun by
    rank 0, the one process that writes), so a second training into the same directories stops
    with the first one's pid instead of interleaving with it.

    Returns:
        The best checkpoint of the last stage run.

    Raises:
        TrainingError: another process is training into one of the stage directories.
    """
    spec = METHODS.get(method)
    cfg = method_config(cfg, spec)
    stages = stages or spec.stages
    unknown = [s for s in stages if s not in spec.stages]
    if unknown:
        raise ConfigError(f"method {method!r} has stages {spec.stages}; it has no stage {unknown[0]!r}")
    out_dir = Path(out_dir)
    best = None
    with torch_threads(cfg.threads), distributed.session(cfg.device) as world, \
            lock.hold([stage_dir(out_dir, method, s) for s in stages] if world.main else []):
        network = tuple(s for s in stages if s in STAGE_FUNCTIONS)
        if network:
            best = train_network(table_path, out_dir, cfg, method, network, progress=progress,
                                 on_epoch_end=on_epoch_end, image_cache=image_cache)
        if "features" in stages:
            best = stage_dir(out_dir, method, "features") / FEATURES_FILE
            export_features(stage_dir(out_dir, method, "pretrain") / "best.pt", table_path, best,
                            device=cfg.device, progress=progress, image_cache=image_cache)
        if "fit" in stages:
            best = fit_estimator(stage_dir(out_dir, method, "features") / FEATURES_FILE,
                                 stage_dir(out_dir, method, "fit"), method, cfg.estimator, cfg.seed,
                                 cfg.data.val_fraction, cfg.to_dict(),
                                 table_path=table_path)
    return best


def train_network(table_path: str | os.PathLike, out_dir: Path, cfg: TrainConfig, method: str,
                  stages: tuple[str, ...], *, progress: bool, on_epoch_end,
                  image_cache: str | os.PathLike | None = None) -> Path:
    """The network stages (pretrain, embed, finetune, probe) of ``train_method``; ``cfg`` is resolved."""
    spec = METHODS.get(method)
    progress = progress and distributed.world().main
    table = read_label_table(table_path)
    check_backbone(table, cfg.model)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    in_features = None if table.has_images else len(table.feature_columns)
    model = build_model(cfg, table.num_labels, in_features=in_features)
    transform = (TransformSpec(cfg.data.image_size, cfg.data.resize, model.backbone.mean, model.backbone.std,
                               source_size=cfg.data.resize if cfg.data.image_cache else 0)
                 if table.has_images else None)  # a feature table's standardisation is fitted on its fit part
    data = build_training_data(table, transform, val_fraction=cfg.data.val_fraction, k=cfg.loss.k, seed=cfg.seed,
                               cache=cfg.data.cache_images, progress=progress,
                               image_cache=image_cache if cfg.data.image_cache else None)
    full = cfg.to_dict()
    record: dict[str, Any] = {
        "method": method, "config": full, "label_names": list(table.label_names),
        "transform": data.preprocess.to_dict(),
        "data_path": str(table_path), "data_sha256": file_sha256(table_path), "dataset": table.name,
        "retdm_version": __version__, "code_revision": code_revision(), "num_fit": len(data.fit), "num_val": len(data.val),
        "neighbours": {"k": cfg.loss.k, "distinct_sets": int(len(data.neighbours.sets)),
                       "tied_sets": int(data.neighbours.tied_sets), "tie_break": data.neighbours.tie_break},
    }
    if in_features is not None:
        record["in_features"] = in_features  # load_model rebuilds the mlp from it
    best = None
    for stage in stages:
        record["fingerprint"] = {key: full[key] for key in STAGE_SECTIONS[stage]}
        out = stage_dir(out_dir, method, stage)
        kwargs = {"device": device, "progress": progress, "on_epoch_end": on_epoch_end}
        if spec.stages.index(stage) == 0:  # from the backbone's own weights: pretrain, probe
            best = STAGE_FUNCTIONS[stage](model, data, cfg, out, record, **kwargs)
        else:
            prev = stage_dir(out_dir, method, spec.stages[spec.stages.index(stage) - 1]) / "best.pt"
            best = STAGE_FUNCTIONS[stage](model, data, cfg, out, record, prev, **kwargs)
    return best

