"""The paper's train and test transforms, described by a spec that checkpoints carry.

Train (paper §III, after [53]): resize to ``resize × resize``, crop ``image_size × image_size``
at one of the four corners or the centre, picked at random. Test: resize to
``image_size × image_size``, single crop. The paper's numbers are 256 and 224; the CPU profile
scales them (73 and 64). Images enter as uint8 (3, H, W) tensors; normalisation uses the
backbone's mean and std.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor


@dataclass(frozen=True)
class TransformSpec:
    """Everything needed to rebuild the transforms; stored in every checkpoint."""

    image_size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    train_crop: str = "five-crop-random (4 corners + centre)"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TransformSpec":
        return cls(data["image_size"], data["resize"], tuple(data["mean"]), tuple(data["std"]), data["train_crop"])


class TrainTransform:
    """Resize, one of five crops at random (torch's global RNG, seeded per epoch), normalise."""

    def __init__(self, spec: TransformSpec) -> None:
        self.spec = spec
        self.mean = torch.tensor(spec.mean).view(3, 1, 1)
        self.std = torch.tensor(spec.std).view(3, 1, 1)

    def __call__(self, image: Tensor) -> Tensor:
        s, c = self.spec.resize, self.spec.image_size
        image = TF.resize(image, [s, s], antialias=True)  # (3, s, s)
        corner = int(torch.randint(5, ()).item())
        top, left = [(0, 0), (0, s - c), (s - c, 0), (s - c, s - c), ((s - c) // 2, (s - c) // 2)][corner]
        image = image[:, top : top + c, left : left + c]  # (3, c, c)
        return (image.float() / 255.0 - self.mean) / self.std


class TestTransform:
    """Resize to ``image_size`` square, normalise."""

    def __init__(self, spec: TransformSpec) -> None:
        self.spec = spec
        self.mean = torch.tensor(spec.mean).view(3, 1, 1)
        self.std = torch.tensor(spec.std).view(3, 1, 1)

    def __call__(self, image: Tensor) -> Tensor:
        c = self.spec.image_size
        image = TF.resize(image, [c, c], antialias=True)  # (3, c, c)
        return (image.float() / 255.0 - self.mean) / self.std
