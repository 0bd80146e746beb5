"""The losses: RETDM's (one paper equation per function) and those of the baselines."""

from retdm.losses.asymmetric import asymmetric_loss
from retdm.losses.c2ae import c2ae_loss, correlation_ranking_loss, latent_alignment_loss, orthogonality_penalty
from retdm.losses.center import CenterLossCenters, multilabel_center_loss
from retdm.losses.classification import classification_loss
from retdm.losses.reconstruction import reconstruction_loss
from retdm.losses.two_way import (
    gated_neighbour_loss,
    image_to_labels_loss,
    labels_to_image_loss,
    two_way_metric_loss,
)

__all__ = [
    "CenterLossCenters",
    "asymmetric_loss",
    "c2ae_loss",
    "classification_loss",
    "correlation_ranking_loss",
    "gated_neighbour_loss",
    "image_to_labels_loss",
    "labels_to_image_loss",
    "latent_alignment_loss",
    "multilabel_center_loss",
    "orthogonality_penalty",
    "reconstruction_loss",
    "two_way_metric_loss",
]
