"""The pipeline on tiny params (seconds per stage): what the pipeline tests, CI and the crash test run.

``python tests/tiny_params.py ROOT`` rewrites ``ROOT/params.yaml`` to them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

# The training config overrides of the unit tests (tests/conftest.py's `tiny_cfg`): 32 px, 2 epochs per stage.
TINY_CONFIG = {
    "data.image_size": 32, "data.resize": 36, "data.batch_size": 16, "data.val_fraction": 0.2,
    "model.embed_dim": 32, "model.label_hidden": 32, "loss.k": 3,
    "pretrain.epochs": 2, "embed.epochs": 2, "finetune.epochs": 2,
}
# The pipeline's (params.yaml `train`): 32 px, one epoch per stage.
TINY = {"threads": 1, "data": {"image_size": 32, "resize": 36, "batch_size": 16}, "model": {"embed_dim": 32, "label_hidden": 32},
        "loss": {"k": 3}, "pretrain": {"epochs": 1}, "embed": {"epochs": 1}, "finetune": {"epochs": 1}}
# One method of each kind, so every kind of stage runs: embed → finetune, finetune_baseline (the
# bce_ft control), features → fit (tests/test_methods.py trains every method); two seeds.
METHODS = ["bce", "bce_ft", "retdm", "mlknn"]
SEEDS = [0, 1]
TINY_PARAMS = {"datasets.synthetic.num_images": 160, "datasets.synthetic.image_size": 32,
               "validate.tolerance": 0.05, "train": TINY, "methods": {m: {} for m in METHODS},
               "seeds": SEEDS, "retdm_variants": ["retdm"], "deep_baselines": ["bce_ft"],
               "feature_methods": ["mlknn"],
               "sweep": {"datasets": ["synthetic"], "alpha": [0.01, 1.0], "beta": [1.0], "train": {}}}


def set_params(repo: Path, **changes) -> None:
    """Set dotted keys of ``repo/params.yaml`` (``{"a.b": 1}`` → ``params["a"]["b"] = 1``)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for key, value in changes.items():
        node = params
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


if __name__ == "__main__":
    set_params(Path(sys.argv[1]), **TINY_PARAMS)
