"""Peak memory against the targets of issue #6, each figure against baselines measured in the same run.

1. ``training``: ``retdm train --method retdm`` (pretrain → embed → finetune) on the default
   ``synthetic`` dataset (params.yaml's ``datasets.synthetic``: 3,000 images at 64 px, seed 0,
   made with ``retdm data synth``) at params.yaml's profile (``cpu``), every stage capped at
   ``epochs`` epochs (default 1). Peak memory does not grow with epochs: the images are decoded
   into memory and the neighbour table is built before the first, and every epoch allocates the
   same buffers again (measured: 2 epochs per stage peaked at 1.113 GB, 1 epoch at 1.111 GB; the
   high-water mark rises last in the finetune stage). Measured: the peak resident set size of
   the training process. Baselines: the 3 GB target, and the peak of a process that only
   imports torch and retdm's training code (the interpreter floor). Target: < 3 GB.
2. ``neighbours``: ``retdm.neighbours.label_neighbours(labels, k=10)`` at NUS-WIDE size
   (161,789 × 81 labels from ``bench_neighbours.make_nuswide_labels``, whose docstring states
   the assumptions) in a fresh process: wall time of one cold call and its peak RSS, both the
   whole process and above the floor of that process before the call (imports + labels).
   Targets: <= 30 s and <= 2 GB. Baseline: ``bench_neighbours.naive_neighbours``, numpy chunked
   full distance + lexsort (the full (8, S) Hamming rows of 8 sets at a time, never the whole
   S × S matrix: that alone would take S² bytes, ~1.2 GB at S = 35,000, and 8× that as int64),
   timed on 192 sets in the same process and scaled to S; its neighbours must equal ours there.

How a peak is measured. Linux records, at exec, the high-water mark of the address space being
replaced in the new program's ``ru_maxrss``: a process spawned from this one (torch imported,
~0.7 GB) would report at least this process's size. So every measured command runs under a
fresh wrapper interpreter (~10 MB, ``WRAPPER``) that spawns it and reads its ``ru_maxrss`` from
``wait4`` (the command and any child it waited for); the wrapper also samples the command's
``VmHWM`` and the summed ``VmRSS`` of its process tree every 0.1 s: a cross-check that misses
only the last 0.1 s, and the total should the training ever run DataLoader workers (an upper
bound: pages a forked child shares with its parent count twice). The neighbour process reads
its own ``VmHWM`` (per address space, reset at exec). 1 GB = 10^9 bytes here.

Run: ``python bench/bench_memory.py [--epochs 1] [--part all|training|neighbours]`` (1.5 to 4
minutes on the 2 shared cores, nearly all of it training). ``main()`` returns the numbers as a
dict, ``figures()`` the rows of ``run_all.py --memory``. Keep it out of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GB = 1e9
TRAIN_TARGET_GB = 3.0
NEIGHBOURS_TARGET_GB, NEIGHBOURS_TARGET_S = 2.0, 30.0
K, SUBSAMPLE, SEED = 10, 192, 0
FLOOR_IMPORTS = "import torch, retdm, retdm.cli, retdm.train.run"  # what `retdm train` imports

# Runs argv[1:], prints JSON: its ru_maxrss (wait4), sampled VmHWM, peak summed VmRSS of its tree.
WRAPPER = r"""
import json, os, re, subprocess, sys, time

def kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
    except OSError:
        return 0
    return int(m.group(1)) if m else 0

def tree(pid):
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
            except OSError:
                pass
    return pids

start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:])
hwm = tree_rss = 0
rise_s, seen = 0.0, set()
while True:
    pid, status, usage = os.wait4(child.pid, os.WNOHANG)
    if pid:
        break
    pids = tree(child.pid)
    seen.update(pids)
    now = kib(child.pid, "VmHWM")
    if now > hwm:
        hwm, rise_s = now, time.perf_counter() - start
    tree_rss = max(tree_rss, sum(kib(p, "VmRSS") for p in pids))
    time.sleep(0.1)
child.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({"returncode": child.returncode, "maxrss_kib": usage.ru_maxrss, "sampled_hwm_kib": hwm,
                  "sampled_tree_rss_kib": tree_rss, "processes": len(seen),
                  "last_rise_s": rise_s,
                  "wall_s": time.perf_counter() - start}))
