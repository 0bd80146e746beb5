"""Training throughput (images/s) of the RETDM trainer against a plain BCE loop on the same network.

Issue #6, part 3: RETDM must train at >= 0.85x the throughput of a textbook BCE loop. Per backbone
(``vgg16`` and ``efficientnet_lite0`` at 224 px, batch 256: the paper's setting), four things are
timed on one model, fed by one DataLoader:

- ``plain``, the baseline: the loop of torchvision's ``references/classification/train.py``
  (``train_one_epoch``) with ``BCEWithLogitsLoss`` on ``nn.Sequential(backbone, classifier)``, i.e.
  our RETDMNet's Φcnn + Φcls (the same layers and FLOPs as the trainer's pretrain stage), SGD with
  the same momentum and weight decay, the same autocast dtype, channels-last model and inputs,
  ``loss.item()`` every step as the reference logs it; with ``--compile`` the backbone compiled as
  ``place()`` compiles it (the two loops share it). Nothing else.
- ``retdm_bce``: the trainer's ``pretrain`` step as ``retdm.train.loop.run_stage`` runs it (``place``,
  ``Trainee``, ``Objective``, ``grad_scaler`` and ``train_step``: the step function run_stage calls),
  imported, not copied; the finite-loss check as run_stage makes it.
- ``retdm``: the trainer's ``finetune`` step with the full loss Lcls + α·(J1 + λJ2) + β·Jrec, way 2
  from the bank (filled first, as the stage does), k = 10.
- ``loader``: the input pipeline alone (DataLoader → ``to_device``): above the others, it does not
  bound them.

Data: in-memory uint8 images at the train resize (256 px), standing in for the image cache's shards
(``data.image_cache``: the cache holds exactly these), made into float inputs per item in the loader
workers by the project's ``TrainTransform`` (one of five 224 crops, normalise), as the real loader
does; pinned memory on CUDA. Labels: 80 with MS-COCO-like co-occurrence (about 3 positives per image,
:func:`coco_like_labels`); the neighbour table is ``label_neighbours`` on them.

Timing: per backbone, ``rounds`` rounds of (loader, plain, retdm_bce, retdm); each run takes
``warmup`` steps (not timed: cuDNN set-up, allocator, and with ``--compile`` the compilation), then
``steps`` timed steps between two CUDA synchronisations. A figure is the best round's images/s.
The learning rate is 1e-3 for all: it does not change the work of a step, and keeps the
from-scratch networks finite (the trainer stops on a non-finite loss). No weights are downloaded.

Modes: ``gpu`` (CUDA present: the sizes above, bf16 autocast where supported, channels-last,
``data.num_workers`` of the paper profile, optional ``--compile``; estimated at about 2 minutes on
an H100 without compile, not yet measured), and ``cpu-reduced`` (no CUDA: 64 px, batch 16, a few
steps, no workers, one torch thread; 105 s on the shared 2-core machine; a smoke run of the same
code, not the target).

Run: ``bash bench/gpu.sh`` or ``python bench/bench_gpu.py [--mode gpu|cpu-reduced] [--compile]``.
``main()`` returns the numbers as a dict, ``rows()`` the rows of ``run_all.py --gpu``.
Legend: N items, M labels, R resize side, S crop side.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

HERE = Path(__file__).resolve().parent
for path in (HERE.parent, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from retdm.checkpoint import build_model  # noqa: E402
from retdm.config import LossConfig, TrainConfig, load_config  # noqa: E402
from retdm.data.transforms import TestTransform, TrainTransform, TransformSpec  # noqa: E402
from retdm.errors import ConfigError, TrainingError  # noqa: E402
from retdm.hardware import torch_threads  # noqa: E402
from retdm.neighbours import EmbeddingBank  # noqa: E402
from retdm.train.data import TrainingData, part_neighbours  # noqa: E402
from retdm.train.loop import Trainee, amp_dtype, grad_scaler, place, set_modes, to_device, train_step  # noqa: E402
from retdm.train.stages import TRAINABLE, Objective, fill_bank, set_trainable  # noqa: E402

TARGET = 0.85            # RETDM images/s over the plain loop's, at least
NUM_LABELS = 80          # MS-COCO's label count
LR = 1e-3
MODES = ("gpu", "cpu-reduced")
VARIANTS = ("loader", "plain", "retdm_bce", "retdm")
NAMES = {"loader": "input pipeline alone (DataLoader -> device)",
         "plain": "plain BCE loop (torchvision-style)",
         "retdm_bce": "retdm trainer, pretrain step (BCE)",
         "retdm": "retdm trainer, finetune step (RETDM, way2=bank, k=10)"}


@dataclass(frozen=True)
class Case:
    """One backbone's measurement: sizes and step counts."""

    backbone: str
    image_size: int
    resize: int
    batch: int
    warmup: int
    steps: int
    rounds: int
    n_fit: int
    n_val: int


