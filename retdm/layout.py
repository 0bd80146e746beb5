"""Where the pipeline's artifacts live, relative to the repository root: the layout of ``dvc.yaml``,
used by the stage entry points (``pipelines/``) and by ``retdm report``.

Per dataset ``<ds>`` and training seed ``<s>`` (``seeds`` in params.yaml: model initialisation,
validation part and data order; the 80/20 split has its own seed and is shared by every seed)::

    data/<ds>/raw/                         download: images/ + labels.parquet
    data/<ds>/download/                    download: fetched and extracted archives (not a DVC output)
    data/<ds>/split.parquet                split: the table with its 80/20 split
    data/<ds>/cache/                       cache: images decoded and resized once (data.image_cache)
    reports/validation/<ds>.{json,html}    validate: Great Expectations report
    runs/<ds>/seed<s>/bce/pretrain/               pretrain (the BCE baseline)
    runs/<ds>/seed<s>/<method>/{embed,finetune}/  embed, finetune (RETDM variants)
    runs/<ds>/seed<s>/<method>/finetune/          finetune_baseline (deep baselines, the bce_ft control)
    runs/<ds>/seed<s>/bce/features/               features (the pretrain backbone's embeddings)
    runs/<ds>/seed<s>/<method>/fit/               fit (feature methods)
    results/evaluations/<ds>/seed<s>/<method>/    evaluate: metrics.parquet, predictions.parquet,
                                                  thresholds.json (tuned on the validation part),
                                                  metrics_tuned.parquet
    runs/<ds>/seed<s>/sweep/alpha<a>_beta<b>/     sweep_point: RETDM at one alpha x beta (metrics.parquet: its row)
    results/evaluations/<ds>/seed<s>/sweep.parquet  sweep: the grid's points in one table
    reports/index.html, reports/index.md, reports/figures/                          report
    results/metrics.parquet, results/comparison.parquet, results/metrics.json,
    reports/comparison.md                                                            compare
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from retdm.methods import FEATURES_FILE, stage_dir


@dataclass(frozen=True)
class Layout:
    """Where one dataset's artifacts live (relative to the repository root); the trained runs and
    their evaluations are those of training seed ``seed``."""

    dataset: str
    root: Path = Path(".")
    seed: int = 0

    @property
    def raw(self) -> Path:
        return self.root / "data" / self.dataset / "raw"

    @property
    def downloads(self) -> Path:
        """Where the download stage fetches and extracts official archives (not a DVC output:
        tens of GB; the label table records their checksums)."""
        return self.root / "data" / self.dataset / "download"

    @property
    def cache(self) -> Path:
        return self.root / "data" / self.dataset / "cache"

    @property
    def table(self) -> Path:
        return self.root / "data" / self.dataset / "split.parquet"

    @property
    def validation(self) -> tuple[Path, Path]:
        base = self.root / "reports" / "validation" / self.dataset
        return base.with_suffix(".json"), base.with_suffix(".html")

    @property
    def runs(self) -> Path:
        return self.root / "runs" / self.dataset / f"seed{self.seed}"

    @property
    def features(self) -> Path:
        return stage_dir(self.runs, "bce", "features") / FEATURES_FILE

    @property
    def sweep_runs(self) -> Path:
        return self.runs / "sweep"

    @property
    def sweep_results(self) -> Path:
        return self.evaluations / "sweep.parquet"

    @property
    def evaluations(self) -> Path:
        return self.root / "results" / "evaluations" / self.dataset / f"seed{self.seed}"

    def evaluation(self, method: str) -> Path:
        return self.evaluations / method


RESULTS = Path("results")
COMPARISON_MD = Path("reports") / "comparison.md"
METRICS_JSON = RESULTS / "metrics.json"  # dvc.yaml `metrics:`: {dataset: {method: {metric: mean, metric_std: std}}}
