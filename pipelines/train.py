"""Stages ``pretrain@<dataset>``, ``embed@<dataset>-<method>``, ``finetune@<dataset>-<method>``.

One training stage of one method, with the config ``params.yaml`` gives it (profile ← ``train``
← ``datasets.<dataset>.train`` ← ``methods.<method>`` ← ``seed``), reading the image cache when
the config asks for it. Usage: ``python -m pipelines.train DATASET METHOD STAGE``.
"""

from __future__ import annotations

from pipelines.cache import image_cache
from pipelines.params import Layout, load_params, stage_main, train_config
from retdm.train.run import train_method


def main(dataset: str, method: str, stage: str) -> None:
    """python -m pipelines.train DATASET METHOD STAGE (pretrain | embed | finetune)."""
    params = load_params()
    layout = Layout(dataset)
    train_method(layout.table, layout.runs, train_config(params, method, dataset), method, stages=(stage,),
                 image_cache=image_cache(params, dataset))


if __name__ == "__main__":
    stage_main(main)
