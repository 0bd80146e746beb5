"""torchvision's ResNet-18 and ResNet-50, ``fc`` replaced by ``Linear(in, D)``."""

from __future__ import annotations

import functools
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

    @property
    def projection(self) -> nn.Module:
        return self.net.fc

    def forward_head(self, feats: Tensor) -> Tensor:
        """Global average pool and fc: (B, C, h, w) → (B, D)."""
        return self.net.fc(torch.flatten(self.net.avgpool(feats), 1))  # (B, D)


def _resnet(arch: Callable[..., tvm.ResNet], name: str, *, embed_dim: int, pretrained: bool) -> ResNetBackbone:
    """Build the ResNet backbone ``name``; ``pretrained`` loads its ``WEIGHT_URLS`` file from the hub cache."""
    url = WEIGHT_URLS[name]()
    path = hub_checkpoint_path(url)
    state = read_state_dict(path, url, name) if pretrained else None  # fail before building
    net = arch(weights=None)  # weights=None: torchvision must never try to download
    if state is not None:
        load_strict(net, state, path)  # strictly, with the 1000-class fc, before fc is replaced
    return ResNetBackbone(net, embed_dim=embed_dim, weights=f"imagenet:{path.name}" if pretrained else "none")


@BACKBONES.register("resnet18")
def resnet18(*, embed_dim: int = 512, pretrained: bool = False) -> Backbone:
    """ResNet-18, fc replaced by Linear(512, embed_dim)."""
    import torchvision.models as tvm

    return _resnet(tvm.resnet18, "resnet18", embed_dim=embed_dim, pretrained=pretrained)


@BACKBONES.register("resnet50")
def resnet50(*, embed_dim: int = 512, pretrained: bool = False) -> Backbone:
    """ResNet-50, fc replaced by Linear(2048, embed_dim)."""
    import torchvision.models as tvm

    return _resnet(tvm.resnet50, "resnet50", embed_dim=embed_dim, pretrained=pretrained)


def _weights(name: str) -> str:
    import torchvision.models as tvm

    # resnet50: V2 (80.9% top-1) is torchvision's default; pinned here so a torchvision upgrade that
    # changes DEFAULT cannot silently change which file is expected.
    return {"resnet18": tvm.ResNet18_Weights.IMAGENET1K_V1, "resnet50": tvm.ResNet50_Weights.IMAGENET1K_V2}[name].url


WEIGHT_URLS.update({name: functools.partial(_weights, name) for name in ("resnet18", "resnet50")})
