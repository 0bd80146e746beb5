"""The typed, frozen configuration tree, read once at the edge.

``load_config(profile, overrides)`` starts from the dataclass defaults, applies a profile from
``profiles.yaml`` (``cpu``, the default, or ``paper``), then dotted ``key=value`` overrides.
Unknown keys, wrong types and out-of-range values raise ``ConfigError`` naming the key; core
functions receive the pieces they need as explicit arguments, never the whole tree.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from retdm.errors import ConfigError

WAY2_MODES = ("bank", "forward")
CLASSIFICATION_LOSSES = ("bce", "asl")
DEVICES = r"auto|cpu|cuda(:\d+)?"
# Floats that YAML 1.2 reads but PyYAML (YAML 1.1: a dot and a signed exponent) leaves as strings:
# ``1e-3``, ``1E5``, ``-2e-4``, ``1.0e5``. A float key accepts them (``--set pretrain.lr=1e-3``).
EXPONENT_FLOAT = r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+"


@dataclass(frozen=True)
class DataConfig:
    """Input pipeline. ``resize``/``crop``: the paper's 256 → 5-crop → 224 scheme, scaled."""

    image_size: int = 64          # test: resize to image_size × image_size; train crop size
    resize: int = 73              # train: resize to resize × resize, then one of 5 crops of image_size
    batch_size: int = 64
    val_fraction: float = 0.1     # carved from the training split to pick epochs and plateau the lr
    num_workers: int = 0          # DataLoader worker processes (0: load in the main process)
    cache_images: bool = True     # decode every image once into memory (small datasets)
    image_cache: bool = False     # resize every image to `resize` once, first (the pipeline's image cache reads
                                  # those from disk); the test transform then resizes resize → image_size

    def validate(self) -> None:
        _require(self.image_size >= 8, "data.image_size", self.image_size, ">= 8")
        _require(self.resize >= self.image_size, "data.resize", self.resize, f">= data.image_size ({self.image_size})")
        _require(self.batch_size >= 2, "data.batch_size", self.batch_size, ">= 2")
        _require(0.0 < self.val_fraction < 1.0, "data.val_fraction", self.val_fraction, "in (0, 1)")
        _require(self.num_workers >= 0, "data.num_workers", self.num_workers, ">= 0 (0: load in the main process)")


@dataclass(frozen=True)
class ModelConfig:
    """Networks: Φcnn (backbone), Φdnn (label net), Φcls, Φrec."""

    backbone: str = "small_cnn"
    embed_dim: int = 512          # d, the shared embedding width (paper: 512)
    label_hidden: int = 512       # hidden units of the two-layer label net (paper: 512)
    pretrained: bool = False

    def validate(self) -> None:
        _require(self.embed_dim >= 1, "model.embed_dim", self.embed_dim, ">= 1")
        _require(self.label_hidden >= 1, "model.label_hidden", self.label_hidden, ">= 1")


@dataclass(frozen=True)
class LossConfig:
    """L = Lcls + α·(J1 + λ·J2) + β·Jrec (paper Eq. 8, 13) and the neighbour mining."""

    alpha: float = 1.0
    beta: float = 1.0
    lam: float = 1.0
    k: int = 10
    two_way: bool = True
    way2: str = "bank"            # "bank": memory of embeddings; "forward": k extra CNN forwards (exact)
    classification: str = "bce"   # Lcls: "bce" (the paper's) or "asl" (the asl baseline)
    center: float = 0.0           # weight of the multi-label center loss (the center_loss baseline)
    image_k: int = 0              # retdm_imgnbr: each image's image_k nearest fit images (by f_I) and their label
                                  # sets join the k label-set neighbours in J (the paper's future work; 0: RETDM)

    def validate(self) -> None:
        _require(self.k >= 1, "loss.k", self.k, ">= 1")
        _require(self.image_k >= 0, "loss.image_k", self.image_k, ">= 0 (0: label-set neighbours only)")
        _require(self.way2 in WAY2_MODES, "loss.way2", self.way2, f"one of {WAY2_MODES}")
        _require(self.classification in CLASSIFICATION_LOSSES, "loss.classification", self.classification,
                 f"one of {CLASSIFICATION_LOSSES}")
        for key in ("alpha", "beta", "lam", "center"):
            _require(getattr(self, key) >= 0, f"loss.{key}", getattr(self, key), ">= 0")


@dataclass(frozen=True)
class StageConfig:
    """One training stage: SGD from ``lr``, ÷10 on a validation-loss plateau, stop below ``min_lr``."""

    epochs: int = 10
    lr: float = 0.1
    min_lr: float = 0.01
    patience: int = 2             # epochs without validation-loss improvement before lr ÷ 10
    # Epochs at the full lr before the plateau rule applies: a network trained from scratch sits
    # on a loss plateau for its first epochs (it predicts the label priors) before it takes off.
    plateau_after: int = 0

    def validate(self, name: str) -> None:
        _require(self.epochs >= 1, f"{name}.epochs", self.epochs, ">= 1")
        _require(self.plateau_after >= 0, f"{name}.plateau_after", self.plateau_after, ">= 0")
        _require(self.lr > 0, f"{name}.lr", self.lr, "> 0")
        _require(0 < self.min_lr <= self.lr, f"{name}.min_lr", self.min_lr, f"in (0, lr={self.lr}]")


