"""Shallow multi-label baselines on fixed feature vectors (no backbone training, CPU, numpy/torch).

Each class takes X (N, F) float features exported from a trained backbone and Y (N, M) 0/1
labels, and offers ``fit(X, Y, *, seed=0) -> self``, ``predict_scores(X) -> (N, M) float32`` in
[0, 1], ``predict(X)``, ``state_dict()`` and the classmethod ``from_state(state)``.

- ``MLkNN``: ML-kNN (Zhang & Zhou 2007), exact.
- ``LMMOkNN``: large-margin metric learning + kNN (Liu & Tsang, AAAI 2015), our reimplementation.
- ``MLSPL``: self-paced multi-label learning (Li et al., IEEE TNNLS 2018), our reimplementation.
- ``C2AE``: canonical-correlated autoencoder (Yeh et al., AAAI 2017), our reimplementation.

What they share (input checks, the ``ShallowEstimator`` base, the k-NN search) is in ``base``.
"""

from retdm.shallow.c2ae import C2AE
from retdm.shallow.lmmo_knn import LMMOkNN
from retdm.shallow.mlknn import MLkNN
from retdm.shallow.mlspl import MLSPL

__all__ = ["C2AE", "MLSPL", "LMMOkNN", "MLkNN"]
