"""The paper's train and test transforms, described by a spec that checkpoints carry.

Train (paper §III, after [53]): resize to ``resize × resize``, crop ``image_size × image_size``
at one of the four corners or the centre, picked at random. Test: resize to
``image_size × image_size``, single crop. The paper's numbers are 256 and 224; the CPU profile
scales them (73 and 64). Images enter as uint8 (3, H, W) tensors; normalisation uses the
backbone's mean and std.

``source_size`` (0: off) first resizes every decoded image to ``source_size`` square: what the
image cache (``retdm.data.image_cache``) stores once per image. The train transform's resize to
``resize`` is then a no-op when ``source_size == resize``, so the cache only saves decoding; the
test transform resizes a second time, ``source → image_size``. Recording it in the spec makes a
run without the cache preprocess exactly as the cached run did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class TransformSpec:
    """Everything needed to rebuild the transforms; stored in every checkpoint."""

    image_size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    train_crop: str = "five-crop-random (4 corners + centre)"
    source_size: int = 0   # > 0: every image is first resized to source_size square (the image cache's size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TransformSpec":
        return cls(data["image_size"], data["resize"], tuple(data["mean"]), tuple(data["std"]), data["train_crop"],
                   data.get("source_size", 0))  # checkpoints older than the image cache have none


def resize_square(image: Tensor, size: int) -> Tensor:
    """uint8 (3, H, W) → uint8 (3, size, size), bilinear and antialiased; unchanged when already that size.

    The same bytes as ``torchvision.transforms.v2.functional.resize(image, [size, size],
    antialias=True)`` (both reach torch's uint8 antialiased kernel; tests/data/test_image_cache.py
    checks it), without importing torchvision, whose import pulls in ``torch._dynamo`` (about
    2 s of every stage's start-up).
    """
    return F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)[0]  # (3, size, size)


def from_source(image: Tensor, spec: TransformSpec) -> Tensor:
    """The image at the spec's source size (as the image cache holds it); as decoded when 0."""
    return resize_square(image, spec.source_size) if spec.source_size else image


class TrainTransform:
    """Resize, one of five crops at random, normalise.

    The crop of item i is drawn per epoch by ``draw_crops(seed, n)`` (training does, so an item
    gets the same crop in whichever process or loader worker reads it); without it, or without an
    item index, from torch's global RNG.
    """

    def __init__(self, spec: TransformSpec) -> None:
        self.spec = spec
        self.mean = torch.tensor(spec.mean).view(3, 1, 1)
        self.std = torch.tensor(spec.std).view(3, 1, 1)
        self.crops: Tensor | None = None  # (N,) crop per item, 0-3 corners, 4 centre

    def draw_crops(self, seed: int, n: int) -> None:
        """Draw the crop of each of ``n`` items for one epoch from ``seed``."""
        self.crops = torch.randint(5, (n,), generator=torch.Generator().manual_seed(seed))

    def __call__(self, image: Tensor, index: int | None = None) -> Tensor:
        s, c = self.spec.resize, self.spec.image_size
        image = resize_square(from_source(image, self.spec), s)  # (3, s, s)
        drawn = self.crops is not None and index is not None
        corner = int(self.crops[index]) if drawn else int(torch.randint(5, ()).item())
        top, left = [(0, 0), (0, s - c), (s - c, 0), (s - c, s - c), ((s - c) // 2, (s - c) // 2)][corner]
        image = image[:, top : top + c, left : left + c]  # (3, c, c)
        return (image.float() / 255.0 - self.mean) / self.std


class TestTransform:
    """Resize to ``image_size`` square, normalise."""

    def __init__(self, spec: TransformSpec) -> None:
        self.spec = spec
        self.mean = torch.tensor(spec.mean).view(3, 1, 1)
        self.std = torch.tensor(spec.std).view(3, 1, 1)

    def __call__(self, image: Tensor, index: int | None = None) -> Tensor:
        c = self.spec.image_size
        image = resize_square(from_source(image, self.spec), c)  # (3, c, c)
        return (image.float() / 255.0 - self.mean) / self.std
