"""The embedding map (paper Fig. 1): images and label-set embeddings projected to 2-D (PCA or
t-SNE), coloured by label set. Drawn as :mod:`retdm.report.figures` draws (same style, same bytes
for the same input).

Legend: N points (images and label-set embeddings), F input features of a projection.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from retdm.errors import ConfigError, DataError
from retdm.report.figures import GREY, draw_png, series_colour

TOP_GROUPS = 10  # label sets that get their own colour in the embedding map


def _pca(x: np.ndarray, seed: int) -> np.ndarray:
    centred = x - x.mean(axis=0)  # (N, F)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # vt: (min(N, F), F)
    out = centred @ vt[:2].T  # (N, ≤2)
    out = out * np.where(out[np.argmax(np.abs(out), axis=0), range(out.shape[1])] < 0, -1.0, 1.0)  # fix SVD signs
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))  # (N, 2)


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE  # slow to import; only t-SNE needs it

    if len(x) < 4:
        raise DataError(f"project_2d: t-SNE needs at least 4 points, got {len(x)}; use method='pca'")
    tsne = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, (len(x) - 1) / 3))
    return tsne.fit_transform(x)  # (N, 2)


PROJECTIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {"pca": _pca, "tsne": _tsne}


def project_2d(x: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Project points to 2-D for :func:`embedding_map`.

    Args:
        x: (N, F) points, finite.
        method: ``pca`` (numpy SVD, deterministic up to the sign convention fixed here: each axis's
            largest-magnitude coordinate is positive) or ``tsne`` (scikit-learn, init="pca",
            perplexity min(30, (N-1)/3)).
        seed: the t-SNE random state.

    Returns:
        (N, 2) float array.
    """
    if method not in PROJECTIONS:
        raise ConfigError(f"project_2d: unknown method {method!r}; choose one of {sorted(PROJECTIONS)}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise DataError(f"project_2d: expected an (N, F) array with N ≥ 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError(f"project_2d: {int((~np.isfinite(x)).sum())} non-finite values in x; drop or fix those rows")
    return np.asarray(PROJECTIONS[method](x, seed), dtype=np.float64)


def embedding_map(points: np.ndarray, kind: np.ndarray, group: np.ndarray, title: str) -> bytes:
    """Images and label-set embeddings in one 2-D map, coloured by label set.

    Args:
        points: (N, 2) coordinates, e.g. from :func:`project_2d`.
        kind: (N,) ``"image"`` or ``"label set"`` per point.
        group: (N,) the label set of each point as a string (e.g. ``"cat,dog"``).
        title: the figure's title.

    Returns:
        PNG bytes: images as dots, label-set embeddings as large black-edged stars; the
        :data:`TOP_GROUPS` label sets most frequent among the images get colours, the rest are grey
        ("other"); the legend sits outside the plot.
    """
    points, kind, group = np.asarray(points, dtype=float), np.asarray(kind).astype(str), np.asarray(group).astype(str)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise DataError(f"embedding_map: expected points of shape (N, 2) with N ≥ 1, got {points.shape}")
    if kind.shape != (len(points),) or group.shape != (len(points),):
        raise DataError(f"embedding_map: expected kind and group of shape ({len(points)},), got {kind.shape} and "
                        f"{group.shape}")
    bad = sorted(set(kind) - {"image", "label set"})
    if bad:
        raise DataError(f"embedding_map: kind must be 'image' or 'label set', got {bad}")
    counted = group[kind == "image"] if (kind == "image").any() else group
    counts = pd.Series(counted).value_counts()
    top = sorted(counts.index, key=lambda g: (-counts[g], g))[:TOP_GROUPS]
    colour = {g: series_colour(i) for i, g in enumerate(top)}

    def short(name: str) -> str:
        return name if len(name) <= 32 else name[:31] + "…"

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        for g in ["other", *top]:
            chosen = ~np.isin(group, top) if g == "other" else group == g
            shade = colour.get(g, GREY)
            for k, style in (("image", {"marker": "o", "s": 12, "alpha": 0.7, "linewidths": 0}),
                             ("label set", {"marker": "*", "s": 260, "edgecolors": "black", "linewidths": 0.8})):
                mask = chosen & (kind == k)
                if mask.any():
                    ax.scatter(points[mask, 0], points[mask, 1], color=shade, zorder=3 if k == "label set" else 2,
                               **style)
        ax.set_xticks([])
        ax.set_yticks([])
        handles = [Line2D([], [], marker="o", linestyle="", color=colour[g], label=short(g)) for g in top]
        if (~np.isin(group, top)).any():
            handles.append(Line2D([], [], marker="o", linestyle="", color=GREY, label="other"))
        handles += [Line2D([], [], marker="o", linestyle="", color="black", markersize=4, label="image"),
                    Line2D([], [], marker="*", linestyle="", color="white", markeredgecolor="black", markersize=12,
                           label="label-set embedding")]
        fig.legend(handles=handles, loc="outside right upper", title="label set")
        fig.suptitle(title)

    return draw_png(6.0, draw)
