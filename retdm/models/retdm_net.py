"""The whole RETDM network: Φcnn, Φcls, Φdnn and Φrec in one module."""

from __future__ import annotations

from torch import Tensor, nn

from retdm.models.heads import ClassificationHead, LabelEmbedding, ReconstructionHead


class RETDMNet(nn.Module):
    """Image branch (backbone Φcnn + classifier Φcls) and label branch (Φdnn + Φrec).

    The attribute names are the parameter groups the training stages freeze and unfreeze:
    ``backbone``, ``classifier``, ``label_net``, ``reconstructor``.

    Args:
        backbone: Φcnn, any module mapping (B, 3, H, W) images to (B, D) embeddings.
        num_labels: M.
        embed_dim: D; must equal the backbone's output width.
        label_hidden: hidden width of Φdnn.
    """

    def __init__(self, backbone: nn.Module, num_labels: int, embed_dim: int, label_hidden: int = 512) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = ClassificationHead(embed_dim, num_labels)
        self.label_net = LabelEmbedding(num_labels, embed_dim, label_hidden)
        self.reconstructor = ReconstructionHead(embed_dim, num_labels)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) → f_I (B, D) and classification logits (B, M)."""
        f_img = self.backbone(images)  # (B, D)
        return f_img, self.classifier(f_img)
