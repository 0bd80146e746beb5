"""RETDM's losses, one paper equation per function."""

from retdm.losses.classification import classification_loss
from retdm.losses.reconstruction import reconstruction_loss
from retdm.losses.two_way import (
    gated_neighbour_loss,
    image_to_labels_loss,
    labels_to_image_loss,
    two_way_metric_loss,
)

__all__ = [
    "classification_loss",
    "gated_neighbour_loss",
    "image_to_labels_loss",
    "labels_to_image_loss",
    "reconstruction_loss",
    "two_way_metric_loss",
]
