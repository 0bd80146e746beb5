"""The epoch loop shared by the three stages: SGD, plateau, validation, checkpoints, resume.

Every epoch re-seeds torch, numpy and the loader from (seed, stage, epoch), so a run resumed
from the checkpoint of epoch e draws exactly what an uninterrupted run draws from epoch e+1 on,
and ends with the same weights on the CPU. The test split is never read here: the validation
part chooses the best epoch and drives the learning-rate plateau.
"""

from __future__ import annotations

import contextlib
import hashlib
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
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from retdm.config import OptimConfig, StageConfig
from retdm.data.table import atomic_write
from retdm.errors import TrainingError
from retdm.metrics import evaluate
from retdm.train.checkpoint import load_checkpoint, save_checkpoint

TIMING_FILE = "timing.csv"  # excluded from DVC hashes by .dvcignore

Batch = tuple[Tensor, Tensor, Tensor]
StepLoss = Callable[[Batch, bool], tuple[Tensor, dict[str, float], Tensor]]
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
    num_workers: int = 0
    progress: bool = True
    on_epoch_end: Callable[[str, int], None] | None = None   # (stage, epoch), after the checkpoint


def epoch_seed(seed: int, stage: str, epoch: int) -> int:
    """A seed for one epoch of one stage, independent of everything that ran before."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stage}/{epoch}".encode()).digest()[:8], "little") >> 1


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch generator with the same seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA where supported (fp16 otherwise); nothing on the CPU."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def run_stage(run: StageRun, resume: bool = True) -> Path:
    """Train one stage to its end, resuming from ``out_dir/last.pt`` when it exists.

    Writes ``last.pt`` every epoch, ``best.pt`` (lowest validation loss), ``epochs.csv`` (the
    per-epoch losses and validation metrics) and ``timing.csv`` (wall time per epoch).

    Returns:
        The path of ``best.pt``.

    Raises:
        TrainingError: a non-finite loss (the last good checkpoint stays), or a checkpoint
            in ``out_dir`` from a different run.
    """
    out, last, best = run.out_dir, run.out_dir / "last.pt", run.out_dir / "best.pt"
    params = [p for m in run.trainable for p in m.parameters()]
    optimizer = torch.optim.SGD(params, lr=run.stage.lr, momentum=run.optim.momentum,
                                weight_decay=run.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=run.optim.lr_factor,
                                                           patience=run.stage.patience)
    scaler = torch.amp.GradScaler("cuda", enabled=run.amp and run.device.type == "cuda"
                                  and not torch.cuda.is_bf16_supported())
    history: list[dict[str, Any]] = []
    start, best_loss, done = 1, math.inf, False
    if resume and last.is_file():
        ckpt = load_checkpoint(last)
        for key in ("fingerprint", "data_sha256", "stage"):
            if ckpt.get(key) != run.record.get(key):
                raise TrainingError(f"{last}: was written by a different run ({key} differs); "
                                    f"remove {out} or choose another output directory")
        run.model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        for key, obj in (run.extra_state or {}).items():
            obj.load_state_dict(ckpt["extra"][key])
        history, best_loss, done = ckpt["history"], ckpt["best_val_loss"], ckpt["done"]
        start = ckpt["epoch"] + 1
    elif run.before_training is not None:
        run.before_training()
    run.model.to(run.device)

    for epoch in range(start, run.stage.epochs + 1):
        if done:
            break
        t0 = time.perf_counter()
        gen = seed_everything(epoch_seed(run.seed, run.name, epoch))
        loader = DataLoader(run.fit, batch_size=run.batch_size, shuffle=True, generator=gen, drop_last=True,
                            num_workers=run.num_workers, pin_memory=run.device.type == "cuda")
        set_modes(run.model, run.trainable)
        sums: dict[str, float] = {}
        bar = tqdm(loader, desc=f"{run.name} {epoch}/{run.stage.epochs}", disable=not run.progress, leave=False)
        for step, batch in enumerate(bar, start=1):
            batch = [b.to(run.device, non_blocking=True) for b in batch]
            with autocast(run.device, run.amp):
                loss, parts, _ = run.step_loss(batch, True)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"stage {run.name!r}: the loss became {loss.item()} at epoch {epoch}, step {step}; training "
                    f"stopped, the last good checkpoint is {last if last.is_file() else '(none yet)'}. "
                    f"Lower {run.name}.lr (now {optimizer.param_groups[0]['lr']:g}) or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix(loss=f"{sums['loss'] / step:.4f}")
        train_parts = {f"train_{k}": v / max(len(loader), 1) for k, v in sums.items()}
        val_parts = validate(run)
        lr = optimizer.param_groups[0]["lr"]
        if epoch > run.stage.plateau_after:
            scheduler.step(val_parts["val_loss"])
        improved = val_parts["val_loss"] < best_loss
        best_loss = min(best_loss, val_parts["val_loss"])
        done = epoch == run.stage.epochs or optimizer.param_groups[0]["lr"] < run.stage.min_lr * (1 - 1e-9)
        history.append({"stage": run.name, "epoch": epoch, "lr": lr, **train_parts, **val_parts,
                        "best": improved})
        payload = {**run.record, "model": run.model.state_dict(), "optimizer": optimizer.state_dict(),
                   "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history, "done": done,
                   "best_val_loss": best_loss,
                   "extra": {k: o.state_dict() for k, o in (run.extra_state or {}).items()}}
        if improved:
            save_checkpoint(best, payload)
        save_checkpoint(last, payload)
        atomic_write(out / "epochs.csv", lambda tmp: pd.DataFrame(history).to_csv(tmp, index=False))
        log_time(out / TIMING_FILE, run.name, epoch, time.perf_counter() - t0)
        if run.progress:
            tqdm.write(f"{run.name} epoch {epoch}: " + " ".join(
                f"{k}={v:.4g}" for k, v in history[-1].items() if isinstance(v, float)))
        if run.on_epoch_end is not None:
            run.on_epoch_end(run.name, epoch)
    if done and not best.is_file():  # resumed a finished run whose best.pt was removed
        save_checkpoint(best, load_checkpoint(last))
    return best


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
    """The stage's loss on the validation part, and its classification metrics."""
    run.model.eval()
    loader = DataLoader(run.val, batch_size=run.batch_size, shuffle=False, num_workers=run.num_workers)
    total, count, scores, labels = 0.0, 0, [], []
    for batch in loader:
        batch = [b.to(run.device) for b in batch]
        with autocast(run.device, run.amp):
            loss, _, logits = run.step_loss(batch, False)
        total += loss.item() * len(batch[0])
        count += len(batch[0])
        scores.append(torch.sigmoid(logits.float()).cpu())
        labels.append(batch[1].cpu())
    metrics = evaluate(torch.cat(labels).numpy(), torch.cat(scores).numpy())
    return {"val_loss": total / count, **{f"val_{k}": metrics[k] for k in VAL_METRICS}}