@dataclass(frozen=True)
class OptimConfig:
    """SGD of every stage (paper: momentum 0.9, weight decay 1e-4, lr ÷ 10 on a plateau)."""

    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_factor: float = 0.1        # the lr is multiplied by this on a validation-loss plateau
    trunk_lr_scale: float = 1.0   # the backbone's trunk (all of it but the projection to D) trains at this × the
                                  # stage's lr, the new layers at the lr itself: < 1 keeps more of what an
                                  # ImageNet trunk knew (1: one lr for every layer, the paper's)

    def validate(self) -> None:
        _require(0.0 <= self.momentum < 1.0, "optim.momentum", self.momentum, "in [0, 1)")
        _require(self.weight_decay >= 0.0, "optim.weight_decay", self.weight_decay, ">= 0")
        _require(0.0 < self.lr_factor < 1.0, "optim.lr_factor", self.lr_factor, "in (0, 1) (it shrinks the lr)")
        _require(self.trunk_lr_scale > 0.0, "optim.trunk_lr_scale", self.trunk_lr_scale,
                 "> 0 (a frozen trunk is the linear_probe method)")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs. ``profile`` names where the values came from."""

    profile: str = "cpu"
    seed: int = 0
    device: str = "auto"          # "auto": cuda if available, else cpu
    amp: bool = True              # mixed precision on CUDA only; ignored on CPU
    threads: int = 0              # CPU threads of torch (0: its default, all cores); the last bits of the
                                  # results depend on it, so the pipeline fixes it per stage
    compile: bool = False         # torch.compile the backbone (GPU runs; the first steps pay the compile)
    sync_batchnorm: bool = True   # under torchrun: BatchNorm statistics over the global batch, so that W
                                  # processes train as one process with the same global batch would
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    pretrain: StageConfig = field(default_factory=lambda: StageConfig(epochs=12))
    embed: StageConfig = field(default_factory=lambda: StageConfig(epochs=4))
    finetune: StageConfig = field(default_factory=lambda: StageConfig(epochs=6))
    probe: StageConfig = field(default_factory=lambda: StageConfig(epochs=10, min_lr=0.001))  # linear_probe's only stage
    estimator: dict[str, Any] = field(default_factory=dict)  # a feature method's options, e.g. {k: 10}

    def validate(self) -> "TrainConfig":
        self.data.validate()
        self.model.validate()
        self.loss.validate()
        self.optim.validate()
        _require(re.fullmatch(DEVICES, self.device) is not None, "device", self.device,
                 "auto, cpu, cuda or cuda:<index>")
        _require(isinstance(self.estimator, dict), "estimator", self.estimator, "a mapping of options")
        _require(self.threads >= 0, "threads", self.threads, ">= 0 (0: all cores)")
        for name in ("pretrain", "embed", "finetune", "probe"):
            getattr(self, name).validate(name)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def profiles() -> dict[str, dict[str, Any]]:
    """The named profiles of ``retdm/profiles.yaml``."""
    text = resources.files("retdm").joinpath("profiles.yaml").read_text()
    return yaml.safe_load(text)


def load_config(profile: str = "cpu", overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Resolve a config: dataclass defaults ← profile ← dotted overrides (``{"loss.alpha": 0.5}``).

    Raises:
        ConfigError: unknown profile, unknown key, wrong type or out-of-range value.
    """
    known = profiles()
    if not isinstance(profile, str) or profile not in known:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles are: {', '.join(sorted(known))}")
    tree = _merge({}, known[profile] or {})
    for dotted, value in (overrides or {}).items():
        node = tree
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {dotted!r}: {p!r} is not a section")
        node[leaf] = value
    tree["profile"] = profile
    return from_dict(TrainConfig, tree, "").validate()


def from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__} {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(data) - set(fields)))  # YAML keys may be numbers or null
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {[prefix + u for u in unknown]}; valid keys here are: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, key)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and re.fullmatch(EXPONENT_FLOAT, value.strip()):
        return float(value)
    if tp in (int, float, str, bool):
        if type(value) is not tp:
            raise ConfigError(f"config key {key!r}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    if isinstance(tp, types.UnionType):
        raise AssertionError(f"union types are not used in the config ({key})")
    return value


def yaml_problem(err: Exception) -> str:
    """A YAML (or decoding) error in one line: what is wrong and where (PyYAML's own text spans several)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or getattr(err, "context", None)
    if isinstance(err, yaml.MarkedYAMLError) and mark is not None and problem:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(err).split())


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r}: expected {expected}, got {value!r}")
