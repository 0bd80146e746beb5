"""Center loss (Wen et al., "A Discriminative Feature Learning Approach for Deep Face
Recognition", ECCV 2016, Eq. 2) adapted to multi-label: a baseline.

Legend: B batch, M labels, D embedding width.

The paper pulls each feature x_i toward the one center of its class, L_C = ½ Σ_i ||x_i − c_{y_i}||²
(Eq. 2). Our adaptation, with one center per label and P_i the positive labels of image i:

    L = (1/B) Σ_i (1/|P_i|) Σ_{l ∈ P_i} ½ ||f_i − c_l||².

Deviations from the paper:

* Multi-label. The single c_{y_i} becomes the mean over the image's positive labels of the
  per-center term, so an image with many labels weighs as much as an image with one. An image
  with no positive label contributes 0 (it stays in the autograd graph; no NaN).
* Reduction. Eq. 2 sums over the mini-batch; we divide by B, as the authors' Caffe layer does.
* Center updates. The paper updates centers by its own rule (Eq. 4: Δc_j is the mean of
  c_j − x_i over the batch's class-j samples, with a 1 in the denominator, applied at rate α).
  We make the centers an ``nn.Parameter`` (``CenterLossCenters``) and learn them by SGD with
  the rest of the network, so their step is ∂L/∂c_l = (1/B) Σ_i [l ∈ P_i] (c_l − f_i)/|P_i|
  times the optimiser's rate; the paper's α has no counterpart.
* The paper's λ balancing L_C against the softmax loss (Eq. 5) is the caller's weight.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from retdm.distances import squared_euclidean_distance


def multilabel_center_loss(features: Tensor, labels: Tensor, centers: Tensor) -> Tensor:
    """L = (1/B) Σ_i (1/|P_i|) Σ_{l∈P_i} ½||f_i − c_l||² (Eq. 2, adapted to multi-label).

    Symbols: x_i / f_i = ``features[i]``, c_l = ``centers[l]``, P_i = {l : ``labels[i, l]`` = 1}.

    Args:
        features: (B, D) image embeddings f_i.
        labels: (B, M) multi-hot labels.
        centers: (M, D) one center c_l per label.

    Returns:
        Scalar loss; 0 (in the graph) for a batch where no image has a positive label.
    """
    num_labels, dim = centers.shape
    batch = features.shape[0]
    if tuple(features.shape) != (batch, dim):
        raise ValueError(f"features: expected shape (B, {dim}) (D from centers), got {tuple(features.shape)}")
    if tuple(labels.shape) != (batch, num_labels):
        raise ValueError(
            f"labels: expected shape {(batch, num_labels)} (B from features, M from centers), got {tuple(labels.shape)}"
        )
    y = labels.to(features.dtype)  # (B, M)
    sq_dist = squared_euclidean_distance(features[:, None, :], centers[None, :, :])  # (B, M)
    num_pos = y.sum(dim=1).clamp(min=1)  # (B,) an empty row sums to 0, so dividing by 1 keeps it 0
    per_image = 0.5 * (y * sq_dist).sum(dim=1) / num_pos  # (B,)
    return per_image.mean()


class CenterLossCenters(nn.Module):
    """The (M, D) learnable centers of ``multilabel_center_loss``, trained by SGD with the rest.

    Args:
        num_labels: M.
        dim: D, the embedding width.
        seed: seed of the normal initialisation (a private generator; global RNG untouched).
        std: standard deviation of the initialisation.
    """

    def __init__(self, num_labels: int, dim: int, *, seed: int = 0, std: float = 1.0) -> None:
        super().__init__()
        if num_labels < 1 or dim < 1:
            raise ValueError(f"num_labels, dim: expected ≥ 1, got {num_labels}, {dim}")
        generator = torch.Generator().manual_seed(seed)
        self.centers = nn.Parameter(torch.randn(num_labels, dim, generator=generator) * std)  # (M, D)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """The center loss of ``features`` (B, D) with multi-hot ``labels`` (B, M); a scalar."""
        return multilabel_center_loss(features, labels, self.centers)
