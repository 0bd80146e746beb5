"""Benchmark retdm.neighbours.label_neighbours at MS-COCO size against a naive numpy search.

Case: N=82,783 label vectors (the COCO-2014 train size) over M=80 labels, fixed seed, drawn
like COCO's: one dominant label (COCO's "person") in half the images, the others Zipf-skewed
and co-occurring through a few latent topics, about 2.9 positives per image; that yields tens
of thousands of distinct label sets. Target: ``label_neighbours(labels, k=10)`` takes at most
10 s (best of 2).

Baseline: "numpy full distance + lexsort": per chunk of rows, the full (rows, S) Hamming matrix
by broadcasting and np.lexsort on (distance, index). It is timed on a subsample of the distinct
sets and scaled up linearly to all S; its neighbours must equal ours on that subsample.

The cores are shared: the load average at start and end is printed (label_neighbours runs its
torch ops on one thread for that reason, see retdm.neighbours._single_thread).

``make_nuswide_labels`` draws the NUS-WIDE-size case (161,789 × 81) that ``bench_memory.py``
times and measures in a fresh process against the 30 s / 2 GB targets.

Run: ``python bench/bench_neighbours.py [--dense]`` (``--dense`` also times the dense-only
search, ``radius=None``). ``main()`` returns the numbers as a dict.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere, without installing
    sys.path.insert(0, str(ROOT))

from retdm.neighbours import label_neighbours  # noqa: E402

N, M, K, SEED = 82_783, 80, 10, 0
NUS_N, NUS_M = 161_789, 81  # NUS-WIDE's train part (bench_memory.py times and measures it)
TARGET_S, SUBSAMPLE = 10.0, 192


def make_labels(n: int = N, m: int = M, topics: int = 12, mean_labels: float = 2.9,
                seed: int = SEED) -> np.ndarray:
    """(N, M) uint8 COCO-like labels: label 0 in half the rows, the rest from topic mixtures."""
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, m + 1)                                  # (M,) skewed popularity
    topic_w = rng.dirichlet(np.full(m, 0.1), size=topics) * 0.6 + zipf / zipf.sum() * 0.4  # (T, M)
    topic_w[:, 0] = 0.0                                               # label 0 is drawn apart
    first, second = rng.integers(0, topics, n), rng.integers(0, topics, n)  # (N,) each
    p = topic_w[first] + np.where(rng.random(n)[:, None] < 0.3, topic_w[second], 0.0)  # (N, M)
    p /= p.sum(1, keepdims=True)
    # E[clip(Poisson(l), 1)] = l + e^-l: l = mean - 0.6 gives mean - 0.5 other labels per row.
    counts = np.clip(rng.poisson(mean_labels - 0.6, n), 1, m - 1)    # (N,)
    gumbel = np.log(p + 1e-30) - np.log(-np.log(rng.random((n, m))))  # (N, M) top-c sampling
    rank = np.argsort(np.argsort(-gumbel, axis=1), axis=1)          # (N, M) rank of each label
    labels = (rank < counts[:, None]).astype(np.uint8)              # (N, M) c distinct labels
    labels[:, 0] = rng.random(n) < 0.5
    return labels


def make_nuswide_labels(n: int = NUS_N, m: int = NUS_M, topics: int = 16, mean_labels: float = 2.4,
                        unlabelled: float = 0.2, zipf: float = 1.3, seed: int = SEED) -> np.ndarray:
    """(N, M) uint8 NUS-WIDE-like labels from a seeded co-occurrence model.

    Assumptions (NUS-WIDE's train part: 161,789 images, 81 concepts): about a fifth of the images
    carry none of the 81 labels; a labelled image carries 1 + Poisson(1.4) labels (mean ~2.4, at
    most ~10); label popularity is long-tailed (Zipf exponent 1.3 mixed with topics: the top label,
    NUS-WIDE's "sky", in ~28 % of the images, the rarest in ~0.2 %); labels co-occur through
    ``topics`` latent topics (sky + clouds, water + lake, ...), an image drawing one topic or,
    with probability 0.3, two. With the defaults: ~35,000 distinct label sets.
    """
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, m + 1) ** zipf                           # (M,) long tail
    topic_w = rng.dirichlet(np.full(m, 0.1), size=topics) * 0.5 + popularity / popularity.sum() * 0.5  # (T, M)
    first, second = rng.integers(0, topics, n), rng.integers(0, topics, n)  # (N,) each
    p = topic_w[first] + np.where(rng.random(n)[:, None] < 0.3, topic_w[second], 0.0)  # (N, M)
    p /= p.sum(1, keepdims=True)
    counts = np.clip(rng.poisson(mean_labels - 1.0, n) + 1, 1, m)         # (N,) labels per image
    gumbel = np.log(p) - np.log(-np.log(rng.random((n, m))))              # (N, M) top-c sampling
    rank = np.argsort(np.argsort(-gumbel, axis=1), axis=1)                # (N, M) rank of each label
    labels = (rank < counts[:, None]).astype(np.uint8)                    # (N, M) c distinct labels
    labels[rng.random(n) < unlabelled] = 0                                # images with no label
    return labels


def naive_neighbours(sets: np.ndarray, rows: np.ndarray, k: int, chunk: int = 8) -> np.ndarray:
    """Baseline: full Hamming rows by broadcasting, then np.lexsort on (distance, index).

    Returns:
        (len(rows), k) int64 neighbour indices into ``sets``.
    """
    s, m = sets.shape
    out = np.empty((len(rows), k), np.int64)
    for start in range(0, len(rows), chunk):
        r = rows[start:start + chunk]
        dist = (sets[r, None, :] != sets[None, :, :]).sum(2)        # (R, S)
        dist[np.arange(len(r)), r] = m + 1                           # never itself
        col = np.broadcast_to(np.arange(s), dist.shape)              # (R, S)
        out[start:start + len(r)] = np.lexsort((col, dist), axis=-1)[:, :k]  # (R, K)
    return out


def best_of(fn, repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(n: int = N, m: int = M, k: int = K, seed: int = SEED, repeats: int = 2,
         subsample: int = SUBSAMPLE, dense: bool = False) -> dict[str, Any]:
    load_start = os.getloadavg()[0]
    labels = make_labels(n, m, seed=seed)
    t_ours, neigh = best_of(lambda: label_neighbours(labels, k), repeats)
    s = len(neigh.sets)
    rows = np.random.default_rng(seed).choice(s, min(subsample, s), replace=False)
    t_sub, theirs = best_of(lambda: naive_neighbours(neigh.sets, rows, k), 1)
    t_naive = t_sub * s / len(rows)  # linear in the number of query rows
    agree = bool(np.array_equal(theirs, neigh.index[rows]))  # every set has >= k others here
    t_dense = dense_agree = None
    if dense:
        t_dense, full = best_of(lambda: label_neighbours(labels, k, radius=None), 1)
        dense_agree = bool(np.array_equal(full.index, neigh.index)
                           and np.array_equal(full.distance, neigh.distance)
                           and np.array_equal(full.mask, neigh.mask)
                           and full.tied_sets == neigh.tied_sets)
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        "n": n, "m": m, "k": k,
        "labels_per_item": float(labels.sum(1).mean()),
        "distinct_sets": s,
        "tied_sets": neigh.tied_sets,
        "retdm_s": t_ours,
        "dense_s": t_dense,
        "dense_agree": dense_agree,
        "within_radius_3": float((neigh.distance[:, -1] <= 3).mean()),
        "baseline": "numpy full distance + lexsort",
        "baseline_rows": len(rows),
        "baseline_s": t_naive,
        "ratio": t_naive / t_ours,
        "agree": agree,
        "pass_time": bool(t_ours <= TARGET_S),
    }


def report(r: dict[str, Any]) -> str:
    ok = {True: "PASS", False: "FAIL"}
    lines = [
        f"machine: {r['platform']}, cpu_count={r['cpu_count']}, "
        f"torch threads={r['torch_threads']}, "
        f"load average {r['load_start']:.2f} -> {r['load_end']:.2f}",
        f"case: N={r['n']:,} x M={r['m']}, {r['labels_per_item']:.2f} labels/item, "
        f"S={r['distinct_sets']:,} distinct sets, k={r['k']} ({r['tied_sets']:,} sets tied at k)",
        f"label_neighbours: {r['retdm_s']:.2f} s (best of 2); "
        f"{r['within_radius_3']:.1%} of sets have their k-th neighbour within distance 3",
    ]
    if r["dense_s"] is not None:
        lines.append(f"label_neighbours(radius=None), dense only: {r['dense_s']:.2f} s; "
                     f"same table as the filtered search: {ok[r['dense_agree']]}")
    lines += [
        f"baseline ({r['baseline']}): {r['baseline_s']:.1f} s "
        f"(timed on {r['baseline_rows']} sets, scaled to S)",
        f"baseline / retdm = {r['ratio']:.0f}x; "
        f"neighbours agree on the subsample: {ok[r['agree']]}",
        f"<= {TARGET_S:g} s: {ok[r['pass_time']]}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    result = main(dense="--dense" in sys.argv[1:])
    print(report(result))
    sys.exit(0 if result["agree"] and result["pass_time"] and result["dense_agree"] is not False
             else 1)
