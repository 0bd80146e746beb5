"""Every registered method over several seeds, on `synthetic` and on the paper's real `scene` images.

Per dataset and seed, trains all nine methods through ``retdm.train.run.train_method`` on the
default cpu profile (the shared BCE pretrain once, then each method's own stages) and scores
them with ``retdm.evaluate.evaluate_method``: the pipeline's code, without DVC. The seed varies
the model initialisation, the validation part and the data order; the 80/20 split is fixed
(seed 0). ``scene`` is read in place from ``../shared/datasets/miml_scene/`` (``data.csv`` +
``original/``) and skipped when absent.

Prints, per dataset, the comparison table (mean ± std over seeds, the paper's rows beside ours
for scene) and the wall time of each method per seed. The time of a method is that of its own
stages: ``bce``'s is the shared pretrain, and each feature method re-exports the features.

Run: ``python bench/bench_methods.py [--seeds 0 1 2] [--datasets synthetic scene]`` (about 33
minutes on 2 cores). Writes ``bench/out/methods_metrics.parquet`` and ``bench/out/methods.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from retdm.compare import comparison_markdown, comparison_table, paper_table, with_paper  # noqa: E402
from retdm.config import load_config  # noqa: E402
from retdm.data.folder import import_folder  # noqa: E402
from retdm.data.synthetic import make_synthetic  # noqa: E402
from retdm.evaluate import evaluate_method  # noqa: E402
from retdm.train.run import train_method  # noqa: E402

OUT = ROOT / "bench" / "out"
SCENE = ROOT.parent / "shared" / "datasets" / "miml_scene"
# params.yaml's order: bce first, since every other method starts from its pretrain stage.
ORDER = ["bce", "retdm", "retdm_oneway", "asl", "center_loss", "mlknn", "lmmo_knn", "mlspl", "c2ae"]


def dataset_table(name: str) -> Path | None:
    """The label table of ``name`` under ``bench/out/<name>/``, made on first use; None if absent."""
    table = OUT / name / "labels.parquet"
    if table.is_file():
        return table
    if name == "synthetic":
        make_synthetic(OUT / name, num_images=4000, seed=0, progress=False)
    elif name == "scene":
        if not (SCENE / "data.csv").is_file():
            print(f"scene: {SCENE} not found, skipped", flush=True)
            return None
        import_folder(SCENE / "original", SCENE / "data.csv", table, test_fraction=0.2, seed=0, name="scene")
    else:
        raise SystemExit(f"unknown dataset {name!r}; choose from synthetic, scene")
    return table


def run(datasets: list[str], seeds: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and evaluate; returns the long metrics and the seconds per (dataset, method, seed)."""
    frames, times = [], []
    for dataset in datasets:
        table = dataset_table(dataset)
        if table is None:
            continue
        for seed in seeds:
            cfg = load_config("cpu", {"seed": seed})
            runs = OUT / "methods" / dataset / f"seed{seed}"
            for method in ORDER:
                start = time.perf_counter()
                train_method(table, runs, cfg, method, progress=False)
                seconds = time.perf_counter() - start
                evaluation = runs / "evaluations" / method
                frame = evaluate_method(runs, method, table, evaluation / "metrics.parquet",
                                        evaluation / "predictions.parquet")
                frames.append(frame.assign(dataset=dataset))
                times.append({"dataset": dataset, "method": method, "seed": seed, "seconds": seconds})
                value = dict(zip(frame["metric"], frame["value"]))
                print(f"{dataset} seed {seed} {method:<12} AP {value['average_precision']:.4f} "
                      f"mAP {value['mAP']:.4f} ({seconds:.0f} s)", flush=True)
    return pd.concat(frames, ignore_index=True), pd.DataFrame(times)


def report(long: pd.DataFrame, times: pd.DataFrame, seeds: list[int], wall: float) -> str:
    table = with_paper(comparison_table(long, ORDER), paper_table())
    per_seed = times.groupby(["dataset", "method"], sort=False)["seconds"].mean().unstack("dataset")
    lines = [comparison_markdown(table), "## Wall time per seed (s, mean over seeds)", "",
             "| method | " + " | ".join(per_seed.columns) + " |", "|---|" + "---:|" * len(per_seed.columns)]
    lines += [f"| {m} | " + " | ".join(f"{v:.0f}" for v in per_seed.loc[m]) + " |" for m in per_seed.index]
    lines += ["", f"Machine: {platform.platform()}, {os.cpu_count()} cpus; seeds {seeds}; {wall:.0f} s in all."]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "scene"])
    args = parser.parse_args()
    t0 = time.perf_counter()
    long, times = run(args.datasets, args.seeds)
    OUT.mkdir(parents=True, exist_ok=True)
    long.to_parquet(OUT / "methods_metrics.parquet", index=False)
    text = report(long, times, args.seeds, time.perf_counter() - t0)
    (OUT / "methods.md").write_text(text)
    print(text)
