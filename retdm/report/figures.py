"""The report's figures, each drawn from plain data and returned as PNG bytes.

Every function builds its own :class:`matplotlib.figure.Figure` on an Agg canvas (no pyplot, no
global figure state), draws under matplotlib's default style plus :data:`STYLE` (a user's
matplotlibrc changes nothing), and saves without a timestamp or software tag, so identical inputs
give identical bytes. Colours come from tab10, a colour-blind-safe palette.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import matplotlib
import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from retdm.errors import DataError

DPI = 100
WIDTH = 9.0  # inches: 900 px at DPI
PALETTE = tuple(matplotlib.colormaps["tab10"].colors)
GREY = "#9e9e9e"
GOOD, BAD, MISS = "#2ca02c", "#d62728", "#ff7f0e"  # tab10 green / red / orange
STAGES = ("pretrain", "embed", "finetune")  # training order of a method's stages
SETTINGS = ("0.5", "tuned")  # threshold settings, in display order
MAX_EXAMPLES, EXAMPLES_PER_ROW, MAX_CAPTION_LINES = 12, 4, 8
STYLE = {"font.size": 9, "axes.titlesize": 10, "figure.titlesize": 12, "axes.grid": True, "grid.alpha": 0.3,
         "axes.spines.top": False, "axes.spines.right": False, "legend.fontsize": 8, "legend.frameon": False}


def draw_png(height: float, draw: Callable[[Figure], None], width: float = WIDTH,
          layout: str | None = "constrained") -> bytes:
    """Run ``draw`` on a fresh figure under the fixed style and return the PNG bytes."""
    with matplotlib.style.context("default"), matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
        FigureCanvasAgg(fig)  # Agg, set on this figure only: no pyplot, no global backend switch
        draw(fig)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{what}: expected a pandas DataFrame with columns {list(columns)}, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{what}: missing column(s) {missing}; expected {list(columns)}, got {list(frame.columns)}")
    if len(frame) == 0:
        raise DataError(f"{what}: the table is empty; expected at least one row with columns {list(columns)}")


def _unique(frame: pd.DataFrame, keys: list[str], what: str) -> None:
    dup = frame.duplicated(keys, keep=False)
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        first = {k: frame[k].iloc[row] for k in keys}
        raise DataError(f"{what}: {first} appears more than once (row {row}); expected one row per {tuple(keys)}")


def _ordered(values: pd.Series, known: Sequence[str] = ()) -> list[str]:
    """Distinct values: those in ``known`` in that order, then the rest in order of appearance."""
    seen = list(dict.fromkeys(values.astype(str)))
    return [v for v in known if v in seen] + [v for v in seen if v not in known]


def series_colour(i: int) -> tuple:
    return PALETTE[i % len(PALETTE)]


# --- 1. convergence (paper Fig. 6) -----------------------------------------------------------------

def convergence_figure(epochs: pd.DataFrame, title: str) -> bytes:
    """Loss and validation mAP per epoch, epochs counted on across a method's stages.

    Args:
        epochs: one row per (method, stage, epoch) with columns ``method``, ``stage``, ``epoch``,
            ``train_loss``, ``val_loss``, ``val_mAP`` (NaN where a stage does not log it). Stages run
            pretrain → embed → finetune; other stage names follow in order of appearance.
        title: the figure's title.

    Returns:
        PNG bytes: left panel loss (train dashed, validation solid), right panel validation mAP; one
        colour per method; a thin vertical line and the stage name where each stage starts.
    """
    columns = ["method", "stage", "epoch", "train_loss", "val_loss", "val_mAP"]
    _require(epochs, columns, "convergence_figure(epochs)")
    frame = epochs[columns].copy()
    frame[["method", "stage"]] = frame[["method", "stage"]].astype(str)
    _unique(frame, ["method", "stage", "epoch"], "convergence_figure(epochs)")
    methods, stages = _ordered(frame["method"]), _ordered(frame["stage"], STAGES)
    rank = {s: i for i, s in enumerate(stages)}
    frame = frame.assign(_rank=frame["stage"].map(rank)).sort_values(["method", "_rank", "epoch"], kind="stable")

    x = pd.Series(np.nan, index=frame.index)
    starts: dict[float, list[str]] = {}  # boundary position → stage names starting there
    for method in methods:
        offset = 0.0
        for stage in stages:
            part = frame[(frame["method"] == method) & (frame["stage"] == stage)]
            if part.empty:
                continue
            first = float(part["epoch"].min())
            x[part.index] = offset + part["epoch"].to_numpy(dtype=float) - first + 1  # 1, 2, … within the stage
            names = starts.setdefault(offset + 0.5, [])
            names += [stage] if stage not in names else []
            offset += float(part["epoch"].max()) - first + 1
    frame["_x"] = x

    def draw(fig: Figure) -> None:
        loss_ax, map_ax = fig.subplots(1, 2)
        for i, method in enumerate(methods):
            rows = frame[frame["method"] == method]
            for ax, column, style in ((loss_ax, "train_loss", "--"), (loss_ax, "val_loss", "-"),
                                      (map_ax, "val_mAP", "-")):
                # NaN breaks the line: a stage that does not log this column leaves a gap, not a bridge
                ax.plot(rows["_x"], rows[column], style, color=series_colour(i), marker="o", markersize=2.5)
        for ax, name in ((loss_ax, "loss"), (map_ax, "validation mAP")):
            ax.set_xlabel("epoch (all stages)")
            ax.set_ylabel(name)
            for position, names in starts.items():
                if position > 0.5:
                    ax.axvline(position, color="black", linewidth=0.6, alpha=0.6)
                ax.text(position, 0.99, " / ".join(names) + " ", transform=ax.get_xaxis_transform(), fontsize=7,
                        va="top", ha="left", rotation=90, color="0.3")
            if not any(np.isfinite(line.get_ydata()).any() for line in ax.get_lines()):
                ax.text(0.5, 0.5, "not logged", transform=ax.transAxes, ha="center", color=GREY)
        loss_ax.set_title("loss")
        map_ax.set_title("validation mAP")
        handles = [Line2D([], [], color=series_colour(i), label=m) for i, m in enumerate(methods)]
        handles += [Line2D([], [], color="black", linestyle="--", label="train"),
                    Line2D([], [], color="black", linestyle="-", label="validation")]
        fig.legend(handles=handles, loc="outside right upper")
        fig.suptitle(title)

    return draw_png(4.0, draw)


# --- 2. sensitivity to alpha and beta (paper Fig. 5) ------------------------------------------------

def sensitivity_heatmaps(grid: pd.DataFrame, title: str) -> bytes:
    """C-F1 and O-F1 over the (alpha, beta) grid as two heat maps on one colour scale.

    Args:
        grid: one row per grid point with columns ``alpha``, ``beta``, ``CF1``, ``OF1``; missing grid
            points are left blank.
        title: the figure's title.

    Returns:
        PNG bytes: alpha on x (one categorical tick per value, ascending, so log-spaced values sit
        evenly), beta on y (ascending upwards), each cell annotated, the best cell of each map outlined.
    """
    _require(grid, ["alpha", "beta", "CF1", "OF1"], "sensitivity_heatmaps(grid)")
    _unique(grid, ["alpha", "beta"], "sensitivity_heatmaps(grid)")
    alphas, betas = np.sort(grid["alpha"].unique()), np.sort(grid["beta"].unique())
    maps = {m: grid.pivot(index="beta", columns="alpha", values=m).reindex(index=betas, columns=alphas)
            .to_numpy(dtype=float) for m in ("CF1", "OF1")}  # (len(betas), len(alphas))
    finite = np.concatenate([v[np.isfinite(v)] for v in maps.values()])
    if finite.size == 0:
        raise DataError("sensitivity_heatmaps(grid): every CF1 and OF1 value is NaN; expected at least one score")
    low, high = float(finite.min()), float(finite.max())
    fmt = "{:.3f}" if high <= 1 else "{:.1f}"
    cmap = matplotlib.colormaps["viridis"]

    def draw(fig: Figure) -> None:
        axes = fig.subplots(1, 2)
        for ax, (metric, values) in zip(axes, maps.items()):
            image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=low, vmax=high, origin="lower",
                              aspect="auto")
            ax.grid(False)
            ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
            ax.set_yticks(range(len(betas)), [f"{b:g}" for b in betas])
            ax.set_xlabel("α")
            ax.set_ylabel("β")
            ax.set_title({"CF1": "C-F1", "OF1": "O-F1"}[metric])
            for (row, col), value in np.ndenumerate(values):
                if np.isfinite(value):
                    shade = cmap((value - low) / (high - low) if high > low else 0.5)
                    light = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] > 0.5
                    ax.text(col, row, fmt.format(value), ha="center", va="center", fontsize=8,
                            color="black" if light else "white")
            if np.isfinite(values).any():
                row, col = np.unravel_index(np.nanargmax(values), values.shape)
                for colour, width in (("black", 3.5), ("white", 1.5)):  # visible on dark and light cells
                    ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor=colour,
                                           linewidth=width))
        fig.colorbar(image, ax=list(axes), label="score", shrink=0.9)
        fig.suptitle(title)

    return draw_png(max(3.5, 1.5 + 0.45 * len(betas)), draw)


# --- 4. per-class AP ------------------------------------------------------------------------------

def per_class_ap_figure(ap: pd.DataFrame, title: str) -> bytes:
    """Average precision per label, one bar per method, labels as rows.

    Args:
        ap: one row per (method, label) with columns ``method``, ``label``, ``AP``.
        title: the figure's title.

    Returns:
        PNG bytes: grouped horizontal bars, labels top to bottom in order of first appearance.
    """
    _require(ap, ["method", "label", "AP"], "per_class_ap_figure(ap)")
    frame = ap.assign(method=ap["method"].astype(str), label=ap["label"].astype(str))
    _unique(frame, ["method", "label"], "per_class_ap_figure(ap)")
    methods, labels = _ordered(frame["method"]), _ordered(frame["label"])
    values = frame.pivot(index="label", columns="method", values="AP").reindex(index=labels, columns=methods)
    bar = 0.8 / len(methods)

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        rows = np.arange(len(labels))
        for i, method in enumerate(methods):
            ax.barh(rows - 0.4 + bar * (i + 0.5), values[method].to_numpy(dtype=float), height=bar,
                    color=series_colour(i), label=method)
        ax.set_yticks(rows, labels)
        ax.set_ylim(len(labels) - 0.5, -0.5)  # first label on top
        ax.set_xlabel("AP")
        ax.grid(axis="y", visible=False)
        fig.legend(loc="outside right upper")
        fig.suptitle(title)

    return draw_png(min(1.2 + len(labels) * (0.1 + 0.12 * len(methods)), 60.0), draw)


# --- 5. prediction examples (paper Fig. 4) ---------------------------------------------------------

def _caption(true: Sequence[str], predicted: Sequence[str]) -> list[tuple[str, str]]:
    """(text, colour) lines: hits, then false positives ("+"), then misses ("−")."""
    truth, guess = set(true), set(predicted)
    lines = [(p, GOOD) for p in dict.fromkeys(predicted) if p in truth]
    lines += [(f"+{p}", BAD) for p in dict.fromkeys(predicted) if p not in truth]
    lines += [(f"−{t}", MISS) for t in dict.fromkeys(true) if t not in guess]
    if len(lines) > MAX_CAPTION_LINES:
        lines = lines[:MAX_CAPTION_LINES - 1] + [(f"… {len(lines) - MAX_CAPTION_LINES + 1} more", GREY)]
    return lines or [("(no labels)", GREY)]


def prediction_examples(images: list[np.ndarray], true: list[list[str]], predicted: list[list[str]],
                        title: str) -> bytes:
    """A grid of test images with their true and predicted labels.

    Args:
        images: up to :data:`MAX_EXAMPLES` uint8 (H, W, 3) images (more are dropped).
        true: the true label names of each image.
        predicted: the predicted label names of each image.
        title: the figure's title.

    Returns:
        PNG bytes: :data:`EXAMPLES_PER_ROW` thumbnails per row; under each, its labels: hits in
        green, false positives in red prefixed "+", misses in orange prefixed "−"; a green frame
        around each image whose prediction is exactly right.
    """
    if not (len(images) == len(true) == len(predicted)) or len(images) == 0:
        raise DataError(f"prediction_examples: expected equally many (≥ 1) images, true and predicted lists, got "
                        f"{len(images)}, {len(true)} and {len(predicted)}")
    count = min(len(images), MAX_EXAMPLES)
    images = [np.asarray(image) for image in images[:count]]
    for i, image in enumerate(images):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"prediction_examples: image {i} must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    captions = [_caption(true[i], predicted[i]) for i in range(count)]
    cols, rows = min(count, EXAMPLES_PER_ROW), -(-count // EXAMPLES_PER_ROW)
    tile, line, head = 2.1, 0.16, 0.45  # inches: image box, caption line, title band
    cell = tile + 0.15 + line * max(len(c) for c in captions)
    width, height = WIDTH, head + rows * cell

    def draw(fig: Figure) -> None:
        for i in range(count):
            r, c = divmod(i, EXAMPLES_PER_ROW)
            left = (WIDTH - cols * WIDTH / EXAMPLES_PER_ROW) / 2 + c * WIDTH / EXAMPLES_PER_ROW
            bottom = height - head - r * cell - tile
            ax = fig.add_axes((left / width + 0.01, bottom / height, (WIDTH / EXAMPLES_PER_ROW) / width - 0.02,
                               tile / height))
            ax.imshow(images[i], interpolation="lanczos" if max(images[i].shape[:2]) > 256 else "nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            exact = set(true[i]) == set(predicted[i])
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color(GOOD if exact else "0.75")
                spine.set_linewidth(4 if exact else 1)
            for j, (text, colour) in enumerate(captions[i]):
                ax.annotate(text, xy=(0.5, 0), xycoords="axes fraction", xytext=(0, -6 - j * line * 72),
                            textcoords="offset points", ha="center", va="top", color=colour, fontsize=8.5,
                            fontweight="bold" if colour != GOOD else "normal")
        fig.suptitle(title, y=1 - 0.12 / height, va="top")

    return draw_png(height, draw, width=width, layout=None)


# --- 6. threshold effect ------------------------------------------------------------------------

def threshold_effect_figure(frame: pd.DataFrame, title: str) -> bytes:
    """C-F1 and O-F1 of each method at threshold 0.5 and at tuned thresholds.

    Args:
        frame: one row per (method, setting) with columns ``method``, ``setting`` (``"0.5"`` or
            ``"tuned"``; other settings follow in order of appearance), ``CF1``, ``OF1``.
        title: the figure's title.

    Returns:
        PNG bytes: two panels (C-F1, O-F1), methods on x, one bar per setting, values annotated.
    """
    _require(frame, ["method", "setting", "CF1", "OF1"], "threshold_effect_figure(frame)")
    data = frame.assign(method=frame["method"].astype(str), setting=frame["setting"].map(
        lambda s: f"{s:g}" if isinstance(s, float) else str(s)))
    _unique(data, ["method", "setting"], "threshold_effect_figure(frame)")
    methods, settings = _ordered(data["method"]), _ordered(data["setting"], SETTINGS)
    bar = 0.8 / len(settings)
    fmt = "{:.3f}" if np.nanmax(data[["CF1", "OF1"]].to_numpy(dtype=float), initial=0) <= 1 else "{:.1f}"

    def draw(fig: Figure) -> None:
        axes = fig.subplots(1, 2, sharey=True)
        for ax, metric in zip(axes, ("CF1", "OF1")):
            values = data.pivot(index="method", columns="setting", values=metric).reindex(index=methods,
                                                                                           columns=settings)
            slots = np.arange(len(methods))
            for i, setting in enumerate(settings):
                heights = values[setting].to_numpy(dtype=float)
                bars = ax.bar(slots - 0.4 + bar * (i + 0.5), np.nan_to_num(heights), width=bar, color=series_colour(i),
                              label=f"threshold {setting}" if setting == "0.5" else setting)
                ax.bar_label(bars, [fmt.format(h) if np.isfinite(h) else "–" for h in heights], fontsize=7,
                             padding=1)
            ax.set_xticks(slots, methods, rotation=30 if len(methods) > 4 else 0, ha="right" if len(methods) > 4
                          else "center")
            ax.grid(axis="x", visible=False)
            ax.set_title({"CF1": "C-F1", "OF1": "O-F1"}[metric])
        axes[0].set_ylabel("score")
        fig.legend(handles=axes[0].containers, labels=[c.get_label() for c in axes[0].containers],
                   loc="outside right upper")
        fig.suptitle(title)

    return draw_png(4.0, draw)
