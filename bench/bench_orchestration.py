"""Orchestration overhead: plain ``dvc repro`` against the Prefect ``reproduce`` flow, per stage.

Both run the same pipeline from scratch, each in its own temporary git clone of the project.
Every stage entry point logs when its ``retdm`` call started and ended (``RETDM_STAGE_TIMES``),
so the overhead of orchestration is the wall time minus the time spent inside ``retdm``:
process start-up and imports, DVC's hashing and locking, Prefect's task bookkeeping.

- DVC path: a stage's overhead is the gap between the end of the previous stage's ``retdm`` call
  and the start of its own (the stages run one after another).
- Prefect path: a stage's overhead is its task's wall time minus its ``retdm`` time; the flow's
  total includes starting Prefect's temporary local server (7-17 s the first time in a process).

Baseline: plain ``dvc repro``. Target: the flow within 1.2× of it on the default pipeline.
Run: ``python bench/bench_orchestration.py [--tiny]`` (default params: about 15 minutes).

``--distributed`` (``main_distributed``): the whole pipeline from scratch, each run in its own
temporary git copy, as the sequential flow (``reproduce(runner="threads", workers=1)``: one
stage at a time, params.yaml as is, so each stage's torch uses ``train.threads`` threads, 0 =
all cores) against the flow on a local Dask cluster of 2 worker processes
(``reproduce(runner="dask", workers=2)``) with ``train.threads: 1`` set in its copy, so two
stages share the cores instead of fighting over them, and ``methods: {bce: {threads: 0}}``: the
pretrain, which every other training continues, runs alone and keeps all the cores. The thread
counts differ, so the two runs' models differ in their last bits; only the wall times are
compared. Baseline: the sequential flow. Target: the Dask run faster (ratio Dask / sequential
below 1). Run: ``python bench/bench_orchestration.py --distributed [--tiny]`` (default params:
about 20 minutes for both runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from retdm.methods import METHODS  # noqa: E402
from tests.project_copy import copy_project, isolated_environ, run_env  # noqa: E402

TINY = {"data": {"image_size": 32, "resize": 36, "batch_size": 16}, "model": {"embed_dim": 32, "label_hidden": 32},
        "loss": {"k": 3}, "pretrain": {"epochs": 1}, "embed": {"epochs": 1}, "finetune": {"epochs": 1}}
TARGET = 1.2
DISTRIBUTED_TARGET = 1.0  # the Dask run / the sequential run
FLOW = ("import json, sys; from pipelines.flows import reproduce; "
        "print('RESULT', json.dumps(reproduce(root=sys.argv[1], **json.loads(sys.argv[2]))))")


def stage_name(record: dict) -> str:
    """The DVC stage name of a ``RETDM_STAGE_TIMES`` record."""
    args = record["args"]
    if record["entry"] == "train":
        dataset, method, stage, seed = args
        if stage == "pretrain":
            return f"pretrain@{dataset}-{seed}"
        if stage == "finetune" and "embed" not in METHODS.get(method).stages:
            return f"finetune_baseline@{dataset}-{method}-{seed}"
        return f"{stage}@{dataset}-{method}-{seed}"
    if record["entry"] == "sweep" and len(args) == 4:
        return "sweep_point@{0}-{1}-{2}-{3}".format(*args)
    return f"{record['entry']}@{'-'.join(args)}" if args else record["entry"]  # e.g. evaluate@synthetic-bce-0, compare


def project_copy(dest: Path, tiny: bool, threads: int | None = None, pretrain_threads: int | None = None) -> Path:
    """The project's git-tracked files (``tests/project_copy.py``: never a run's dvc.lock or outputs)
    in a fresh git repository at ``dest``: tiny params with ``tiny``, ``train.threads`` set to
    ``threads`` and the pretrain's (``methods.bce.threads``) to ``pretrain_threads`` unless None."""
    copy_project(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    if tiny:
        params["datasets"]["synthetic"].update(num_images=160, image_size=32)
        params["validate"]["tolerance"] = 0.05
        params["train"] = dict(TINY)
    if threads is not None:
        params["train"] = {**(params["train"] or {}), "threads": threads}
    if pretrain_threads is not None:
        params["methods"]["bce"] = {**(params["methods"]["bce"] or {}), "threads": pretrain_threads}
    if tiny or threads is not None or pretrain_threads is not None:
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "bench"]):
        subprocess.run(cmd, cwd=dest, check=True)
    return dest


