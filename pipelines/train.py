"""Stages ``pretrain@<dataset>-<seed>``, ``embed@<dataset>-<method>-<seed>``,
``finetune@<dataset>-<method>-<seed>`` (and ``finetune_baseline``, ``fit`` the same way).

One training stage of one method and training seed, with the config ``params.yaml`` gives it (profile ← ``train``
← ``datasets.<dataset>.train`` ← ``methods.<method>`` ← ``seed``), reading the image cache when
the config asks for it. With ``distributed`` asking for more than one process, a network stage
launches itself under ``torchrun`` (data-parallel, ``retdm.distributed``) and waits for it.
Usage: ``python -m pipelines.train DATASET METHOD STAGE SEED``.
"""

from __future__ import annotations

import os
import subprocess

from pipelines.cache import image_cache
from pipelines.params import Layout, load_params, seed_arg, stage_main, torchrun_command, train_config
from retdm.train.run import STAGE_FUNCTIONS, train_method


def main(dataset: str, method: str, stage: str, seed: str) -> None:
    """python -m pipelines.train DATASET METHOD STAGE SEED (stage: pretrain | embed | finetune | fit)."""
    params, seed = load_params(), seed_arg(seed)
    launch = torchrun_command(params, ["-m", "pipelines.train", dataset, method, stage, str(seed)],
                              f"retdm-{dataset}-{method}-{stage}-{seed}")
    if launch is not None and stage in STAGE_FUNCTIONS and "LOCAL_RANK" not in os.environ:
        raise SystemExit(subprocess.call(launch))  # torchrun's exit status: non-zero when any process failed
    layout, cfg = Layout(dataset, seed=seed), train_config(params, method, dataset, seed)
    train_method(layout.table, layout.runs, cfg, method, stages=(stage,), image_cache=image_cache(params, dataset))


if __name__ == "__main__":
    stage_main(main)
