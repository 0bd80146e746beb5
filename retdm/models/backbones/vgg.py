"""VGG-16, the paper's Φcnn: torchvision's VGG-16 with fc8 dropped and fc7 resized to D."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from retdm.models.backbones.base import (
    BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    WEIGHT_URLS,
    Backbone,
    hub_checkpoint_path,
    load_strict,
    read_state_dict,
)

if TYPE_CHECKING:  # torchvision is imported only where a torchvision model is built (~2 s of start-up)
    import torchvision.models as tvm


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

    @property
    def projection(self) -> nn.Module:
        """fc7 resized to D (fc6 stays pretrained, and relu7 follows it: f_I is relu7, as in the paper)."""
        return self.classifier[3]

    def forward_features(self, x: Tensor) -> Tensor:
        """Conv trunk: (B, 3, H, W) → (B, 512, H/32, W/32)."""
        return self.features(x)

    def forward_head(self, feats: Tensor) -> Tensor:
        """Pool to 7×7, flatten, fc6 → fc7: (B, 512, h, w) → (B, D)."""
        x = self.avgpool(feats)  # (B, 512, 7, 7)
        return self.classifier(torch.flatten(x, 1))  # (B, D)


def _vgg(arch: Callable[..., tvm.VGG], name: str, *, embed_dim: int, pretrained: bool) -> VGGBackbone:
    """Build the VGG backbone ``name``; ``pretrained`` loads its ``WEIGHT_URLS`` file from the hub cache."""
    url = WEIGHT_URLS[name]()
    path = hub_checkpoint_path(url)
    # Read the file before building, so a missing one fails at once, not after building 138M params.
    state = read_state_dict(path, url, name) if pretrained else None
    vgg = arch(weights=None)  # weights=None: torchvision must never try to download
    if state is not None:
        # The full 1000-class checkpoint goes in strictly before fc7 is resized, so a wrong file
        # is caught; fc7 is then replaced (and fc8 dropped), so only fc7 starts from scratch.
        load_strict(vgg, state, path)
    return VGGBackbone(vgg, embed_dim=embed_dim, weights=f"imagenet:{path.name}" if pretrained else "none")


@BACKBONES.register("vgg16")
def vgg16(*, embed_dim: int = 512, pretrained: bool = False) -> Backbone:
    """VGG-16, fc8 dropped, fc7 resized to embed_dim (the paper's Φcnn)."""
    import torchvision.models as tvm

    return _vgg(tvm.vgg16, "vgg16", embed_dim=embed_dim, pretrained=pretrained)


def _vgg16_weights() -> str:
    import torchvision.models as tvm

    return tvm.VGG16_Weights.IMAGENET1K_V1.url


WEIGHT_URLS["vgg16"] = _vgg16_weights