def read_times(path: Path) -> dict[str, dict]:
    return {stage_name(r): r for r in map(json.loads, path.read_text().splitlines())}


def run_dvc(repo: Path, env: dict) -> tuple[float, dict[str, float], dict[str, float]]:
    log = repo / "stage_times.jsonl"
    start = time.time()
    subprocess.run(["dvc", "repro"], cwd=repo, env={**env, "RETDM_STAGE_TIMES": str(log)}, check=True,
                   capture_output=True)
    wall = time.time() - start
    times = read_times(log)
    inside, overhead, previous_end = {}, {}, start
    for name, r in sorted(times.items(), key=lambda kv: kv[1]["start"]):
        inside[name] = r["end"] - r["start"]
        overhead[name] = r["start"] - previous_end
        previous_end = r["end"]
    overhead["(after the last stage)"] = start + wall - previous_end
    return wall, inside, overhead


def run_prefect(repo: Path, env: dict) -> tuple[float, dict[str, float], dict[str, float]]:
    log = repo / "stage_times.jsonl"
    code = ("import json, sys; from pipelines.flows import reproduce; "
            "print('RESULT', json.dumps(reproduce(root=sys.argv[1])))")
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", code, str(repo)], cwd=ROOT, env={**env, "RETDM_STAGE_TIMES": str(log)},
                          check=False, capture_output=True, text=True)
    if proc.returncode:  # say why: the flow's own log is the only record of a failed run
        raise RuntimeError(f"the Prefect flow failed in {repo} (exit {proc.returncode}):\n{proc.stderr[-6000:]}")
    wall = time.time() - start
    records = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))[7:])
    times = read_times(log)
    inside = {name: r["end"] - r["start"] for name, r in times.items()}
    overhead = {r["stage"]: r["seconds"] - inside.get(r["stage"], 0.0) for r in records}
    # Before the first task and after the last: Python and Prefect start-up, the local server, artifacts.
    first = min(r["start"] for r in times.values()) - inside_overhead(records, overhead)
    overhead["(flow start-up and wrap-up)"] = (first - start) + (start + wall - max(r["end"] for r in times.values()))
    return wall, inside, overhead


def inside_overhead(records: list[dict], overhead: dict[str, float]) -> float:
    """The first task's own overhead (its dvc start-up before the retdm call)."""
    return overhead[records[0]["stage"]]


def bench_env(state: Path) -> dict[str, str]:
    """The environment of the benchmarked runs: no analytics, DVC and Prefect state under ``state``."""
    return {**run_env(), **isolated_environ(state), "TQDM_DISABLE": "1"}


def main(tiny: bool) -> dict:
    state = Path(tempfile.mkdtemp(prefix="retdm-bench-"))
    env = bench_env(state)
    try:
        dvc_wall, dvc_inside, dvc_over = run_dvc(project_copy(state / "dvc", tiny), env)
        pf_wall, pf_inside, pf_over = run_prefect(project_copy(state / "prefect", tiny), env)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return {"machine": f"{platform.platform()}, {os.cpu_count()} cpus", "params": "tiny" if tiny else "default",
            "dvc": {"wall": dvc_wall, "inside": dvc_inside, "overhead": dvc_over},
            "prefect": {"wall": pf_wall, "inside": pf_inside, "overhead": pf_over},
            "ratio": pf_wall / dvc_wall}


