"""Benchmark the check that decodes every image before training (``find_unreadable_images``).

Case: the 2,000 MIML ``scene`` JPEGs (``../shared/datasets/miml_scene/original/*.jpg`` beside the
repository, or ``$SCENE``); skipped (``main()`` returns None) when they are absent.

- baseline: the same check on one thread, a serial decode of every file;
- measured: the check on its default threads (``decode_workers()``: ``min(4, cpu count)``; PIL
  releases the GIL while decoding), what ``retdm data import`` and the ``cache`` stage run.

Page cache warm for both, best of ``repeats`` each, interleaved (the cores may be shared). The
figure is images/s and the speed-up over serial; it can only scale with the usable cores, so the
target asks for a gain only where there are at least two.
Run: ``python bench/bench_image_check.py``. ``main()`` returns the numbers as a dict.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere, without installing
    sys.path.insert(0, str(ROOT))

from retdm.data.images import decode_workers, find_unreadable_images  # noqa: E402

SCENE = Path(os.environ.get("SCENE", ROOT.parent / "shared" / "datasets" / "miml_scene"))
TARGET_RATIO = 1.3  # with >= 2 usable cores


def main(repeats: int = 5, root: Path = SCENE) -> dict[str, Any] | None:
    """Time the check on ``root/original/*.jpg``; None when there are no such images."""
    paths = sorted(str(p.relative_to(root)) for p in (root / "original").glob("*.jpg"))
    if not paths:
        return None
    for p in paths:  # warm the page cache: decoding is timed, not the disk
        (root / p).read_bytes()
    workers, cores = decode_workers(), len(os.sched_getaffinity(0))
    times = {workers: float("inf"), 1: float("inf")}
    for _ in range(repeats):
        for w in times:
            start = time.perf_counter()
            bad = find_unreadable_images(root, paths, w)
            times[w] = min(times[w], time.perf_counter() - start)
            assert bad == [], bad[:3]  # the official images all decode
    ratio = times[1] / times[workers]
    return {"n": len(paths), "workers": workers, "cores": cores, "parallel_s": times[workers], "serial_s": times[1],
            "parallel_per_s": len(paths) / times[workers], "serial_per_s": len(paths) / times[1], "ratio": ratio,
            "pass": ratio >= TARGET_RATIO if cores >= 2 else None}


def report(r: dict[str, Any] | None) -> str:
    if r is None:
        return f"skipped: no scene images under {SCENE}/original (set SCENE=path)"
    verdict = "n/a on one core" if r["pass"] is None else ("PASS" if r["pass"] else "FAIL")
    return "\n".join([
        f"case: scene, {r['n']:,} JPEGs, {r['cores']} usable cores",
        f"serial decode, 1 thread (baseline): {r['serial_per_s']:8.0f} images/s ({r['serial_s']:.2f} s)",
        f"find_unreadable_images, {r['workers']} threads: {r['parallel_per_s']:8.0f} images/s "
        f"({r['parallel_s']:.2f} s)",
        f"parallel / serial = {r['ratio']:.2f}x ({verdict}, target >= {TARGET_RATIO:g}x with >= 2 cores)",
    ])


if __name__ == "__main__":
    print(report(main()))
