"""How benchmark figures are written down: the machine line, a row's unit, and the Markdown table
that ``run_all.py`` and ``bench_gpu.py`` both print."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pandas as pd
import torch


def machine() -> str:
    """One line naming the machine the numbers came from."""
    cpu = "unknown cpu"
    if Path("/proc/cpuinfo").is_file():
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {usable} usable cores, {platform.system()} {platform.release()}, Python " \
           f"{platform.python_version()}, torch {torch.__version__}"


def with_unit(row: dict) -> dict:
    """``row`` with ``unit``, ``measured_value`` and ``baseline_value``: a row without a unit is in seconds
    (``measured_s``, ``baseline_s``); other units (``memory``: GB) give their values directly."""
    if row.get("unit", "s") == "s":
        return {**row, "unit": "s", "measured_value": row["measured_s"], "baseline_value": row["baseline_s"]}
    return row


RATIO_WORDS = {"speedup": "faster", "slowdown": "the time", "memory": "the memory",
               "throughput": "the throughput"}


def markdown(frame: pd.DataFrame, where: str, when: str, extra: str = "") -> str:
    lines = ["# Benchmarks", "", f"Machine: {where}  ", f"Run: {when}", "",
             "| benchmark | case | measured | baseline | measured value | baseline value | unit | ratio | target | pass |",
             "|---|---|---|---|---:|---:|---|---:|---|---|"]
    for r in frame.itertuples():
        ok = "" if r.passed is None or pd.isna(r.passed) else ("PASS" if r.passed else "FAIL")
        lines.append(f"| {r.benchmark} | {r.case} | {r.measured} | {r.baseline} | {r.measured_value:.3f} | "
                     f"{r.baseline_value:.3f} | {r.unit} | {r.ratio:.2f}x {RATIO_WORDS.get(r.ratio_kind, r.ratio_kind)} | "
                     f"{r.target} | {ok} |")
    return "\n".join(lines) + "\n" + extra
