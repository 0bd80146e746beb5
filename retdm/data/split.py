"""How a table's rows are split: the seeded train/test assignment (the paper's 80/20) and the
validation part held out of the training rows, on which every method's best epoch and thresholds
are chosen (the test part is never used for a choice)."""

from __future__ import annotations

import numpy as np

from retdm.errors import DataError


def assign_split(n: int, test_fraction: float, seed: int) -> np.ndarray:
    """A seeded random train/test assignment of ``n`` items (the paper's 80/20 when 0.2).

    Returns:
        (n,) array of ``"train"``/``"test"`` strings; exactly ``round(n * test_fraction)`` are test.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    split = np.full(n, "train", dtype=object)
    split[order[: int(round(n * test_fraction))]] = "test"
    return split


def split_validation(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded disjoint (fit, val) row indices of the training split, each sorted."""
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n - n_val < 2:
        raise DataError(f"the training split has {n} images: too few to carve a validation part of "
                        f"{val_fraction:.0%}; add images or change data.val_fraction")
    order = np.random.default_rng([seed, 0xDA7A]).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