# VGG-16 fwd + bwd in bf16 at 224 px, batch 256: 0.2-0.4 s a step on an H100, so 2 rounds x 3
# model variants x 23 steps stay near a minute even at the slow end; EfficientNet-Lite0 is ~3x faster.
CASES = {
    "gpu": (Case("vgg16", 224, 256, 256, warmup=3, steps=20, rounds=2, n_fit=1024, n_val=128),
            Case("efficientnet_lite0", 224, 256, 256, warmup=3, steps=40, rounds=2, n_fit=1024, n_val=128)),
    # 1 torch thread: ~2.2 s a VGG step, ~0.3 s an EfficientNet one; about 1.5 minutes in all
    "cpu-reduced": (Case("vgg16", 64, 73, 16, warmup=1, steps=4, rounds=2, n_fit=128, n_val=32),
                    Case("efficientnet_lite0", 64, 73, 16, warmup=2, steps=10, rounds=2, n_fit=128, n_val=32)),
}

# ---------------------------------------------------------------------------------------------
# data


def coco_like_labels(n: int, m: int, seed: int) -> np.ndarray:
    """(n, m) uint8 multi-hot labels with co-occurrence: 16 topics of 6 core labels each (inclusion
    0.2-0.7), an image from one topic or (30 %) an even mix of two, every label also at 0.5 %;
    about 3 positives per image, never none."""
    rng = np.random.default_rng(seed)
    cores = np.stack([rng.choice(m, 6, replace=False) for _ in range(16)])  # (T, 6)
    probs = np.full((16, m), 0.005)
    for t, core in enumerate(cores):
        probs[t, core] = rng.uniform(0.2, 0.7, 6)
    first, second = rng.integers(16, size=n), rng.integers(16, size=n)
    mixed = rng.random(n) < 0.3
    p = np.where(mixed[:, None], (probs[first] + probs[second]) / 2, probs[first])  # (n, m)
    labels = (rng.random((n, m)) < p).astype(np.uint8)
    empty = ~labels.any(axis=1)
    labels[empty, cores[first[empty], 0]] = 1
    return labels


class InMemoryImages(Dataset):
    """Items ``(image, labels, row)`` as ``LabelTableDataset`` gives them from an image cache.

    Args:
        pixels: (N, 3, R, R) uint8 images at the train resize (what the cache's shards hold).
        labels: (N, M) 0/1.
        transform: the project's ``TrainTransform`` or ``TestTransform``.
    """

    def __init__(self, pixels: Tensor, labels: np.ndarray, transform: Callable[[Tensor, int], Tensor]) -> None:
        self.pixels = pixels
        self.labels = torch.from_numpy(labels.astype(np.float32))  # (N, M)
        self.transform = transform

    def raw(self, i: int) -> Tensor:
        return self.pixels[i].clone()  # a private copy, as ImageCache.at returns

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int]:
        return self.transform(self.raw(i), i), self.labels[i], i

    def images(self, rows: Tensor) -> Tensor:
        return torch.stack([self.transform(self.raw(int(i)), int(i)) for i in rows.reshape(-1)])


def synthetic_training_data(case: Case, mean, std, k: int, seed: int) -> TrainingData:
    """A ``TrainingData`` of random uint8 images and :func:`coco_like_labels`, with its neighbour table
    mined as ``build_training_data`` mines it (``part_neighbours``)."""
    n = case.n_fit + case.n_val
    labels = coco_like_labels(n, NUM_LABELS, seed)
    pixels = torch.randint(0, 256, (n, 3, case.resize, case.resize), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(seed))  # (N, 3, R, R)
    spec = TransformSpec(case.image_size, case.resize, mean, std, source_size=case.resize)
    fit_px, val_px = pixels[:case.n_fit], pixels[case.n_fit:]
    fit_lab, val_lab = labels[:case.n_fit], labels[case.n_fit:]
    neigh, fit_nbr, val_nbr = part_neighbours(fit_lab, val_lab, k)
    return TrainingData(InMemoryImages(fit_px, fit_lab, TrainTransform(spec)),
                        InMemoryImages(fit_px, fit_lab, TestTransform(spec)),
                        InMemoryImages(val_px, val_lab, TestTransform(spec)), neigh, fit_nbr, val_nbr,
                        torch.from_numpy(neigh.sets).float(), spec)


