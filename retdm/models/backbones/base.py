"""What every backbone shares: the :class:`Backbone` interface, the two registries, and reading
pretrained weights from local files (nothing is ever downloaded at run time)."""

from __future__ import annotations

import pickle
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from retdm.errors import ConfigError
from retdm.registry import Registry

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

    @property
    def projection(self) -> nn.Module:
        """The layer of the head that maps the pooled trunk features to D, newly initialised (never
        pretrained): with the classifier after it, what a linear probe trains."""
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

# Backbone name → the URL of the ImageNet weights file it loads (torchvision's; its name carries the
# leading hex digits of the file's sha256). Looked up when needed: torchvision loads only then.
WEIGHT_URLS: dict[str, Callable[[], str]] = {}



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


def missing_weights(path: Path, url: str, name: str) -> ConfigError:
    """The error of a weights file that is not in the torch hub cache: where it goes and how to get it."""
    return ConfigError(
        f"pretrained weights file {path.name} not found at {path}; nothing is downloaded at run time. "
        f"`retdm backbones get {name}` downloads it (checked against its published hash), or, on a machine "
        f"without internet, fetch {url} elsewhere and give it with `retdm backbones get {name} --from FILE` "
        f"(or point TORCH_HOME at a directory whose hub/checkpoints/ holds it). Or set pretrained to false."
    )


def read_state_dict(path: Path, url: str | None = None, name: str | None = None) -> dict[str, Tensor]:
    """Load a state dict from ``path`` (CPU, tensors only); a missing or unreadable file raises
    ``ConfigError`` (for ``url``, the file of backbone ``name``: how to get it)."""
    if not path.is_file():
        if url and name:
            raise missing_weights(path, url, name)
        raise ConfigError(f"pretrained weights file {path.name} not found at {path}; set pretrained to false")
    try:
        # weights_only: a checkpoint is data; refuse pickled code from a file copied by hand.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
        again = f"; fetch it again from {url}" if url else ""
        raise ConfigError(f"cannot read pretrained weights {path}: {err}{again}") from err
    if not isinstance(state, dict):
        raise ConfigError(f"pretrained weights {path} hold a {type(state).__name__}, expected a state dict")
    return state


def load_strict(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """Strictly load ``state`` into ``model``; a file for another architecture raises ``ConfigError``."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(f"pretrained weights {path} do not match the architecture: {err}") from err