"""


def child_env() -> dict[str, str]:
    """This environment, with no progress bars or analytics and the repository importable."""
    env = dict(os.environ, TQDM_DISABLE="1", DO_NOT_TRACK="1", DVC_NO_ANALYTICS="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", GX_ANALYTICS_ENABLED="false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def peak_rss(cmd: list[str], cwd: Path) -> dict[str, Any]:
    """Peak RSS of ``cmd`` run under ``WRAPPER``.

    Returns:
        peak_gb (wait4's ru_maxrss), sampled_hwm_gb, sampled_tree_gb, processes, wall_s.

    Raises:
        RuntimeError: the command failed; the message holds the end of its stderr.
    """
    done = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], cwd=cwd, env=child_env(),
                          capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if done.returncode == 0 and lines else {"returncode": done.returncode}
    if result["returncode"] != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... exited with {result['returncode']}:\n{done.stderr[-3000:]}")
    return {"peak_gb": result["maxrss_kib"] * 1024 / GB, "sampled_hwm_gb": result["sampled_hwm_kib"] * 1024 / GB,
            "sampled_tree_gb": result["sampled_tree_rss_kib"] * 1024 / GB, "processes": result["processes"],
            "last_rise_s": result["last_rise_s"], "wall_s": result["wall_s"], "stdout": "\n".join(lines[:-1])}


def synthetic_settings(params: Path = ROOT / "params.yaml") -> dict[str, Any]:
    """params.yaml's profile and ``datasets.synthetic`` (num_images, image_size, seed)."""
    doc = yaml.safe_load(params.read_text())
    try:
        synth = doc["datasets"]["synthetic"]
        return {"profile": doc["profile"], "num_images": int(synth["num_images"]),
                "image_size": int(synth["image_size"]), "seed": int(synth["seed"]),
                "test_fraction": float(doc["split"]["test_fraction"])}
    except (KeyError, TypeError) as err:
        raise KeyError(f"{params}: missing {err}; the memory benchmark reads profile, split.test_fraction and "
                       f"datasets.synthetic.{{num_images, image_size, seed}} from it") from err


def epochs_run(runs: Path) -> dict[str, int]:
    """Epochs each stage ran: rows of every ``<method>/<stage>/epochs.csv`` under ``runs``."""
    return {f"{p.parent.parent.name}/{p.parent.name}": len(p.read_text().strip().splitlines()) - 1
            for p in sorted(runs.glob("*/*/epochs.csv"))}


def training_peak(work: Path, epochs: int, settings: dict[str, Any]) -> dict[str, Any]:
    """Generate ``synthetic``, then train ``retdm`` on it under ``WRAPPER``; also the import floor."""
    py, data = sys.executable, work / "synthetic"
    subprocess.run([py, "-m", "retdm.cli", "data", "synth", "--out", str(data),
                    "--num-images", str(settings["num_images"]), "--image-size", str(settings["image_size"]),
                    "--seed", str(settings["seed"]), "--test-fraction", str(settings["test_fraction"])],
                   cwd=work, env=child_env(), check=True, capture_output=True)
    floor = peak_rss([py, "-c", FLOOR_IMPORTS], work)
    caps = [arg for stage in ("pretrain", "embed", "finetune") for arg in ("--set", f"{stage}.epochs={epochs}")]
    train = peak_rss([py, "-m", "retdm.cli", "train", "--data", str(data / "labels.parquet"), "--out",
                      str(work / "runs"), "--method", "retdm", "--profile", settings["profile"],
                      "--seed", str(settings["seed"]), "--quiet", *caps], work)
    return {"settings": settings, "epochs": epochs, "floor": floor, "train": train,
            "stages": epochs_run(work / "runs")}


def vm_hwm_gb() -> float:
    """This process's peak RSS so far (VmHWM: per address space, so not inherited from a parent)."""
    match = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) * 1024 / GB


def neighbours_child(labels_path: str, k: int = K, subsample: int = SUBSAMPLE, seed: int = SEED) -> dict[str, Any]:
    """In a fresh process: one cold ``label_neighbours`` call (time, peak), then the baseline.

    Returns:
        floor_gb (imports + labels), peak_gb (after the call, whole process), seconds, sets,
        tied_sets, within_radius_3, baseline_s (scaled to S), agree, threads.
    """
    import torch
    from bench_neighbours import naive_neighbours

    from retdm.neighbours import label_neighbours

    labels = np.load(labels_path)
    floor = vm_hwm_gb()
    start = time.perf_counter()
    neigh = label_neighbours(labels, k)
    seconds = time.perf_counter() - start
    peak = vm_hwm_gb()  # before the baseline runs
    s = len(neigh.sets)
    rows = np.random.default_rng(seed).choice(s, min(subsample, s), replace=False)
    start = time.perf_counter()
    theirs = naive_neighbours(neigh.sets, rows, k)
    baseline_s = (time.perf_counter() - start) * s / len(rows)  # linear in the number of query rows
    return {"floor_gb": floor, "peak_gb": peak, "seconds": seconds, "sets": s, "tied_sets": neigh.tied_sets,
            "within_radius_3": float((neigh.distance[:, -1] <= 3).mean()), "baseline_s": baseline_s,
            "baseline_rows": len(rows), "agree": bool(np.array_equal(theirs, neigh.index[rows])),
            "threads": torch.get_num_threads()}


