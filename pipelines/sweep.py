"""Stage ``sweep@<dataset>``: RETDM at every α × β of ``params.yaml`` ``sweep`` (the paper's Fig. 5),
each continuing the shared pretrain model → ``runs/<dataset>/sweep/``, ``results/evaluations/<dataset>/sweep.parquet``.

Each point trains with the method's config (profile ← ``train`` ← ``datasets.<ds>.train`` ←
``methods.retdm``) and then ``sweep.train`` (e.g. fewer epochs, so the grid stays cheap).
Usage: ``python -m pipelines.sweep DATASET``.
"""

from __future__ import annotations

from pipelines.cache import image_cache
from pipelines.params import Layout, dotted, load_params, stage_main, train_config
from retdm.config import load_config
from retdm.errors import ConfigError
from retdm.methods import stage_dir
from retdm.sweep import sensitivity_grid


def main(dataset: str) -> None:
    """python -m pipelines.sweep DATASET: the α × β grid of RETDM on the test split."""
    params, layout = load_params(), Layout(dataset)
    spec = params.get("sweep") or {}
    missing = [k for k in ("alpha", "beta") if not spec.get(k)]
    if missing:
        raise ConfigError(f"params.yaml sweep: needs non-empty lists {missing} (the grid's alpha and beta values)")
    base = train_config(params, "retdm", dataset)
    cfg = load_config(base.profile, {**dotted(base.to_dict()), **dotted(spec.get("train"))})
    sensitivity_grid(layout.table, stage_dir(layout.runs, "bce", "pretrain") / "best.pt", layout.sweep_runs, cfg,
                     [float(a) for a in spec["alpha"]], [float(b) for b in spec["beta"]], layout.sweep_results,
                     image_cache=image_cache(params, dataset), threshold=params["evaluate"]["threshold"])


if __name__ == "__main__":
    stage_main(main)
