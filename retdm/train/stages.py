"""The paper's three training stages (end of section III), each a named function, and the
linear probe's one stage.

=========  ===============================  ============================  ======================
stage      trainable                        frozen                        loss
=========  ===============================  ============================  ======================
pretrain   backbone, classifier             label_net, reconstructor      Lcls (α = β = 0)
embed      label_net, reconstructor         backbone, classifier          α·Jmetric + β·Jrec
finetune   everything                       nothing                       Lcls + α·Jmetric + β·Jrec
probe      backbone.projection, classifier  the rest (the pretrained      Lcls (α = β = 0)
                                            trunk, in eval mode)
=========  ===============================  ============================  ======================

The pretrain model is the BCE baseline. Legend: B batch, M labels, D width, K neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from retdm.checkpoint import load_checkpoint
from retdm.config import LossConfig, TrainConfig
from retdm.data.transforms import TrainTransform
from retdm.distributed import gather_equal
from retdm.errors import ConfigError, TrainingError
from retdm.losses import (
    CenterLossCenters,
    asymmetric_loss,
    classification_loss,
    multilabel_center_loss,
    reconstruction_loss,
    two_way_metric_loss,
)
from retdm.models.retdm_net import RETDMNet
from retdm.neighbours import EmbeddingBank, image_neighbours, sample_pool_items
from retdm.train.data import PartNeighbours, TrainingData
from retdm.train.loop import Batch, StageRun, run_stage

STAGES = ("pretrain", "embed", "finetune")
TRAINABLE = {  # the modules (paths in the model) each stage trains
    "pretrain": ("backbone", "classifier"),
    "embed": ("label_net", "reconstructor"),
    "finetune": ("backbone", "classifier", "label_net", "reconstructor"),
    "probe": ("backbone.projection", "classifier"),
}


def set_trainable(model: RETDMNet, stage: str) -> list[nn.Module]:
    """Freeze every parameter but those of the stage's modules; return the trainable modules."""
    model.requires_grad_(False)
    modules = [model.get_submodule(path) for path in TRAINABLE[stage]]
    for module in modules:
        module.requires_grad_(True)
    return modules


