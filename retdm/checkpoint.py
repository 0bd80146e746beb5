"""Checkpoints: the weights plus everything needed to resume, evaluate and audit them.

A checkpoint holds the model, optimiser and scheduler states, the completed epoch, the bank
(if any), the per-epoch history, the resolved config, the preprocessing (``transform``: the image
transform spec, or the feature standardisation of a feature table), the label names and the hash
of the label table it was trained on. A model with a feature backbone also records
``in_features`` (F), its input width, so it can be rebuilt. Files are written atomically.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from retdm.config import TrainConfig, from_dict
from retdm.data.dataset import FeatureSpec, preprocessing_from_dict
from retdm.data.transforms import TransformSpec
from retdm.errors import TrainingError
from retdm.files import atomic_write
from retdm.models.backbones import build_backbone
from retdm.models.retdm_net import RETDMNet

FORMAT = "retdm-checkpoint-1"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format tag) to ``path`` atomically."""
    def write(tmp: str) -> None:
        # Through a file object: torch.save names the archive's inner folder after a *path* it is
        # given, and the temporary name is random; identical payloads must give identical bytes.
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)

    atomic_write(path, write)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint on the CPU, as data only.

    Checkpoints are shared, so a file is untrusted input: ``torch.load(weights_only=True)``
    rebuilds only tensors and plain containers (dict, list, str, numbers), and refuses any other
    pickled object, whose rebuilding could run code, before it is built. Everything retdm writes
    (states, history, the config as plain dicts) is such data.

    Raises:
        TrainingError: the file is missing, holds more than data, or is not a retdm checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: checkpoint not found; train first with `retdm train`")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; torch's legacy reader fails in odd ways
        raise TrainingError(f"{path}: not a readable checkpoint (not a file written by torch.save); "
                            f"give the best.pt or last.pt of a retdm run")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise TrainingError(f"{path}: refused: the file holds pickled objects other than tensors and plain "
                            f"data, and loading them could run code; only retdm checkpoints load "
                            f"(retrain, or re-save the weights as a state dict)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise TrainingError(f"{path}: not a readable checkpoint ({str(err).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise TrainingError(f"{path}: not a retdm checkpoint (expected format {FORMAT!r})")
    return ckpt


def build_model(cfg: TrainConfig, num_labels: int, in_features: int | None = None) -> RETDMNet:
    """A fresh RETDM network as ``cfg.model`` describes.

    Args:
        cfg: the resolved config.
        num_labels: M.
        in_features: F, the input width of a feature backbone (``mlp``); ``None`` for image backbones.
    """
    m = cfg.model
    backbone = build_backbone(m.backbone, embed_dim=m.embed_dim, pretrained=m.pretrained, in_features=in_features)
    return RETDMNet(backbone, num_labels, m.embed_dim, m.label_hidden)


def load_model(path: str | os.PathLike
               ) -> tuple[RETDMNet, TransformSpec | FeatureSpec, tuple[str, ...], dict[str, Any]]:
    """The trained network of a checkpoint with its test preprocessing, label names and record.

    The preprocessing is a ``TransformSpec`` for an image model and a ``FeatureSpec`` (the
    standardisation fitted at training) for a feature model; ``retdm.data.dataset.eval_dataset``
    turns either into the test view of a table. The backbone is built without pretrained weights
    (the checkpoint carries all weights), so loading never needs the network or the original
    weight files.

    Raises:
        TrainingError: a feature model's recorded ``in_features`` disagrees with its preprocessing.
    """
    ckpt = load_checkpoint(path)
    cfg = from_dict(TrainConfig, ckpt["config"], "")
    names = tuple(ckpt["label_names"])
    spec = preprocessing_from_dict(ckpt["transform"])
    in_features = ckpt.get("in_features")
    if isinstance(spec, FeatureSpec) and in_features != spec.in_features:
        raise TrainingError(f"{path}: records in_features = {in_features} but standardises {spec.in_features} "
                            f"features; the checkpoint is inconsistent, retrain it")
    m = cfg.model
    backbone = build_backbone(m.backbone, embed_dim=m.embed_dim, pretrained=False, in_features=in_features)
    model = RETDMNet(backbone, len(names), m.embed_dim, m.label_hidden)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, spec, names, ckpt