def neighbours_case(work: Path, k: int = K) -> dict[str, Any]:
    """Draw the NUS-WIDE-size labels here, then time and measure ``label_neighbours`` in a fresh process."""
    sys.path.insert(0, str(HERE))
    from bench_neighbours import NUS_M, NUS_N, make_nuswide_labels

    labels = make_nuswide_labels(NUS_N, NUS_M, seed=SEED)
    path = work / "nuswide_labels.npy"
    np.save(path, labels)
    counts = labels.sum(1)
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "neighbours-child", str(path), "--k", str(k)],
                          cwd=work, env=child_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the neighbour process exited with {done.returncode}:\n{done.stderr[-3000:]}")
    freq = np.sort(labels.mean(0))[::-1]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "n": len(labels), "m": labels.shape[1], "k": k,
            "unlabelled": float((counts == 0).mean()), "labels_per_labelled": float(counts[counts > 0].mean()),
            "top_label": float(freq[0]), "rarest_label": float(freq[-1])}


def main(epochs: int = 1, parts: tuple[str, ...] = ("training", "neighbours")) -> dict[str, Any]:
    """Run the chosen parts in a temporary directory; the load average at start and end is kept."""
    result: dict[str, Any] = {"machine": f"{platform.platform()}, {len(os.sched_getaffinity(0))} usable cores",
                              "load_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="retdm-bench-memory-") as tmp:
        if "training" in parts:
            (Path(tmp) / "train").mkdir()
            result["training"] = training_peak(Path(tmp) / "train", epochs, synthetic_settings())
        if "neighbours" in parts:
            result["neighbours"] = neighbours_case(Path(tmp))
    result["load_end"] = os.getloadavg()[0]
    return result


def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of ``run_all.py``: memory in GB (``unit``), the neighbour time in seconds."""
    rows = []
    if "training" in r:
        t = r["training"]
        peak, floor, st = t["train"]["peak_gb"], t["floor"]["peak_gb"], t["settings"]
        case = (f"retdm train -m retdm, synthetic {st['num_images']:,} x {st['image_size']} px, profile "
                f"{st['profile']}, {t['epochs']} epoch(s) per stage")
        memory = dict(benchmark="memory", case=case, measured="training process peak RSS", unit="GB",
                      measured_value=peak, ratio_kind="memory")
        rows += [
            dict(memory, baseline=f"{TRAIN_TARGET_GB:g} GB target", baseline_value=TRAIN_TARGET_GB,
                 ratio=peak / TRAIN_TARGET_GB, target=f"< {TRAIN_TARGET_GB:g} GB", passed=peak < TRAIN_TARGET_GB),
            dict(memory, baseline="import floor (torch + retdm)", baseline_value=floor, ratio=peak / floor,
                 target="(none)", passed=None),
        ]
    if "neighbours" in r:
        n = r["neighbours"]
        case = f"NUS-WIDE size: {n['n']:,} x {n['m']} labels, {n['sets']:,} distinct sets, k = {n['k']}"
        above = n["peak_gb"] - n["floor_gb"]
        memory = dict(benchmark="memory", case=f"{case}; {above:.2f} GB above the floor",
                      measured="label_neighbours process peak RSS", unit="GB", measured_value=n["peak_gb"],
                      ratio_kind="memory")
        rows += [
            # Its time too, under "memory": the run that measures it (--memory) writes it, with the rest of this run.
            dict(benchmark="memory", case=f"{case}, fresh process", measured="retdm.neighbours.label_neighbours",
                 baseline="numpy chunked full distance + lexsort", measured_s=n["seconds"],
                 baseline_s=n["baseline_s"], ratio=n["baseline_s"] / n["seconds"], ratio_kind="speedup",
                 target=f"<= {NEIGHBOURS_TARGET_S:g} s", passed=n["seconds"] <= NEIGHBOURS_TARGET_S and n["agree"]),
            dict(memory, baseline=f"{NEIGHBOURS_TARGET_GB:g} GB target", baseline_value=NEIGHBOURS_TARGET_GB,
                 ratio=n["peak_gb"] / NEIGHBOURS_TARGET_GB, target=f"<= {NEIGHBOURS_TARGET_GB:g} GB",
                 passed=n["peak_gb"] <= NEIGHBOURS_TARGET_GB),
            dict(memory, baseline="floor (torch + retdm.neighbours + labels)", baseline_value=n["floor_gb"],
                 ratio=n["peak_gb"] / n["floor_gb"], target="(none)", passed=None),
        ]
    return rows


def report(r: dict[str, Any]) -> str:
    ok = {True: "PASS", False: "FAIL"}
    lines = [f"machine: {r['machine']}, load average {r['load_start']:.2f} -> {r['load_end']:.2f}; 1 GB = 10^9 B"]
    if "training" in r:
        t, st = r["training"], r["training"]["settings"]
        tr, fl = t["train"], t["floor"]
        stages = ", ".join(f"{name} {n}" for name, n in t["stages"].items())
        lines += [
            f"training: retdm train -m retdm, synthetic {st['num_images']:,} images x {st['image_size']} px "
            f"(seed {st['seed']}), profile {st['profile']}, epochs run: {stages}; {tr['wall_s']:.0f} s",
            f"  training process peak RSS {tr['peak_gb']:.3f} GB (wait4 ru_maxrss; sampled VmHWM "
            f"{tr['sampled_hwm_gb']:.3f} GB, last rising at {tr['last_rise_s']:.0f} s; process tree {tr['sampled_tree_gb']:.3f} GB over "
            f"{tr['processes']} process(es))",
            f"  import floor ({FLOOR_IMPORTS}): {fl['peak_gb']:.3f} GB; training adds "
            f"{tr['peak_gb'] - fl['peak_gb']:.3f} GB",
            f"  peak / {TRAIN_TARGET_GB:g} GB = {tr['peak_gb'] / TRAIN_TARGET_GB:.2f}; "
            f"< {TRAIN_TARGET_GB:g} GB: {ok[tr['peak_gb'] < TRAIN_TARGET_GB]}",
        ]
    if "neighbours" in r:
        n = r["neighbours"]
        lines += [
            f"neighbours: N={n['n']:,} x M={n['m']}, {n['unlabelled']:.1%} unlabelled, "
            f"{n['labels_per_labelled']:.2f} labels per labelled image, label frequency "
            f"{n['top_label']:.1%} .. {n['rarest_label']:.2%}, S={n['sets']:,} distinct sets, k={n['k']} "
            f"({n['tied_sets']:,} tied at k, {n['within_radius_3']:.1%} with the k-th within distance 3)",
            f"  label_neighbours, one cold call in a fresh process (its torch ops on 1 thread; the process "
            f"default is {n['threads']}): "
            f"{n['seconds']:.2f} s; <= {NEIGHBOURS_TARGET_S:g} s: {ok[n['seconds'] <= NEIGHBOURS_TARGET_S]}",
            f"  peak RSS {n['peak_gb']:.3f} GB whole process, {n['peak_gb'] - n['floor_gb']:.3f} GB above the "
            f"floor ({n['floor_gb']:.3f} GB: torch + retdm.neighbours + labels); <= {NEIGHBOURS_TARGET_GB:g} GB: "
            f"{ok[n['peak_gb'] <= NEIGHBOURS_TARGET_GB]}",
            f"  baseline (numpy chunked full distance + lexsort, 8 rows per chunk): {n['baseline_s']:.1f} s "
            f"(timed on {n['baseline_rows']} sets, scaled to S) = {n['baseline_s'] / n['seconds']:.0f}x ours; "
            f"neighbours agree on the subsample: {ok[n['agree']]}",
        ]
    return "\n".join(lines)


def passed(r: dict[str, Any]) -> bool:
    return all(row["passed"] is not False for row in figures(r))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    child = sub.add_parser("neighbours-child", help="internal: the fresh process of the neighbour case")
    child.add_argument("labels")
    child.add_argument("--k", type=int, default=K)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per training stage (default 1)")
    parser.add_argument("--part", choices=["all", "training", "neighbours"], default="all")
    args = parser.parse_args()
    if args.command == "neighbours-child":
        sys.path.insert(0, str(ROOT))
        print(json.dumps(neighbours_child(args.labels, args.k)))
        sys.exit(0)
    outcome = main(args.epochs, ("training", "neighbours") if args.part == "all" else (args.part,))
    print(report(outcome))
    sys.exit(0 if passed(outcome) else 1)
