"""Benchmark reading images from retdm.data.image_cache against decoding the JPEGs every epoch.

Case: the 2,000 MIML ``scene`` JPEGs (``/work/shared/datasets/miml_scene``, about 26 MB, mostly
384 × 256); when they are absent, 4,000 ``synthetic`` 64 px PNGs generated into a temporary
directory. For each cache side (146 and 73 px: ``data.resize`` for 128 and 64 px crops, the paper's 256/224):

- baseline: ``read_image`` + the transforms' antialiased resize, what ``LabelTableDataset``
  does per item without a cache;
- measured: the same uint8 (3, size, size) tensor read from the cache (memory-mapped shards, a
  shuffled epoch, warm page cache);
- the build time (``min(4, cpu count)`` threads and one thread, best of ``repeats`` each) and the
  cache's bytes on disk against the JPEGs'.

Single process, torch's default intra-op threads. Target: the cache is at least 5× faster.
Run: ``python bench/bench_cache.py``. ``main()`` returns the numbers as a dict.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere, without installing
    sys.path.insert(0, str(ROOT))

from retdm.data.image_cache import ImageCache, build_image_cache, cached_loader, resize_square  # noqa: E402
from retdm.data.images import read_image  # noqa: E402
from retdm.data.split import assign_split  # noqa: E402
from retdm.data.table import LabelTable  # noqa: E402

SCENE = Path("/work/shared/datasets/miml_scene")
SIZES, SEED, TARGET_RATIO = (146, 73), 0, 5.0


def scene_table(root: Path = SCENE) -> LabelTable | None:
    """The scene label table built in memory from ``data.csv``, or None when the data is absent."""
    if not (root / "data.csv").is_file():
        return None
    raw = pd.read_csv(root / "data.csv")
    labels = [c for c in raw.columns if c != "image"]
    frame = pd.DataFrame({"image_id": raw["image"].str.rsplit(".", n=1).str[0], "path": "original/" + raw["image"],
                          "split": assign_split(len(raw), 0.2, SEED),
                          **{name: raw[name].to_numpy(np.uint8) for name in labels}})
    return LabelTable(frame, tuple(labels), root, "scene", "bench_cache: data.csv")


def synthetic_table(out: Path) -> LabelTable:
    from retdm.data.synthetic import make_synthetic

    return make_synthetic(out, num_images=4000, image_size=64, seed=SEED, progress=False)


def best_rate(fn, n: int, repeats: int) -> float:
    """Best images/s of ``repeats`` calls of ``fn`` (each handles ``n`` images)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(repeats: int = 2) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        tmp = Path(tmp)
        table = scene_table()
        dataset = "scene (2,000 JPEGs)" if table is not None else "synthetic (4,000 PNGs @ 64 px)"
        if table is None:
            table = synthetic_table(tmp / "synthetic")
        paths = [table.root / p for p in table.frame["path"]]
        ids = table.frame["image_id"].tolist()
        n = len(paths)
        order = np.random.default_rng(SEED).permutation(n)  # a shuffled epoch
        source_bytes = sum(p.stat().st_size for p in paths)
        for p in paths:  # warm the page cache for the baseline too
            p.read_bytes()
        out: dict[str, Any] = {
            "platform": platform.platform(), "cpus_usable": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(), "repeats": repeats, "dataset": dataset, "n": n,
            "source_bytes": source_bytes,
            "sizes": {},
        }
        for size in SIZES:
            def decode() -> None:
                for i in order:
                    resize_square(read_image(paths[i]), size)  # (3, size, size)

            for i in order[:50]:  # warm-up: first calls of PIL and torch are slow
                resize_square(read_image(paths[i]), size)
            build_s, build1_s, cache_dir = float("inf"), float("inf"), tmp / f"cache{size}"
            for _ in range(repeats):  # interleaved, best of each: the cores may be shared
                t0 = time.perf_counter()
                build_image_cache(table, cache_dir, size=size, progress=False)
                build_s = min(build_s, time.perf_counter() - t0)
                t0 = time.perf_counter()
                build_image_cache(table, tmp / f"cache{size}_1", size=size, workers=1, progress=False)
                build1_s = min(build1_s, time.perf_counter() - t0)
            load = cached_loader(ImageCache(cache_dir, expect_size=size), ids)

            def read() -> None:
                for i in order:
                    load(int(i))  # (3, size, size)

            decode_rate = best_rate(decode, n, repeats)
            cache_rate = best_rate(read, n, repeats + 1)
            out["sizes"][size] = {
                "decode_per_s": decode_rate, "cache_per_s": cache_rate, "ratio": cache_rate / decode_rate,
                "build_s": build_s, "build_workers": min(4, os.cpu_count() or 1), "build_1_s": build1_s,
                "cache_bytes": dir_bytes(cache_dir), "pass": cache_rate / decode_rate >= TARGET_RATIO,
            }
        return out


def report(r: dict[str, Any]) -> str:
    mb = 1e6
    lines = [f"machine: {r['platform']}, usable cores={r['cpus_usable']}, torch threads={r['torch_threads']}",
             f"case: {r['dataset']}, {r['n']:,} images, {r['source_bytes'] / mb:.1f} MB of source files"]
    for size, s in r["sizes"].items():
        lines += [
            f"-- {size} px --",
            f"decode + resize (baseline): {s['decode_per_s']:8.0f} images/s",
            f"read from cache:            {s['cache_per_s']:8.0f} images/s",
            f"cache / decode-JPEG = {s['ratio']:.1f}x ({'PASS' if s['pass'] else 'FAIL'}, target >= {TARGET_RATIO:g}x)",
            f"build (best of {r['repeats']}): {s['build_s']:.2f} s with {s['build_workers']} threads, "
            f"{s['build_1_s']:.2f} s with 1 ({s['build_1_s'] / s['build_s']:.2f}x)",
            f"size on disk: {s['cache_bytes'] / mb:.1f} MB = {s['cache_bytes'] / r['source_bytes']:.2f}x the source "
            f"files",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    result = main()
    print(report(result))
    sys.exit(0 if all(s["pass"] for s in result["sizes"].values()) else 1)
