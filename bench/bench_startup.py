"""Benchmark the start-up of the pipeline's stages: a fresh ``python -m pipelines.<entry> --help``
(every import of the stage, then its usage line; nothing runs), as DVC starts each stage.

- measured: each entry point of ``dvc.yaml``; those that build no model (``MODEL_FREE``) must not
  import torch, and start in at most ``TARGET_S`` seconds;
- baseline: ``python -c "import torch, torchvision"``, what every stage paid before torch and
  torchvision were imported only where a tensor or a model is made.

Median of ``repeats`` runs each, interleaved; the bytecode cache is warmed first (as after the first
stage of a run). ``main()`` returns the numbers as a dict. Run: ``python bench/bench_startup.py``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = ("download", "split", "validate", "cache", "train", "features", "sweep", "evaluate", "compare", "report")
MODEL_FREE = ("download", "split", "validate", "cache", "compare")
BASELINE = ("-c", "import torch, torchvision")
TARGET_S = 2.0


def seconds(args: tuple[str, ...]) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main(repeats: int = 5) -> dict[str, Any]:
    commands = {name: ("-m", f"pipelines.{name}", "--help") for name in ENTRIES} | {"baseline": BASELINE}
    for args in commands.values():
        seconds(args)  # warm the bytecode and page caches
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, args in commands.items():
            times[name].append(seconds(args))
    median = {name: statistics.median(t) for name, t in times.items()}
    slowest = max(MODEL_FREE, key=median.get)
    return {"median_s": median, "baseline_s": median["baseline"], "slowest_model_free": slowest,
            "pass": median[slowest] <= TARGET_S, "repeats": repeats}


if __name__ == "__main__":
    r = main()
    for name, s in r["median_s"].items():
        tag = " (no model)" if name in MODEL_FREE else ""
        print(f"{name:10s} {s:6.2f} s  {s / r['baseline_s']:5.2f}x the baseline{tag}")
    print(f"slowest stage without a model: {r['slowest_model_free']} {r['median_s'][r['slowest_model_free']]:.2f} s "
          f"(target <= {TARGET_S:g} s): {'PASS' if r['pass'] else 'FAIL'}")
