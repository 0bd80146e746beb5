"""The epoch loop shared by the three stages: SGD, plateau, validation, checkpoints, resume.

Every epoch re-seeds torch, numpy, the sampler and the per-item draws from (seed, stage, epoch),
so a run resumed from the checkpoint of epoch e draws exactly what an uninterrupted run draws from
epoch e+1 on, and ends with the same weights on the CPU. The test split is never read here: the
validation part chooses the best epoch and drives the learning-rate plateau.

Under ``torchrun`` the trainable modules train as one ``DistributedDataParallel`` module, each
process on its share of the global batch; see ``retdm.distributed`` for what keeps W
processes equal to one. On CUDA the images go channels-last, with bf16 autocast (``amp``) and
optionally a compiled backbone (``compile``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from retdm import distributed
from retdm.checkpoint import load_checkpoint, save_checkpoint
from retdm.config import OptimConfig, StageConfig
from retdm.errors import ConfigError, TrainingError
from retdm.files import atomic_write
from retdm.log import bar
from retdm.metrics import evaluate

log = logging.getLogger(__name__)

TIMING_FILE = "timing.csv"  # excluded from DVC hashes by .dvcignore

Batch = tuple[Tensor, Tensor, Tensor]
StepLoss = Callable[[Batch, bool], tuple[Tensor, dict[str, Tensor], Tensor]]
VAL_METRICS = ("mAP", "average_precision", "CF1", "OF1")


@dataclass
class StageRun:
    """How one stage runs. ``step_loss(batch, training)`` returns (loss, its parts, logits)."""

    name: str
    model: nn.Module
    trainable: list[nn.Module]
    step_loss: StepLoss
    fit: Dataset
    val: Dataset
    stage: StageConfig
    optim: OptimConfig
    batch_size: int
    out_dir: Path
    seed: int
    device: torch.device
    amp: bool
    record: dict[str, Any]                       # provenance written into every checkpoint
    extra_state: dict[str, Any] | None = None    # objects with state_dict/load_state_dict (the bank)
    before_training: Callable[[], None] | None = None   # runs once, when the stage starts fresh
    before_epoch: Callable[[int], None] | None = None    # (epoch seed): the epoch's per-item draws
    num_workers: int = 0
    progress: bool = True
    on_epoch_end: Callable[[str, int], None] | None = None   # (stage, epoch), after the checkpoint
    sync_batchnorm: bool = True   # under torchrun: BatchNorm over the global batch
    compile: bool = False         # torch.compile the backbone


class Trainee(nn.Module):
    """The trainable modules with the stage's loss as ``forward``: what DDP wraps, so that exactly
    the parameters that train have their gradients averaged across processes."""

    def __init__(self, trainable: list[nn.Module], step_loss: StepLoss) -> None:
        super().__init__()
        self.parts = nn.ModuleList(trainable)
        self.step_loss = step_loss

    def forward(self, images: Tensor, labels: Tensor, rows: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        return self.step_loss((images, labels, rows), True)


def epoch_seed(seed: int, stage: str, epoch: int) -> int:
    """A seed for one epoch of one stage, independent of everything that ran before."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stage}/{epoch}".encode()).digest()[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stage_seed(seed: int, stage: str) -> int:
    """The data-order seed of one stage; the sampler adds the epoch to it."""
    return epoch_seed(seed, stage, 0) >> 2


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The mixed-precision dtype: bf16 on CUDA where supported, fp16 otherwise; None on the CPU."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, enabled: bool):
    """Autocast to ``amp_dtype``; nothing on the CPU."""
    dtype = amp_dtype(device, enabled)
    return contextlib.nullcontext() if dtype is None else torch.autocast("cuda", dtype=dtype)


def run_stage(run: StageRun, resume: bool = True) -> Path:
    """Train one stage to its end, resuming from ``out_dir/last.pt`` when it exists.

    Writes ``last.pt`` every epoch, ``best.pt`` (lowest validation loss), ``epochs.csv`` (the
    per-epoch losses and validation metrics) and ``timing.csv`` (wall time per epoch); under
    torchrun only rank 0 writes, and every rank returns once they are written.

    Returns:
        The path of ``best.pt``.

    Raises:
        TrainingError: a non-finite loss (the last good checkpoint stays), or a checkpoint
            in ``out_dir`` from a different run.
        ConfigError: a global batch that does not divide among the processes, or a fit part
            smaller than one global batch (raised before anything is written).
    """
    last, best = run.out_dir / "last.pt", run.out_dir / "best.pt"
    world = distributed.world()
    local_batch = distributed.local_batch_size(run.batch_size, world)
    check_one_batch(run.name, len(run.fit), run.batch_size, world.size)
    if world.size > 1 and run.sync_batchnorm:
        distributed.sync_batchnorm(run.model, run.device)
    optimizer = torch.optim.SGD(param_groups(run), lr=run.stage.lr, momentum=run.optim.momentum,
                                weight_decay=run.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=run.optim.lr_factor,
                                                           patience=run.stage.patience)
    scaler = grad_scaler(run.device, run.amp)
    history: list[dict[str, Any]] = []
    start, best_loss, done = 1, math.inf, False
    if resume and last.is_file():
        start, history, best_loss, done = resume_from(run, last, optimizer, scheduler)
    elif run.before_training is not None:
        run.before_training()
    place(run.model, run.device, run.compile)
    step = Trainee(run.trainable, run.step_loss)
    if world.size > 1:
        step = DistributedDataParallel(step, device_ids=[run.device.index] if run.device.type == "cuda" else None,
                                       forward_sync_buffers=not run.sync_batchnorm)  # synced BN buffers agree
    sampler = DistributedSampler(run.fit, num_replicas=world.size, rank=world.rank, shuffle=True,
                                 seed=stage_seed(run.seed, run.name), drop_last=True)
    progress = run.progress and world.main

    for epoch in range(start, run.stage.epochs + 1):
        if done:
            break
        t0 = time.perf_counter()
        seed = epoch_seed(run.seed, run.name, epoch)
        seed_everything(seed)
        if run.before_epoch is not None:
            run.before_epoch(seed)
        sampler.set_epoch(epoch)
        loader = DataLoader(run.fit, batch_size=local_batch, sampler=sampler, drop_last=True,
                            num_workers=run.num_workers, pin_memory=run.device.type == "cuda")
        train_parts = train_epoch(run, step, loader, optimizer, scaler, epoch, progress)
        val_parts = validate(run)
        lr = optimizer.param_groups[0]["lr"]
        if epoch > run.stage.plateau_after:
            scheduler.step(val_parts["val_loss"])
        improved = val_parts["val_loss"] < best_loss
        best_loss = min(best_loss, val_parts["val_loss"])
        done = epoch == run.stage.epochs or optimizer.param_groups[0]["lr"] < run.stage.min_lr * (1 - 1e-9)
        history.append({"stage": run.name, "epoch": epoch, "lr": lr, **train_parts, **val_parts,
                        "best": improved})
        if world.main:
            save_epoch(run, history, improved, {
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
                "history": history, "done": done, "best_val_loss": best_loss}, time.perf_counter() - t0)
            if run.on_epoch_end is not None:
                run.on_epoch_end(run.name, epoch)
    if done and world.main and not best.is_file():  # resumed a finished run whose best.pt was removed
        save_checkpoint(best, load_checkpoint(last))
    distributed.barrier()  # the next stage, on every rank, starts from the best.pt rank 0 wrote
    return best


def param_groups(run: StageRun) -> list[dict[str, Any]]:
    """The trainable parameters as SGD groups: the new layers at the stage's lr, first (so
    ``param_groups[0]`` carries the stage's lr: every stage trains a head), and the backbone's
    trunk at ``optim.trunk_lr_scale`` × that lr. One group when the scale is 1."""
    params = [p for m in run.trainable for p in m.parameters()]
    scale = run.optim.trunk_lr_scale
    if scale == 1.0:
        return [{"params": params}]
    backbone = run.model.get_submodule("backbone")
    head = {id(p) for p in backbone.projection.parameters()}
    trunk = {id(p) for p in backbone.parameters()} - head
    groups = [{"params": [p for p in params if id(p) not in trunk]},
              {"params": [p for p in params if id(p) in trunk], "lr": run.stage.lr * scale}]
    return [g for g in groups if g["params"]]


def resume_from(run: StageRun, last: Path, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau) -> tuple[int, list[dict[str, Any]], float, bool]:
    """Load ``last.pt`` into the model, optimizer, scheduler and extra state of ``run``.

    Returns:
        ``(first epoch to run, history, best validation loss, done)``.

    Raises:
        TrainingError: ``last.pt`` was written by another run (fingerprint, data or stage differ).
    """
    ckpt = load_checkpoint(last)
    for key in ("fingerprint", "data_sha256", "stage"):
        if ckpt.get(key) != run.record.get(key):
            raise TrainingError(f"{last}: was written by a different run ({key} differs); "
                                f"remove {run.out_dir} or choose another output directory")
    run.model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    for key, obj in (run.extra_state or {}).items():
        obj.load_state_dict(ckpt["extra"][key])
    return ckpt["epoch"] + 1, ckpt["history"], ckpt["best_val_loss"], ckpt["done"]


def train_epoch(run: StageRun, step: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                scaler: Any, epoch: int, progress: bool) -> dict[str, float]:
    """One pass over ``loader``: ``train_<part>``, each loss part's mean over the steps of every rank.

    Raises:
        TrainingError: a non-finite loss (the last good checkpoint, ``last.pt``, stays).
    """
    set_modes(run.model, run.trainable)
    sums: dict[str, Tensor] = {}
    running = 0.0
    shown = bar(loader, show=progress, desc=f"{run.name} {epoch}/{run.stage.epochs}")
    for n_step, batch in enumerate(shown, start=1):
        value, parts = train_step(step, batch, optimizer, scaler, run.device, run.amp)
        if not math.isfinite(value):
            last = run.out_dir / "last.pt"
            raise TrainingError(
                f"stage {run.name!r}: the loss became {value} at epoch {epoch}, step {n_step}; training "
                f"stopped, the last good checkpoint is {last if last.is_file() else '(none yet)'}. "
                f"Lower {run.name}.lr (now {optimizer.param_groups[0]['lr']:g}) or check the data"
            )
        for key, part in parts.items():
            sums[key] = sums.get(key, 0.0) + part
        running += value
        shown.set_postfix(loss=f"{running / n_step:.4f}")
    steps = max(len(loader), 1) * distributed.world().size  # every rank ran len(loader) steps
    totals = distributed.sum_over_ranks(*(float(v) for v in sums.values()))
    return {f"train_{k}": v / steps for k, v in zip(sums, totals)}


def check_one_batch(stage: str, n_fit: int, batch_size: int, processes: int = 1) -> None:
    """Refuse a fit part that holds less than one full global batch.

    The loader drops the last incomplete batch (BatchNorm, DDP and cuDNN want a fixed batch
    shape), so such a part would run no step at all and the stage would write an untrained
    ``best.pt``. Under torchrun the sampler deals ``n_fit // processes`` items to each process and
    each takes local batches of ``batch_size // processes``: at least one step per epoch exactly
    when ``n_fit >= batch_size``, the rule on any number of processes.

    Raises:
        ConfigError: naming the stage, the fit size, the batch size and the fix.
    """
    if n_fit < batch_size:
        over = f" (the global batch over {processes} processes)" if processes > 1 else ""
        fits = n_fit // processes * processes  # the largest batch that divides among the processes
        lower = f"lower data.batch_size (e.g. --set data.batch_size={fits})" if fits else "train on fewer processes"
        raise ConfigError(f"stage {stage!r}: the fit part has {n_fit} items, fewer than one batch of "
                          f"config key 'data.batch_size' = {batch_size}{over}, so no step would train; "
                          f"{lower} or add training data")


def save_epoch(run: StageRun, history: list[dict[str, Any]], improved: bool, state: dict[str, Any],
               seconds: float) -> None:
    """Rank 0's writes after an epoch: the checkpoints, ``epochs.csv``, ``timing.csv``, a log line."""
    payload = {**run.record, "model": run.model.state_dict(), **state,
               "extra": {k: o.state_dict() for k, o in (run.extra_state or {}).items()}}
    if improved:
        save_checkpoint(run.out_dir / "best.pt", payload)
    save_checkpoint(run.out_dir / "last.pt", payload)
    atomic_write(run.out_dir / "epochs.csv", lambda tmp: pd.DataFrame(history).to_csv(tmp, index=False))
    log_time(run.out_dir / TIMING_FILE, run.name, history[-1]["epoch"], seconds)
    if run.progress:
        log.info(f"{run.name} epoch {history[-1]['epoch']}: " + " ".join(
            f"{k}={v:.4g}" for k, v in history[-1].items() if isinstance(v, float)))


def grad_scaler(device: torch.device, amp: bool) -> torch.amp.GradScaler:
    """Loss scaling for fp16 autocast (CUDA without bf16); a pass-through for bf16 and fp32."""
    return torch.amp.GradScaler("cuda", enabled=amp_dtype(device, amp) == torch.float16)


def train_step(step: nn.Module, batch: list[Tensor], optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, device: torch.device, amp: bool) -> tuple[float, dict[str, Tensor]]:
    """One optimisation step as the trainer takes it: the batch to the device, forward under
    autocast, backward, update. Reading the loss is the step's one wait for the device.

    Returns:
        (the loss, its parts as detached device tensors); a non-finite loss is the caller's to
        refuse (the weights in memory are then spoilt; the checkpoints on disk are not).
    """
    batch = to_device(batch, device)
    with autocast(device, amp):
        loss, parts, _ = step(*batch)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.item(), parts


def place(model: nn.Module, device: torch.device, compile_backbone: bool) -> None:
    """Move the model to ``device``; on CUDA lay images out channels-last (the tensor cores' layout),
    let cuDNN pick its fastest kernels for the fixed batch shape (``drop_last``) and, with
    ``compile_backbone``, compile the backbone in place (its state_dict keys unchanged)."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    if compile_backbone and not getattr(model.backbone, "_compiled_call_impl", None):
        model.backbone.compile()


def to_device(batch: list[Tensor], device: torch.device) -> list[Tensor]:
    """(images, labels) on ``device`` (asynchronously from pinned memory; images channels-last on
    CUDA); the row indices stay on the CPU, where the neighbour tables are looked up."""
    batch = [*(b.to(device, non_blocking=True) for b in batch[:2]), *batch[2:]]
    if device.type == "cuda" and batch[0].dim() == 4:
        batch[0] = batch[0].contiguous(memory_format=torch.channels_last)
    return batch


def log_time(path: Path, stage: str, epoch: int, seconds: float) -> None:
    """Append one epoch's wall time to ``path``. Kept out of checkpoints and ``epochs.csv`` so that
    those are byte-identical across identical runs (``.dvcignore`` excludes this file from hashes)."""
    new = not path.is_file()
    with path.open("a") as f:
        f.write(("stage,epoch,seconds\n" if new else "") + f"{stage},{epoch},{seconds:.3f}\n")


def set_modes(model: nn.Module, trainable: list[nn.Module]) -> None:
    """Train mode for the trainable modules, eval mode (BatchNorm statistics frozen) for the rest."""
    model.eval()
    for module in trainable:
        module.train()


@torch.no_grad()
def validate(run: StageRun) -> dict[str, float]:
    """The stage's loss on the validation part, its classification metrics, and ``val_items``, the
    number of items they count. Under torchrun each rank scores a contiguous, disjoint share and
    the scores are gathered back in item order: every item counts exactly once, on every rank."""
    run.model.eval()
    world = distributed.world()
    if len(run.val) < world.size:
        raise TrainingError(f"the validation part has {len(run.val)} items, fewer than the {world.size} processes; "
                            f"raise data.val_fraction or train on fewer processes")
    part = Subset(run.val, distributed.shard(len(run.val), world))
    loader = DataLoader(part, batch_size=run.batch_size, shuffle=False, num_workers=run.num_workers,
                        pin_memory=run.device.type == "cuda")
    total, scores, labels = 0.0, [], []
    for batch in loader:
        batch = to_device(batch, run.device)
        with autocast(run.device, run.amp):
            loss, _, logits = run.step_loss(batch, False)
        total += loss.item() * len(batch[0])
        scores.append(torch.sigmoid(logits.float()))
        labels.append(batch[1].float())
    total, count = distributed.sum_over_ranks(total, len(part))
    scores, labels = (distributed.gather_shards(torch.cat(x)).cpu().numpy() for x in (scores, labels))
    metrics = evaluate(labels, scores)
    return {"val_loss": total / count, **{f"val_{k}": metrics[k] for k in VAL_METRICS}, "val_items": len(scores)}
