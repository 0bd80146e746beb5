"""Stages ``sweep_point@<dataset>-<seed>-<alpha>-<beta>`` and ``sweep@<dataset>-<seed>``: RETDM at
every α × β of ``params.yaml`` ``sweep`` (the paper's Fig. 5), each point continuing the shared
pretrain model of its seed.

- ``python -m pipelines.sweep DATASET SEED ALPHA BETA``: one point, trained and evaluated on the
  test split → ``runs/<dataset>/seed<SEED>/sweep/alpha<ALPHA>_beta<BETA>/`` (its metrics row in
  ``metrics.parquet``). One stage per point, so a flow with several workers trains them side by side.
- ``python -m pipelines.sweep DATASET SEED``: the grid →
  ``results/evaluations/<dataset>/seed<SEED>/sweep.parquet``.

Each point trains with the method's config (profile ← ``train`` ← ``datasets.<ds>.train`` ←
``methods.retdm``) and then ``sweep.train`` (e.g. fewer epochs, so the grid stays cheap).
"""

from __future__ import annotations

from typing import Any

import yaml

from pipelines.cache import image_cache
from pipelines.params import Layout, load_params, seed_arg, stage_main, sweep_config
from retdm.errors import ConfigError
from retdm.methods import stage_dir
from retdm.sweep import gather_grid, sweep_point


def grid(params: dict[str, Any]) -> tuple[list[float], list[float]]:
    """``sweep.alpha`` and ``sweep.beta`` of params.yaml: non-empty lists of numbers."""
    spec = params.get("sweep") or {}
    for key in ("alpha", "beta"):
        values = spec.get(key)
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"params.yaml sweep.{key}: needs a non-empty list of numbers (the grid's {key} values), "
                              f"e.g. [0.01, 0.1, 1.0]; got {values!r}")
    return spec["alpha"], spec["beta"]


def main(dataset: str, seed: str, alpha: str | None = None, beta: str | None = None) -> None:
    """python -m pipelines.sweep DATASET SEED [ALPHA BETA]: with ALPHA and BETA, RETDM trained and
    evaluated at that point of the params.yaml sweep grid; without, the grid's table of all points."""
    params, layout = load_params(), Layout(dataset, seed=seed_arg(seed))
    alphas, betas = grid(params)
    if alpha is None and beta is None:
        gather_grid(layout.sweep_runs, alphas, betas, layout.sweep_results)
        return
    if alpha is None or beta is None:
        raise ConfigError("give both ALPHA and BETA (one grid point), or neither (the grid's table)")
    point = {}
    for key, text, values in (("alpha", alpha, alphas), ("beta", beta, betas)):
        point[key] = yaml.safe_load(text)  # as params.yaml reads it, so the folder is named as in dvc.yaml
        if point[key] not in values:
            raise ConfigError(f"{key} {text} is not in params.yaml sweep.{key} {values}; add it there, the sweep "
                              f"trains only the grid's points")
    cfg = sweep_config(params, dataset, layout.seed)
    sweep_point(layout.table, stage_dir(layout.runs, "bce", "pretrain") / "best.pt", layout.sweep_runs, cfg,
                point["alpha"], point["beta"], image_cache=image_cache(params, dataset),
                threshold=params["evaluate"]["threshold"])


if __name__ == "__main__":
    stage_main(main)
