"""Every benchmark of the project in one run: each figure a ratio against a named baseline.

Runs, in one process on this machine:

- ``metrics``: ``retdm.metrics.evaluate`` against the same quantities from scikit-learn
  (40,504 × 80, MS-COCO val2014 size; targets ≤ 1 s and ≥ 5×);
- ``neighbours``: the label-neighbour table at MS-COCO train2014 size (82,783 × 80, k = 10)
  against a plain numpy full-distance + lexsort search (target ≤ 10 s);
- ``image_cache``: reading images from the image cache against decoding the JPEGs and resizing
  them (the real scene images when ``../shared/datasets/miml_scene`` is there, else ``synthetic``;
  target ≥ 5×);
- ``image_check``: decoding every image before training (``find_unreadable_images``, on its
  default threads) against the same check on one thread, a serial decode (the 2,000 scene JPEGs;
  skipped when ``../shared/datasets/miml_scene`` is absent; target >= 1.3x with two cores or more);
- ``startup``: a pipeline stage that builds no model, started afresh, against importing torch and
  torchvision (``bench_startup.py``; target <= 2 s);
- ``step``: one RETDM training step (way 2 from the bank, and exact ``forward``) against one
  BCE step on the same backbone and batch (target ≤ 1.3× with the bank);
- ``synthetic`` (only with ``--synthetic``, about 25 minutes): BCE, RETDM, RETDM one-way and a
  BCE control over 3 seeds on the embedded dataset (see ``bench/bench_synthetic.py``);
- ``orchestration`` (only with ``--orchestration``, about 15 minutes): the Prefect flow against
  plain ``dvc repro`` on the default pipeline (see ``bench/bench_orchestration.py``);
- ``memory`` (only with ``--memory``, 1.5 to 4 minutes): peak RSS of ``retdm train`` on
  ``synthetic`` against the 3 GB target and the import floor, and the neighbour table at NUS-WIDE
  size (time against the numpy search, peak RSS against 2 GB) (see ``bench/bench_memory.py``);
- ``gpu_throughput`` (only with ``--gpu``, about 2 minutes on a GPU): training images/s of the
  trainer's BCE and RETDM steps against a plain BCE loop on ``vgg16`` and ``efficientnet_lite0``
  (target RETDM >= 0.85x); without CUDA its ``cpu-reduced`` mode (see ``bench/bench_gpu.py``).
- ``distributed`` (only with ``--distributed``, about 20 minutes): the Prefect flow on a local
  Dask cluster of 2 workers against the same flow one stage at a time, on the default pipeline
  from scratch (target: faster; see ``bench_orchestration.main_distributed``).

``--all`` runs every one of them (about 70 minutes on 2 cores).

Writes ``bench/results.md`` (a table a person reads) and ``bench/results.parquet`` (one row
per figure: benchmark, measured, baseline, the value of each and its unit, ratio, target, pass,
machine; seconds rows also keep ``measured_s`` and ``baseline_s``), and for every benchmark that
ran ``results/published/bench_<benchmark>.json``, which README's Benchmarks tables are rendered
from (``retdm publish --readme``); a benchmark that did not run keeps its file from an earlier run.
Run: ``python bench/run_all.py [--all | --synthetic --orchestration --memory --distributed --gpu]``, or
``make bench`` (the quick ones) and ``make bench-all``.
Keep it out of CI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_cache  # noqa: E402
import bench_image_check  # noqa: E402
import bench_metrics  # noqa: E402
import bench_neighbours  # noqa: E402
import bench_startup  # noqa: E402
import bench_step  # noqa: E402
from results_table import RATIO_WORDS, machine, markdown, with_unit  # noqa: E402

from retdm.published import machine_info, write_record  # noqa: E402
from retdm.revision import code_revision  # noqa: E402


def rows() -> list[dict]:
    """Run the quick benchmarks; one dict per reported figure. Ratios are baseline-relative:
    ``slowdown`` figures are measured / baseline (lower is better), ``speedup`` ones the inverse."""
    m = bench_metrics.main()
    n = bench_neighbours.main()
    s = bench_step.main()
    c = bench_cache.main()
    i = bench_image_check.main()
    u = bench_startup.main()
    slow = u["slowest_model_free"]
    startup = [dict(benchmark="startup", case=f"a stage without a model (slowest: {slow}), median of {u['repeats']}",
                    measured=f"python -m pipelines.{slow} --help", baseline="python -c 'import torch, torchvision'",
                    measured_s=u["median_s"][slow], baseline_s=u["baseline_s"],
                    ratio=u["baseline_s"] / u["median_s"][slow], ratio_kind="speedup",
                    target=f"<= {bench_startup.TARGET_S:g} s", passed=u["pass"])]
    check = [] if i is None else [dict(
        benchmark="image_check", case=f"scene, {i['n']:,} JPEGs, {i['cores']} usable cores",
        measured=f"find_unreadable_images, {i['workers']} threads", baseline="the same, 1 thread (serial decode)",
        measured_s=i["parallel_s"], baseline_s=i["serial_s"], ratio=i["ratio"], ratio_kind="speedup",
        target=f">= {bench_image_check.TARGET_RATIO:g}x with >= 2 cores", passed=i["pass"])]
    step_case = f"{s['backbone']}, batch {s['batch']}, {s['size']} px, k = {s['k']}"
    cache = [dict(benchmark="image_cache", case=f"{c['dataset']}, {size} px", measured="ImageCache read",
                  baseline="read_image + resize", measured_s=c["n"] / r["cache_per_s"],
                  baseline_s=c["n"] / r["decode_per_s"], ratio=r["ratio"], ratio_kind="speedup", target=">= 5x",
                  passed=r["pass"]) for size, r in c["sizes"].items()]
    return cache + check + startup + [
        dict(benchmark="metrics", case=f"{m['n']:,} x {m['m']} labels", measured="retdm.metrics.evaluate",
             baseline="scikit-learn", measured_s=m["retdm_s"], baseline_s=m["sklearn_s"], ratio=m["ratio"],
             ratio_kind="speedup", target=">= 5x and <= 1 s", passed=m["pass_ratio"] and m["pass_time"]),
        dict(benchmark="neighbours", case=f"{n['n']:,} x {n['m']} labels, {n['distinct_sets']:,} distinct sets, k = {n['k']}",
             measured="retdm.neighbours.label_neighbours", baseline=n["baseline"], measured_s=n["retdm_s"],
             baseline_s=n["baseline_s"], ratio=n["ratio"], ratio_kind="speedup", target="<= 10 s",
             passed=n["pass_time"]),
        dict(benchmark="step", case=step_case, measured="RETDM step, way2=bank", baseline="BCE step",
             measured_s=s["retdm_bank_s"], baseline_s=s["bce_s"], ratio=s["ratio_bank"], ratio_kind="slowdown",
             target="<= 1.3x", passed=s["pass"]),
        dict(benchmark="step", case=step_case, measured="RETDM step, way2=forward", baseline="BCE step",
             measured_s=s["retdm_forward_s"], baseline_s=s["bce_s"], ratio=s["ratio_forward"],
             ratio_kind="slowdown", target="(none: the paper's exact, k extra forwards)", passed=None),
    ]


def main(synthetic: bool = False, orchestration: bool = False, memory: bool = False, distributed: bool = False, gpu: bool = False
         ) -> pd.DataFrame:
    where, when = machine(), dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    figures = rows()
    if orchestration:
        import bench_orchestration

        o = bench_orchestration.main(tiny=False)
        figures.append(dict(benchmark="orchestration", case="default pipeline from scratch", measured="Prefect flow",
                            baseline="plain dvc repro", measured_s=o["prefect"]["wall"], baseline_s=o["dvc"]["wall"],
                            ratio=o["ratio"], ratio_kind="slowdown", target=f"<= {bench_orchestration.TARGET}x",
                            passed=o["ratio"] <= bench_orchestration.TARGET))
    if distributed:
        import bench_orchestration

        d = bench_orchestration.main_distributed(tiny=False)
        figures.append(dict(benchmark="distributed", case=f"default pipeline from scratch, {d['workers']} local workers",
                            measured="Prefect flow on Dask (train.threads 1, the pretrain all cores)",
                            baseline="Prefect flow, one stage at a time", measured_s=d["dask_wall"],
                            baseline_s=d["sequential_wall"], ratio=d["ratio"], ratio_kind="slowdown",
                            target=f"< {bench_orchestration.DISTRIBUTED_TARGET}x", passed=d["pass"]))
    if memory:
        import bench_memory

        figures += bench_memory.figures(bench_memory.main())
    if gpu:
        import bench_gpu

        figures += bench_gpu.rows(bench_gpu.main())  # cpu-reduced mode when there is no CUDA
    frame = pd.DataFrame([with_unit(f) for f in figures])
    frame["machine"] = where
    # Written before the 3-seed training below, so an hour of figures never waits on it.
    frame.to_parquet(HERE / "results.parquet", index=False)
    (HERE / "results.md").write_text(markdown(frame, where, when, ""))
    for record in published_records(frame, when):
        write_record(record, HERE.parent)
    if synthetic:
        import bench_synthetic
        long = bench_synthetic.main([0, 1, 2], {})
        extra = "\n## BCE vs RETDM on `synthetic`, 3 seeds (mean ± std)\n\n" + bench_synthetic.summary(long) + "\n"
        (HERE / "results.md").write_text(markdown(frame, where, when, extra))
    return frame


def published_records(frame: pd.DataFrame, when: str) -> list[dict]:
    """One ``results/published/bench_<benchmark>.json`` record per benchmark in ``frame``: a row per
    figure (case, measured against baseline, the ratio, target, pass), with the commit and machine."""
    commit = code_revision()
    records = []
    for name, rows in frame.groupby("benchmark", sort=False):
        checks = [{"what": f"{r.case}: {r.measured} against {r.baseline}",
                   "result": f"{r.measured_value:.3g} against {r.baseline_value:.3g} {r.unit}: "
                             f"{r.ratio:.2f}× {RATIO_WORDS.get(r.ratio_kind, r.ratio_kind)}",
                   "target": r.target, **({} if r.passed is None or pd.isna(r.passed) else {"pass": bool(r.passed)})}
                  for r in rows.itertuples()]
        records.append({"name": f"bench_{name}", "command": f"python bench/run_all.py ({when})", "commit": commit,
                        "machine": machine_info(), "checks": checks})
    return records


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", action="store_true", help="also run the 3-seed training comparison (~25 min)")
    parser.add_argument("--orchestration", action="store_true", help="also time Prefect against dvc repro (~15 min)")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory: training on synthetic, NUS-WIDE-size neighbours (~2-4 min)")
    parser.add_argument("--distributed", action="store_true",
                        help="also time the Dask flow on 2 local workers against the sequential flow (~20 min)")
    parser.add_argument("--gpu", action="store_true",
                        help="also measure training throughput against a plain BCE loop (~2 min; reduced on a CPU)")
    parser.add_argument("--all", action="store_true", help="every benchmark above (~70 min on 2 cores)")
    args = parser.parse_args()
    if args.all:
        args.synthetic = args.orchestration = args.memory = args.distributed = args.gpu = True
    main(args.synthetic, args.orchestration, args.memory, args.distributed, args.gpu)
    print((HERE / "results.md").read_text())