def report(r: dict) -> str:
    lines = [f"machine: {r['machine']}; params: {r['params']}",
             f"{'stage':<34} {'dvc: retdm s':>12} {'overhead s':>10} {'prefect: retdm s':>16} {'overhead s':>10}"]
    names = list(dict.fromkeys([*r["dvc"]["overhead"], *r["prefect"]["overhead"]]))
    for n in names:
        cells = [r["dvc"]["inside"].get(n), r["dvc"]["overhead"].get(n), r["prefect"]["inside"].get(n),
                 r["prefect"]["overhead"].get(n)]
        lines.append(f"{n:<34} " + " ".join(f"{'' if c is None else f'{c:.1f}':>{w}}"
                                             for c, w in zip(cells, (12, 10, 16, 10))))
    for path in ("dvc", "prefect"):
        p = r[path]
        lines.append(f"{path}: wall {p['wall']:.1f} s, inside retdm {sum(p['inside'].values()):.1f} s, "
                     f"orchestration {p['wall'] - sum(p['inside'].values()):.1f} s")
    verdict = "PASS" if r["ratio"] <= TARGET else "FAIL"
    lines.append(f"Prefect flow / plain dvc repro = {r['ratio']:.2f}x (target <= {TARGET}x: {verdict})")
    return "\n".join(lines)


def run_flow(repo: Path, env: dict, **options: Any) -> tuple[float, list[dict]]:
    """``reproduce(root=repo, **options)`` in a fresh Python process: its wall time (start-up
    and Prefect's temporary server included) and the per-stage records it returns."""
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", FLOW, str(repo), json.dumps(options)], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode:
        raise RuntimeError(f"reproduce({options}) failed in {repo} (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return wall, json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))[7:])


def flow_summary(wall: float, records: list[dict], threads: str) -> dict:
    """One run's figures: wall, thread setting, stage count, summed stage seconds, workers used."""
    return {"wall": wall, "threads": threads, "stages": len(records),
            "stage_seconds": sum(r["seconds"] for r in records), "workers": sorted({r["worker"] for r in records})}


def main_distributed(tiny: bool, workers: int = 2) -> dict:
    """The sequential flow against the flow on a local Dask cluster of ``workers`` processes,
    each on the whole pipeline from scratch (see the module docstring).

    Returns:
        ``machine``, ``params``, ``workers``, ``sequential_wall`` and ``dask_wall`` (seconds),
        ``ratio`` (Dask / sequential: below 1 is faster), ``speedup`` (its inverse), ``target``,
        ``pass``, and ``sequential`` / ``dask``: each run's wall, thread setting, stage count,
        summed stage seconds and the workers that ran the stages.
    """
    state = Path(tempfile.mkdtemp(prefix="retdm-bench-distributed-"))
    env = bench_env(state)
    try:
        seq_wall, seq = run_flow(project_copy(state / "sequential", tiny), env, runner="threads", workers=1)
        dask_wall, dask = run_flow(project_copy(state / "dask", tiny, threads=1, pretrain_threads=0), env,
                                   runner="dask", workers=workers)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    ratio = dask_wall / seq_wall
    return {"machine": f"{platform.platform()}, {os.cpu_count()} cpus", "params": "tiny" if tiny else "default",
            "workers": workers, "sequential_wall": seq_wall, "dask_wall": dask_wall, "ratio": ratio,
            "speedup": seq_wall / dask_wall, "target": f"< {DISTRIBUTED_TARGET}", "pass": ratio < DISTRIBUTED_TARGET,
            "sequential": flow_summary(seq_wall, seq, "train.threads as in params.yaml"),
            "dask": flow_summary(dask_wall, dask, "train.threads: 1, the pretrain all cores")}


def report_distributed(r: dict) -> str:
    lines = [f"machine: {r['machine']}; params: {r['params']}"]
    for name, title in (("sequential", "sequential flow (1 stage at a time)"),
                        ("dask", f"Dask flow ({r['workers']} local workers)")):
        p = r[name]
        lines.append(f"{title:<38} wall {p['wall']:7.1f} s, {p['stages']} stages, {p['stage_seconds']:7.1f} stage s, "
                     f"{p['threads']}, on {len(p['workers'])} worker(s)")
    verdict = "PASS" if r["pass"] else "FAIL"
    lines.append(f"Dask flow / sequential flow = {r['ratio']:.2f}x ({r['speedup']:.2f}x faster; "
                 f"target < {DISTRIBUTED_TARGET}x: {verdict})")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="1-epoch, 160-image params (about 3 minutes)")
    parser.add_argument("--distributed", action="store_true",
                        help="the sequential flow against the flow on 2 local Dask workers, instead")
    args = parser.parse_args()
    print(report_distributed(main_distributed(args.tiny)) if args.distributed else report(main(args.tiny)))
