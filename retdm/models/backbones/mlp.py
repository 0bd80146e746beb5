"""The ``mlp`` feature backbone: Φcnn for feature tables (MULAN's yeast, emotions, …), registered in
:data:`retdm.models.backbones.FEATURE_BACKBONES`. The paper's Eq. 1 allows any feature extractor;
for vectors that is an MLP.
"""

from __future__ import annotations

from torch import Tensor, nn

from retdm.errors import ConfigError
from retdm.models.backbones.base import FEATURE_BACKBONES

# ---------------------------------------------------------------------------------------------
# mlp: Φcnn for feature vectors (MULAN datasets)
# ---------------------------------------------------------------------------------------------

class MLPBackbone(nn.Module):
    """Φcnn of a feature dataset: standardised features (B, F) → f_I (B, D).

    ``Linear(F, H) → BatchNorm1d(H) → ReLU → Dropout(p) → Linear(H, D)``. One hidden layer as
    wide as the embedding (H = D) gives the shallow MULAN inputs (tens to hundreds of features,
    a few thousand items) a non-linear map without a network that memorises them; BatchNorm
    keeps the plain-SGD schedules of the image profiles usable; the dropout (0.2) is light
    because the inputs are already compact. f_I is linear in the last layer, as for the ResNets.
    The inputs come standardised (``retdm.data.dataset.FeatureSpec``), so there is no
    mean/std here, and no pretrained weights.

    Args:
        in_features: F.
        embed_dim: D.
        hidden: H (default D).
        dropout: p.
    """

    def __init__(self, *, in_features: int, embed_dim: int, hidden: int | None = None, dropout: float = 0.2) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.embed_dim = int(embed_dim)
        self.weights = "none"
        hidden = int(hidden or embed_dim)
        self.trunk = nn.Sequential(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                   nn.Dropout(dropout))
        self.fc = nn.Linear(hidden, embed_dim)

    def forward_features(self, x: Tensor) -> Tensor:
        """The hidden layer: (B, F) → (B, H)."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"mlp backbone expects (B, {self.in_features}) feature vectors, got {tuple(x.shape)}")
        return self.trunk(x)

    def forward_head(self, feats: Tensor) -> Tensor:
        """Projection to the embedding: (B, H) → (B, D)."""
        return self.fc(feats)

    def forward(self, x: Tensor) -> Tensor:
        """Embed a batch of feature vectors: (B, F) → f_I (B, D)."""
        return self.forward_head(self.forward_features(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, embed_dim={self.embed_dim}"


@FEATURE_BACKBONES.register("mlp")
def mlp(*, in_features: int, embed_dim: int = 512, pretrained: bool = False) -> nn.Module:
    """Feature vectors (B, F) → Linear(F, D) → BN → ReLU → Dropout(0.2) → Linear(D, D), for MULAN-style datasets."""
    if pretrained:
        raise ConfigError("backbone mlp has no pretrained weights; set model.pretrained to false")
    return MLPBackbone(in_features=in_features, embed_dim=embed_dim)

