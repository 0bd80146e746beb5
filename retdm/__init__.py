"""retdm: Reconstruction Regularized Two-way Deep Metric learning for multi-label images.

Li et al., "Reconstruction Regularized Deep Metric Learning for Multi-label Image
Classification", IEEE TNNLS (arXiv 2007.13547).
"""

__version__ = "0.1.0"