@dataclass
class Objective:
    """L = w_cls·Lcls + α·(J1 + λ·J2) + β·Jrec (+ λc·Lcenter) for one batch (Eq. 8, 13).

    Way-2 images come from the pools of the neighbour label sets: their embeddings are read
    from ``bank`` (``way2="bank"``) or computed by forwarding the images (``"forward"``,
    exact as in the paper, K extra forwards per sample). Lcls is the paper's BCE, or ASL for
    the ``asl`` baseline; the center loss (weight ``loss.center``) is the ``center_loss``
    baseline's, with one learnable center per label in ``centers``.
    """

    model: RETDMNet
    data: TrainingData
    loss: LossConfig
    w_cls: float
    bank: EmbeddingBank | None
    centers: CenterLossCenters | None = None
    draws: dict[bool, Tensor] | None = None  # training? → (N, K) uniforms picking each item's pool images
    images: ImageNeighbourTable | None = None  # retdm_imgnbr: each item's nearest fit images

    def used_modules(self) -> set[str]:
        """The model parts (and ``centers``) this loss reaches: only they may train under DDP."""
        used = {"backbone", "classifier"}
        if self.loss.alpha or self.loss.beta:
            used.add("label_net")
        if self.loss.beta:
            used.add("reconstructor")
        if self.loss.center and self.centers is not None:
            used.add("centers")
        return used

    def draw_pools(self, seed: int) -> None:
        """Draw, for one epoch, which pool image stands for each neighbour set of each fit and
        validation item: per item, so the draw does not depend on the batch or process."""
        g = torch.Generator().manual_seed(seed)
        k = self.data.fit_nbr.index.shape[1]
        self.draws = {True: torch.rand((len(self.data.fit), k), generator=g, dtype=torch.float64),
                      False: torch.rand((len(self.data.val), k), generator=g, dtype=torch.float64)}

    def classify(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Lcls: BCE (mean over labels), or ASL rescaled to the same per-label mean."""
        if self.loss.classification == "asl":
            return asymmetric_loss(logits, labels) / logits.shape[1]
        return classification_loss(logits, labels)

    def __call__(self, batch: Batch, training: bool) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """(L, its parts as detached 0-d tensors, logits) of a batch (images, labels, fit or val rows
        on the CPU). Nothing here waits for the device: the trainer reads the numbers once per epoch."""
        images, labels, rows = batch
        f_img, logits = self.model(images)  # (B, D), (B, M)
        total = torch.zeros((), device=images.device)
        parts: dict[str, Tensor] = {}
        if self.w_cls:
            parts["cls"] = self.classify(logits, labels)
            total = total + self.w_cls * parts["cls"]
        if self.loss.center and self.centers is not None:
            parts["center"] = multilabel_center_loss(f_img, labels, self.centers.centers)
            total = total + self.loss.center * parts["center"]
        if self.loss.alpha or self.loss.beta:
            f_lbl = self.model.label_net(labels)  # (B, D)
            if self.loss.alpha:
                parts["metric"] = self.metric_loss(f_img, f_lbl, rows, training)
                total = total + self.loss.alpha * parts["metric"]
            if self.loss.beta:
                parts["rec"] = reconstruction_loss(self.model.reconstructor(f_lbl), labels)
                total = total + self.loss.beta * parts["rec"]
        if training and self.bank is not None:  # every process stores every process's fresh rows
            self.bank.update(gather_equal(rows.to(f_img.device)), gather_equal(f_img.detach()))
        parts["loss"] = total
        return total, {k: v.detach().float() for k, v in parts.items()}, logits

    def metric_loss(self, f_img: Tensor, f_lbl: Tensor, rows: Tensor, training: bool) -> Tensor:
        rows = rows.cpu()
        nbr = self.data.fit_nbr if training else self.data.val_nbr
        index, mask = nbr.index[rows], nbr.mask[rows]  # (B, K) neighbour set ids
        items = None  # (B, K) fit rows standing for the neighbour sets in way 2
        if self.loss.two_way:
            if self.draws is None:
                raise TrainingError("Objective.draw_pools(seed) must run before each epoch of a two-way stage")
            items = sample_pool_items(self.data.neighbours, index, self.draws[training][rows])
        if self.images is not None:  # the item's nearest fit images join, with their own label sets
            near = self.images.parts[training]
            near_items = near.index[rows]  # (B, Ki) fit rows
            index = torch.cat([index, torch.from_numpy(self.data.neighbours.set_of_item)[near_items]], 1)
            mask = torch.cat([mask, near.mask[rows]], 1)  # (B, K + Ki)
            items = None if items is None else torch.cat([items, near_items], 1)
        f_nbr_lbl = self.model.label_net(self.data.sets[index].to(f_img.device))  # (B, K, D)
        f_nbr_img = None
        if items is not None:
            if self.loss.way2 == "bank":
                f_nbr_img = self.bank.lookup(items.to(f_img.device))  # (B, K, D)
            else:
                source = self.data.fit if training else self.data.fit_eval
                nbr_images = source.images(items).to(f_img.device)  # (B·K, 3, S, S)
                f_nbr_img = self.model.backbone(nbr_images).view(*items.shape, -1)  # (B, K, D)
        return two_way_metric_loss(f_img, f_lbl, f_nbr_lbl, f_nbr_img, mask.to(f_img.device),
                                   lam=self.loss.lam, two_way=self.loss.two_way)


class ImageNeighbourTable:
    """``retdm_imgnbr`` (the paper's future work, §V): each fit and validation item's ``loss.image_k``
    nearest fit images by d(f_I, f_I), whose label sets are further negatives of way 1 and which
    are further negatives of way 2 themselves. Mined once when a stage starts, from the model it
    starts from (embed and finetune both start from the BCE backbone: embed freezes it), not at
    every step as the paper's note feared; kept in the checkpoints, so a resumed stage has the same."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.parts: dict[bool, PartNeighbours] = {}  # training? → (N, Ki) fit rows, mask

    @torch.no_grad()
    def mine(self, model: RETDMNet, data: TrainingData, batch_size: int, device: torch.device,
             fit_embeddings: Tensor | None = None) -> None:
        """Embed the validation part (and the fit part unless given: the bank's) and search."""
        if fit_embeddings is None:
            fit_embeddings = embed_items(model, data.fit_eval, batch_size, device)
        fit, val = fit_embeddings.cpu(), embed_items(model, data.val, batch_size, device).cpu()
        self.parts = {
            True: PartNeighbours(*image_neighbours(fit, fit, data.fit.labels, data.fit.labels, self.k,
                                                   exclude_self=True)),
            False: PartNeighbours(*image_neighbours(val, fit, data.val.labels, data.fit.labels, self.k,
                                                    exclude_self=False))}

    def state_dict(self) -> dict[str, Tensor]:
        return {f"{part}_{name}": getattr(self.parts[training], name)
                for training, part in ((True, "fit"), (False, "val")) for name in ("index", "mask")}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.parts = {training: PartNeighbours(state[f"{part}_index"], state[f"{part}_mask"])
                      for training, part in ((True, "fit"), (False, "val"))}


@torch.no_grad()
def embed_items(model: RETDMNet, part, batch_size: int, device: torch.device) -> Tensor:
    """f_I of every item of a part, in order (eval mode): (N, D) on ``device``."""
    model.eval()
    return torch.cat([model.backbone(images.to(device))
                      for images, _, _ in DataLoader(part, batch_size=batch_size, shuffle=False)])


@torch.no_grad()
def fill_bank(model: RETDMNet, data: TrainingData, bank: EmbeddingBank, batch_size: int,
              device: torch.device) -> None:
    """Embed every fit image once (test transform, eval mode) into the bank."""
    bank.update(torch.arange(len(data.fit_eval), device=device),
                embed_items(model, data.fit_eval, batch_size, device))


def pretrain(model: RETDMNet, data: TrainingData, cfg: TrainConfig, out_dir: Path, record: dict[str, Any],
             *, device: torch.device, progress: bool = True, on_epoch_end=None) -> Path:
    """Stage 1: fine-tune backbone + classifier with BCE alone. This model is the BCE baseline."""
    return _run_bce("pretrain", model, data, cfg, out_dir, record, device, progress, on_epoch_end)


def probe(model: RETDMNet, data: TrainingData, cfg: TrainConfig, out_dir: Path, record: dict[str, Any],
          *, device: torch.device, progress: bool = True, on_epoch_end=None) -> Path:
    """The linear probe: the pretrained backbone frozen (its BatchNorm statistics too), and its
    projection with the classifier, together one linear map of the pooled trunk features, trained
    with BCE alone. The floor every fine-tuned method must beat (Kumar et al., ICLR 2022)."""
    if not cfg.model.pretrained:
        raise ConfigError(f"method 'linear_probe' trains a linear head on pretrained features, but model.pretrained "
                          f"is false ({cfg.model.backbone} from random weights): use a profile with pretrained "
                          f"weights (e.g. lite) or leave linear_probe out of methods")
    return _run_bce("probe", model, data, cfg, out_dir, record, device, progress, on_epoch_end)


def embed(model: RETDMNet, data: TrainingData, cfg: TrainConfig, out_dir: Path, record: dict[str, Any],
          init: Path, *, device: torch.device, progress: bool = True, on_epoch_end=None) -> Path:
    """Stage 2: backbone and classifier frozen; train label net + reconstruction with α·J + β·Jrec."""
    if not (cfg.loss.alpha or cfg.loss.beta):
        raise ConfigError("stage 'embed' trains the label net with α·J + β·Jrec; with loss.alpha = loss.beta = 0 "
                          "it has nothing to learn: set one of them > 0 or train method 'bce'")
    trainable = set_trainable(model, "embed")
    return _run_metric("embed", 0.0, model, trainable, data, cfg, out_dir, record, init, device, progress,
                       on_epoch_end)


def finetune(model: RETDMNet, data: TrainingData, cfg: TrainConfig, out_dir: Path, record: dict[str, Any],
             init: Path, *, device: torch.device, progress: bool = True, on_epoch_end=None) -> Path:
    """Stage 3: train everything with the full loss Lcls + α·J + β·Jrec."""
    trainable = set_trainable(model, "finetune")
    return _run_metric("finetune", 1.0, model, trainable, data, cfg, out_dir, record, init, device, progress,
                       on_epoch_end)


def _run_bce(stage, model, data, cfg, out_dir, record, device, progress, on_epoch_end):
    """A stage that trains its modules with Lcls alone (BCE), from where the model stands."""
    objective = Objective(model, data, LossConfig(alpha=0.0, beta=0.0), 1.0, None)
    return _run(stage, model, set_trainable(model, stage), objective, data, cfg, out_dir, record, device, progress,
                on_epoch_end, bank=None, init=None)


def _run_metric(stage, w_cls, model, trainable, data, cfg, out_dir, record, init, device, progress, on_epoch_end):
    needs_bank = cfg.loss.alpha > 0 and cfg.loss.two_way and cfg.loss.way2 == "bank"
    bank = EmbeddingBank(len(data.fit), cfg.model.embed_dim, device=device) if needs_bank else None
    centers = None
    if cfg.loss.center and stage == "finetune":
        centers = CenterLossCenters(data.num_labels, cfg.model.embed_dim, seed=cfg.seed).to(device)
        trainable = [*trainable, centers]
    images = ImageNeighbourTable(cfg.loss.image_k) if cfg.loss.image_k and cfg.loss.alpha else None
    objective = Objective(model, data, cfg.loss, w_cls, bank, centers, images=images)
    return _run(stage, model, trainable, objective, data, cfg, out_dir, record, device, progress, on_epoch_end,
                bank=bank, init=init)


def _run(stage, model, trainable, objective, data, cfg, out_dir, record, device, progress, on_epoch_end, *,
         bank, init) -> Path:
    if init is not None:
        model.load_state_dict(starting_point(init, record)["model"])
    model.to(device)

    def before_training() -> None:
        if bank is not None:
            fill_bank(model, data, bank, cfg.data.batch_size, device)
        if objective.images is not None:
            objective.images.mine(model, data, cfg.data.batch_size, device,
                                  None if bank is None else bank.memory)

    def before_epoch(seed: int) -> None:
        if isinstance(getattr(data.fit, "transform", None), TrainTransform):  # a feature table has none
            data.fit.transform.draw_crops(seed, len(data.fit))
        objective.draw_pools(seed)

    extra = {"bank": bank} if bank is not None else {}
    if objective.centers is not None:
        extra["centers"] = objective.centers
    if objective.images is not None:
        extra["image_nbr"] = objective.images
    used = objective.used_modules()
    names = {id(model.get_submodule(path)): path.split(".")[0] for path in TRAINABLE[stage]}
    names[id(objective.centers)] = "centers"
    trainable = [m for m in trainable if names[id(m)] in used]  # e.g. Φrec does not train when β = 0
    run = StageRun(
        name=stage, model=model, trainable=trainable, step_loss=objective, fit=data.fit, val=data.val,
        stage=getattr(cfg, stage), optim=cfg.optim, batch_size=cfg.data.batch_size, out_dir=out_dir,
        seed=cfg.seed, device=device, amp=cfg.amp, record={**record, "stage": stage}, extra_state=extra,
        before_training=before_training, before_epoch=before_epoch, num_workers=cfg.data.num_workers,
        progress=progress, on_epoch_end=on_epoch_end, sync_batchnorm=cfg.sync_batchnorm,
        compile=cfg.compile,
    )
    return run_stage(run)


def starting_point(init: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The previous stage's checkpoint, refused unless it was trained on the same data with the
    config sections this stage shares with it (a stage must continue *this* run, not another)."""
    ckpt = load_checkpoint(init)
    if ckpt.get("data_sha256") != record.get("data_sha256"):
        raise TrainingError(f"{init}: was trained on another label table (sha256 {ckpt.get('data_sha256')}); "
                            f"retrain the earlier stage on {record.get('data_path')}")
    for key, value in (ckpt.get("fingerprint") or {}).items():
        if record["fingerprint"].get(key) != value:
            raise TrainingError(f"{init}: was trained with {key} = {value}, this run has {key} = "
                                f"{record['fingerprint'].get(key)}; retrain the earlier stage with this config or "
                                f"set {key} back")
    return ckpt
