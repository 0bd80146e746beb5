"""The label embedding net Φdnn and the two heads Φcls and Φrec (paper Eq. 3, 9, 11).

Legend: B batch, M labels, D embedding width, H hidden width.
"""

from __future__ import annotations

from torch import Tensor, nn


class LabelEmbedding(nn.Module):
    """Φdnn (Eq. 3): a label set y ∈ {0,1}^M to f_y ∈ R^D by two FC layers with H hidden units.

    Args:
        num_labels: M.
        embed_dim: D, equal to the image embedding width.
        hidden: H (paper: 512).
    """

    def __init__(self, num_labels: int, embed_dim: int, hidden: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(num_labels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, embed_dim))

    def forward(self, y: Tensor) -> Tensor:
        """(..., M) multi-hot → (..., D)."""
        return self.net(y.float())


class ClassificationHead(nn.Module):
    """Φcls (Eq. 9): one FC layer; σ of its output gives ŷ. The only head used at inference."""

    def __init__(self, embed_dim: int, num_labels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embed_dim, num_labels)

    def forward(self, f_img: Tensor) -> Tensor:
        """(B, D) → (B, M) logits."""
        return self.fc(f_img)


class ReconstructionHead(nn.Module):
    """Φrec (Eq. 11): one FC layer from the label embedding back to the labels, ȳ = Φrec(f_y)."""

    def __init__(self, embed_dim: int, num_labels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embed_dim, num_labels)

    def forward(self, f_lbl: Tensor) -> Tensor:
        """(B, D) → (B, M) reconstruction ȳ."""
        return self.fc(f_lbl)