def make_loader(dataset: Dataset, case: Case, workers: int, device: torch.device, seed: int) -> DataLoader:
    """The trainer's loader settings (``pin_memory`` on CUDA, ``data.num_workers``); each ``iter()``
    yields warmup + steps batches. Workers persist across runs so each run's warm-up is not spent
    forking them (run_stage starts them once per epoch, outside any step)."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=(case.warmup + case.steps) * case.batch,
                            generator=torch.Generator().manual_seed(seed))
    return DataLoader(dataset, batch_size=case.batch, sampler=sampler, drop_last=True, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0)


# ---------------------------------------------------------------------------------------------
# the steps


def plain_step(net: nn.Module, device: torch.device, amp: bool, compile_backbone: bool,
               optim: Any) -> Callable[[list[Tensor]], None]:
    """The baseline: torchvision's classification reference loop with BCE, as one step."""
    dtype = amp_dtype(device, amp)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    net.to(device)
    net.to(memory_format=fmt)
    if compile_backbone and not getattr(net[0], "_compiled_call_impl", None):
        net[0].compile()  # as place() compiles it, so both loops share one compiled backbone
    criterion = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=optim.momentum, weight_decay=optim.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    def step(batch: list[Tensor]) -> None:
        images, target, _ = batch
        images = images.to(device, non_blocking=True, memory_format=fmt)
        target = target.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = criterion(net(images), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss.item()  # the reference logs every step's loss

    return step


def trainer_step(model: nn.Module, trainable: list[nn.Module], objective: Objective, cfg: TrainConfig,
                 device: torch.device) -> Callable[[list[Tensor]], None]:
    """One step of ``run_stage``: its placement, optimiser, scaler and ``train_step``."""
    place(model, device, cfg.compile)
    step = Trainee(trainable, objective)
    params = [p for m in trainable for p in m.parameters()]
    optimizer = torch.optim.SGD(params, lr=LR, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
    scaler = grad_scaler(device, cfg.amp)

    def one(batch: list[Tensor]) -> None:
        value, _ = train_step(step, batch, optimizer, scaler, device, cfg.amp)
        if not math.isfinite(value):
            raise TrainingError(f"bench_gpu: the loss became {value}; lower bench_gpu.LR ({LR:g})")

    return one


@dataclass
class Variant:
    prepare: Callable[[], None]   # trainable flags and train/eval modes, before each run
    step: Callable[[list[Tensor]], None]


def variants(model: nn.Module, data: TrainingData, bank: EmbeddingBank, cfg: TrainConfig,
             device: torch.device) -> dict[str, Variant]:
    """The four timed things of one backbone, sharing its model (and compiled backbone)."""
    net = nn.Sequential(model.backbone, model.classifier)
    pre = set_trainable(model, "pretrain")
    bce = Objective(model, data, LossConfig(alpha=0.0, beta=0.0), 1.0, None)
    fine = set_trainable(model, "finetune")
    retdm = Objective(model, data, cfg.loss, 1.0, bank)
    retdm.draw_pools(cfg.seed)
    names = {id(getattr(model, n)): n for n in TRAINABLE["finetune"]}
    fine = [m for m in fine if names[id(m)] in retdm.used_modules()]  # as stages._run filters them

    def trainer(stage: str, trainable: list[nn.Module]) -> Callable[[], None]:
        return lambda: (set_trainable(model, stage), set_modes(model, trainable))

    return {
        "loader": Variant(lambda: None, lambda batch: to_device(batch, device)),
        "plain": Variant(lambda: net.train(), plain_step(net, device, cfg.amp, cfg.compile, cfg.optim)),
        "retdm_bce": Variant(trainer("pretrain", pre), trainer_step(model, pre, bce, cfg, device)),
        "retdm": Variant(trainer("finetune", fine), trainer_step(model, fine, retdm, cfg, device)),
    }


# ---------------------------------------------------------------------------------------------
# timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(variant: Variant, loader: DataLoader, case: Case, device: torch.device) -> float:
    """Training images/s over ``case.steps`` steps after ``case.warmup`` untimed ones."""
    variant.prepare()
    batches = iter(loader)
    for _ in range(case.warmup):
        variant.step(next(batches))
    synchronize(device)
    t0, seen = time.perf_counter(), 0
    for _ in range(case.steps):
        batch = next(batches)
        seen += len(batch[0])
        variant.step(batch)
    synchronize(device)
    return seen / (time.perf_counter() - t0)


def measure_case(case: Case, cfg: TrainConfig, device: torch.device, log: Callable[[str], None]) -> dict[str, Any]:
    """Every variant's best-round images/s for one backbone, and the ratios to the plain loop."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, NUM_LABELS)
    data = synthetic_training_data(case, model.backbone.mean, model.backbone.std, cfg.loss.k, cfg.seed)
    data.fit.transform.draw_crops(cfg.seed, len(data.fit))  # as before_epoch does
    model.to(device)
    bank = EmbeddingBank(len(data.fit), cfg.model.embed_dim, device=device)
    fill_bank(model, data, bank, case.batch, device)  # before place(), as the finetune stage does
    loader = make_loader(data.fit, case, cfg.data.num_workers, device, cfg.seed)
    timed = variants(model, data, bank, cfg, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    log(f"{case.backbone}: set up in {time.perf_counter() - t0:.1f} s; {case.rounds} round(s) of "
        f"{case.warmup} warm-up + {case.steps} timed steps, batch {case.batch}, {case.image_size} px")
    per_round: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(case.rounds):
        for name in VARIANTS:
            per_round[name].append(images_per_second(timed[name], loader, case, device))
            log(f"  round {r + 1}: {name:<10} {per_round[name][-1]:10.1f} img/s")
    best = {v: max(values) for v, values in per_round.items()}
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    result = {**case.__dict__, "img_s": best, "rounds_img_s": per_round, "peak_gpu_gb": peak,
              "distinct_sets": len(data.neighbours.sets),
              "positives_per_image": float(data.fit.labels.sum(1).mean()),
              "ratio_bce": best["retdm_bce"] / best["plain"], "ratio_retdm": best["retdm"] / best["plain"],
              "ratio_loader": best["loader"] / best["plain"], "seconds": time.perf_counter() - t0}
    result["pass"] = result["ratio_retdm"] >= TARGET
    del timed, loader, model, bank, data
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


# ---------------------------------------------------------------------------------------------
# the run


def pick_mode(mode: str | None) -> str:
    """``gpu`` when CUDA is present, else ``cpu-reduced``; a named mode is checked."""
    if mode is None:
        return "gpu" if torch.cuda.is_available() else "cpu-reduced"
    if mode not in MODES:
        raise ConfigError(f"bench_gpu: unknown mode {mode!r}; valid modes are: {', '.join(MODES)}")
    if mode == "gpu" and not torch.cuda.is_available():
        raise ConfigError(f"bench_gpu: mode 'gpu' needs CUDA, which torch {torch.__version__} does not see here; "
                          f"run without --mode (or with --mode cpu-reduced) on this machine")
    return mode


def device_line(device: torch.device) -> str:
    if device.type != "cuda":
        return "CPU"
    return (f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}, cuDNN "
            f"{torch.backends.cudnn.version()})")


def shm_warning(case: Case, workers: int) -> str | None:
    """A warning when /dev/shm cannot hold the workers' prefetched batches (a small container default)."""
    if workers == 0 or not Path("/dev/shm").is_dir():
        return None
    need = 2 * (workers * 2 + 1) * case.batch * 3 * case.image_size ** 2 * 4  # prefetch 2 per worker, float32
    free = shutil.disk_usage("/dev/shm").free
    if free >= need:
        return None
    return (f"/dev/shm has {free / 1e9:.1f} GB free, the {workers} loader workers may need {need / 1e9:.1f} GB: "
            f"run the container with --shm-size={int(need / 1e9) + 1}g, or pass --workers 0")


def main(mode: str | None = None, *, backbones: list[str] | None = None, compile_backbone: bool = False,
         steps: int | None = None, warmup: int | None = None, rounds: int | None = None, batch: int | None = None,
         size: int | None = None, workers: int | None = None, threads: int | None = None,
         log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure every case of ``mode`` (None: ``gpu`` if CUDA is present, else ``cpu-reduced``).

    Args:
        mode: ``gpu`` or ``cpu-reduced``.
        backbones: a subset of the mode's cases (default: all).
        compile_backbone: torch.compile the backbone (both loops share it; compile time falls in the warm-up).
        steps, warmup, rounds, batch, size: override the mode's case values (size: the crop side;
            the resize side keeps the paper's 256/224 ratio).
        workers: DataLoader workers (default: the paper profile's ``data.num_workers`` on a GPU, 0 on CPU).
        threads: torch CPU threads (0: torch's default; default: 0 on a GPU, 1 in ``cpu-reduced``, where
            a team of 2 on a shared 2-core machine measured 25x slower than one thread).
        log: progress lines (default: stderr).

    Returns:
        ``mode``, ``device``, ``settings`` and one dict per case under ``cases`` (``img_s`` per variant,
        ``ratio_retdm``, ``pass`` ...) and ``wall_s``.

    Raises:
        ConfigError: an unknown mode or backbone, or ``gpu`` without CUDA.
    """
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    mode = pick_mode(mode)
    device = torch.device("cuda", torch.cuda.current_device()) if mode == "gpu" else torch.device("cpu")
    cases = CASES[mode]
    known = [c.backbone for c in cases]
    unknown = sorted(set(backbones or known) - set(known))
    if unknown:
        raise ConfigError(f"bench_gpu: backbone(s) {unknown} are not measured; choose from {', '.join(known)}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if workers is None:
        workers = min(load_config("paper").data.num_workers, max(cores - 1, 0)) if mode == "gpu" else 0
    if threads is None:
        threads = 0 if mode == "gpu" else 1
    over = {k: v for k, v in {"steps": steps, "warmup": warmup, "rounds": rounds, "batch": batch}.items()
            if v is not None}
    if size is not None:
        over.update(image_size=size, resize=round(size * 256 / 224))
    dtype = amp_dtype(device, True)
    settings = {"autocast": str(dtype).replace("torch.", "") if dtype else "off (CPU)",
                "channels_last": device.type == "cuda", "pin_memory": device.type == "cuda",
                "num_workers": workers, "threads": threads or torch.get_num_threads(), "compile": compile_backbone,
                "cudnn_benchmark": device.type == "cuda", "lr": LR}  # place() turns it on for all loops
    log(f"bench_gpu: mode {mode} on {device_line(device)}; " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    results = []
    for case in cases:
        if case.backbone not in (backbones or known):
            continue
        case = replace(case, **over)
        cfg = load_config("paper" if mode == "gpu" else "cpu", {
            "model.backbone": case.backbone, "model.pretrained": False, "data.image_size": case.image_size,
            "data.resize": case.resize, "data.batch_size": case.batch, "data.num_workers": workers,
            "loss.way2": "bank", "loss.k": 10, "compile": compile_backbone, "amp": True})
        warning = shm_warning(case, workers)
        if warning:
            log(f"WARNING: {warning}")
        with torch_threads(threads):
            results.append(measure_case(case, cfg, device, log))
    return {"mode": mode, "device": device_line(device), "settings": settings, "cases": results,
            "target": TARGET, "wall_s": time.perf_counter() - t0}


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of ``run_all.py``: images/s (``unit``) of the trainer's steps and of the input
    pipeline against the plain loop's, ratio = measured / baseline (higher is better)."""
    out = []
    for c in result["cases"]:
        compiled = ", compiled" if result["settings"]["compile"] else ""
        case = (f"{c['backbone']}, {c['image_size']} px, batch {c['batch']}; {result['mode']} on "
                f"{result['device']}{compiled}")
        base = dict(benchmark="gpu_throughput", case=case, baseline=NAMES["plain"], unit="img/s",
                    baseline_value=c["img_s"]["plain"], ratio_kind="throughput")
        out += [
            dict(base, measured=NAMES["retdm"], measured_value=c["img_s"]["retdm"], ratio=c["ratio_retdm"],
                 target=f">= {TARGET}x", passed=c["pass"]),
            dict(base, measured=NAMES["retdm_bce"], measured_value=c["img_s"]["retdm_bce"], ratio=c["ratio_bce"],
                 target="(none)", passed=None),
            dict(base, measured=NAMES["loader"], measured_value=c["img_s"]["loader"], ratio=c["ratio_loader"],
                 target="(none: above 1x, the loader does not bound the steps)", passed=None),
        ]
    return out


def report(result: dict[str, Any]) -> str:
    """The figures as text: mode, device, settings, then per backbone each variant's images/s and ratio."""
    s = result["settings"]
    on = {True: "on", False: "off"}
    lines = [f"mode: {result['mode']} on {result['device']}",
             (f"settings: autocast {s['autocast']}, channels-last {on[s['channels_last']]}, pinned memory "
              f"{on[s['pin_memory']]}, {s['num_workers']} loader workers, {s['threads']} torch thread(s), "
              f"torch.compile {on[s['compile']]}, cudnn.benchmark {on[s['cudnn_benchmark']]}, SGD lr {s['lr']:g}; "
              f"data: in-memory uint8 images at the train resize, TrainTransform per item")]
    for c in result["cases"]:
        peak = f", peak GPU memory {c['peak_gpu_gb']:.1f} GB" if c["peak_gpu_gb"] is not None else ""
        lines += ["", (f"{c['backbone']}, {c['image_size']} px, batch {c['batch']}: best of {c['rounds']} round(s) "
                       f"of {c['steps']} timed steps ({c['seconds']:.0f} s{peak}); labels: {NUM_LABELS}, "
                       f"{c['positives_per_image']:.2f} positives/image, {c['distinct_sets']} distinct sets")]
        for v in VARIANTS:
            ratio = "(baseline)" if v == "plain" else f"{c['img_s'][v] / c['img_s']['plain']:.2f}x"
            lines.append(f"  {NAMES[v]:<55} {c['img_s'][v]:10.1f} img/s  {ratio}")
        verdict = "PASS" if c["pass"] else "FAIL"
        lines.append(f"  RETDM / plain = {c['ratio_retdm']:.2f}x, target >= {TARGET}x: {verdict}")
    lines.append(f"\nwall time {result['wall_s']:.0f} s")
    return "\n".join(lines)


def write(result: dict[str, Any], stem: Path) -> None:
    """``stem``.md (the run_all table, then :func:`report`) and ``stem``.parquet (the rows)."""
    import pandas as pd
    import results_table

    where = f"{results_table.machine()}; {result['mode']} mode on {result['device']}"
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    frame = pd.DataFrame([results_table.with_unit(r) for r in rows(result)])
    frame["machine"] = where
    frame.to_parquet(stem.with_suffix(".parquet"), index=False)
    text = results_table.markdown(frame, where, when, f"\n```\n{report(result)}\n```\n")
    stem.with_suffix(".md").write_text(text.replace("# Benchmarks", "# Training throughput (bench/gpu.sh)", 1))


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Defaults: gpu when CUDA is present, else cpu-reduced (64 px, batch 16).")
    parser.add_argument("--mode", choices=MODES, help="default: gpu if CUDA is present, else cpu-reduced")
    parser.add_argument("--backbones", help="comma-separated subset of vgg16,efficientnet_lite0")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone (compile time not timed)")
    parser.add_argument("--steps", type=int, help="timed steps per run")
    parser.add_argument("--warmup", type=int, help="untimed steps before each run")
    parser.add_argument("--rounds", type=int, help="rounds over all variants; the best counts")
    parser.add_argument("--batch", type=int, help="batch size")
    parser.add_argument("--size", type=int, help="crop side in px (resize keeps 256/224 of it)")
    parser.add_argument("--workers", type=int, help="DataLoader workers")
    parser.add_argument("--threads", type=int, help="torch CPU threads (0: torch's default; cpu-reduced default: 1)")
    parser.add_argument("--out", type=Path, help="also write OUT.md and OUT.parquet (e.g. bench/gpu_results)")
    args = parser.parse_args(argv)
    try:
        result = main(args.mode, backbones=args.backbones.split(",") if args.backbones else None,
                      compile_backbone=args.compile, steps=args.steps, warmup=args.warmup, rounds=args.rounds,
                      batch=args.batch, size=args.size, workers=args.workers, threads=args.threads)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report(result))
    if args.out is not None:
        write(result, args.out)
        print(f"\nwrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.parquet')}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
