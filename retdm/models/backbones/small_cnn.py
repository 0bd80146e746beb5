"""``small_cnn``: a small, fast CNN without pretrained weights, for tests and CPU runs at 64 px."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from retdm.errors import ConfigError
from retdm.models.backbones.base import BACKBONES, HALF, Backbone


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

    @property
    def projection(self) -> nn.Module:
        return self.fc

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
