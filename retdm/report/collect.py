"""What the report shows, read from the pipeline's outputs (``retdm.layout``): per-epoch logs,
per-class AP, the shared embedding space, example predictions.

Legend: N test items, M labels, D embedding width, S distinct label sets.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from retdm.checkpoint import load_model
from retdm.data.dataset import eval_dataset
from retdm.data.images import read_image
from retdm.data.table import LabelTable, ignore_mask, read_label_table
from retdm.inference import forward_images
from retdm.layout import Layout
from retdm.methods import METHODS, stage_dir
from retdm.metrics import average_precision_per_class

EPOCH_COLUMNS = ("train_loss", "val_loss", "val_mAP")


def epoch_logs(layout: Layout, methods: list[str]) -> pd.DataFrame:
    """Every network stage's ``epochs.csv`` of ``methods``: method, stage, epoch, train_loss,
    val_loss, val_mAP (the shared pretrain under each method that continues it; feature methods
    have none of their own and are left out)."""
    frames = []
    for method in methods:
        stages = METHODS.get(method).stages
        if "fit" in stages:  # a feature method trains no network of its own
            continue
        for stage in stages:
            path = stage_dir(layout.runs, method, stage) / "epochs.csv"
            if not path.is_file():
                continue
            log = pd.read_csv(path)
            frames.append(log.reindex(columns=["epoch", *EPOCH_COLUMNS]).assign(method=method, stage=stage))
    if not frames:
        return pd.DataFrame(columns=["method", "stage", "epoch", *EPOCH_COLUMNS])
    return pd.concat(frames, ignore_index=True)[["method", "stage", "epoch", *EPOCH_COLUMNS]]


def class_ap(layout: Layout, methods: list[str]) -> pd.DataFrame:
    """Per-class AP of each method on the test split, from its predictions: method, label, AP
    (NaN for a class without a test positive)."""
    table = read_label_table(layout.table)
    test = table.split("test")
    rows = []
    for method in methods:
        scores = pd.read_parquet(layout.evaluation(method) / "predictions.parquet")
        if not np.array_equal(scores["image_id"].to_numpy(), test.frame["image_id"].to_numpy()):
            continue  # evaluated on other rows than this table's test split: nothing honest to show
        ap = average_precision_per_class(test.labels(), scores[list(table.label_names)].to_numpy(),
                                         ignore=ignore_mask(layout.table, test))
        rows += [{"method": method, "label": name, "AP": float(v)} for name, v in zip(table.label_names, ap)]
    return pd.DataFrame(rows, columns=["method", "label", "AP"])


@torch.no_grad()
def shared_embeddings(checkpoint: str | os.PathLike, table_path: str | os.PathLike, *, max_items: int = 600,
                      image_cache: str | os.PathLike | None = None, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Image embeddings f_I = Φcnn(x) of test items and label-set embeddings f_y = Φdnn(y) of their
    distinct label sets, in the one space RETDM trains them into (the paper's Fig. 1).

    Args:
        checkpoint: a RETDM checkpoint (one with a trained label net).
        table_path: its label table; the test split is embedded.
        max_items: at most this many test items, drawn with ``seed``.
        image_cache: the table's image cache, if the run used one.
        seed: the draw's seed.

    Returns:
        ``(points, kind, group, names)``: (N + S, D) embeddings, (N + S,) ``"image"`` or ``"label set"``,
        (N + S,) each point's label set as text, and the label names.
    """
    model, spec, names, _ = load_model(checkpoint)
    test = read_label_table(table_path).split("test")
    if len(test) > max_items:
        test = test.take(np.sort(np.random.default_rng(seed).choice(len(test), max_items, replace=False)))
    f_img, _ = forward_images(model, eval_dataset(test, spec, image_cache))  # (N, D)
    labels = test.labels()  # (N, M)
    sets = np.unique(labels, axis=0)  # (S, M)
    f_set = model.label_net(torch.from_numpy(sets).float()).numpy()  # (S, D)
    text = [set_text(row, names) for row in labels] + [set_text(row, names) for row in sets]
    kind = np.array(["image"] * len(labels) + ["label set"] * len(sets))
    return np.concatenate([f_img, f_set]), kind, np.array(text), list(names)


def set_text(row: np.ndarray, names: tuple[str, ...] | list[str]) -> str:
    """A label set as ``"sea+sunset"`` (``"(none)"`` when empty)."""
    return "+".join(n for n, on in zip(names, row) if on) or "(none)"


def example_predictions(layout: Layout, method: str, *, count: int = 8, threshold: float = 0.5, seed: int = 0
                        ) -> tuple[list[np.ndarray], list[list[str]], list[list[str]]]:
    """Test images with their true and predicted labels (the paper's Fig. 4): half of them exactly
    right, half with at least one error, drawn with ``seed``.

    Returns:
        ``(images, true, predicted)``: uint8 (H, W, 3) arrays and label-name lists.
    """
    table = read_label_table(layout.table)
    test = table.split("test")
    scores = pd.read_parquet(layout.evaluation(method) / "predictions.parquet")
    if not test.has_images or not np.array_equal(scores["image_id"].to_numpy(), test.frame["image_id"].to_numpy()):
        return [], [], []
    pred = scores[list(table.label_names)].to_numpy() >= threshold  # (N, M)
    truth = test.labels().astype(bool)  # (N, M)
    right = np.flatnonzero((pred == truth).all(axis=1))
    wrong = np.flatnonzero(~(pred == truth).all(axis=1))
    rng = np.random.default_rng(seed)
    n_right = min(count // 2, len(right))
    pick = np.sort(np.concatenate([rng.permutation(right)[:n_right], rng.permutation(wrong)[: count - n_right]]))

    def named(rows: np.ndarray) -> list[list[str]]:
        return [[n for n, on in zip(table.label_names, row) if on] for row in rows]

    return [_thumbnail(test, int(i)) for i in pick], named(truth[pick]), named(pred[pick])


def _thumbnail(table: LabelTable, row: int, size: int = 160) -> np.ndarray:
    """The image of ``row`` as uint8 (h, w, 3), its longer side at most ``size``."""
    from PIL import Image

    image = read_image(Path(table.root) / table.frame["path"].iloc[row]).permute(1, 2, 0).numpy()  # (H, W, 3)
    pil = Image.fromarray(image)
    pil.thumbnail((size, size))
    return np.asarray(pil)
