"""``make scene`` timed: the paper's Table II on the real scene images, every method, 3 seeds.

Clones the committed HEAD into ``--dir`` (a new folder: no virtual environment, nothing in its DVC
cache), runs ``make setup`` and then ``make scene`` (every method the Makefile lists × seeds 0, 1, 2 with the
``lite`` profile, as a DVC experiment), whose own wall time ``make scene`` writes to
``results/scene.seconds``. Target: ≤ 3 hours on 2 CPU cores. Writes
``results/published/bench_scene.json`` (the README's "make scene" timing row: ``retdm publish
--readme``). The clone is kept, so its experiment can be published (``make publish-scene`` there).

``--recorded DIR`` records a ``make scene`` that already ran in the clone ``DIR`` (read from its
``results/scene.seconds``, its experiment's ``dvc.lock`` and its commit) instead of running one:
for a run started by hand with ``make scene`` in a clone whose DVC cache held no scene run.

Run: ``python bench/bench_scene.py --dir /tmp/retdm-scene`` (about 1½-2 hours on 2 cores).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import yaml

from retdm.published import experiment_ref, machine_info, minutes, write_record

ROOT = Path(__file__).resolve().parents[1]
SCENE = (ROOT / ".." / "shared" / "datasets" / "miml_scene").resolve()
TARGET_S = 3 * 3600.0


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def run(fresh: Path, scene: Path) -> None:
    """Clone HEAD into ``fresh``, set it up and run ``make scene`` there."""
    if fresh.exists():
        sys.exit(f"{fresh} exists; give a new folder (nothing is deleted), or --recorded for a finished run")
    if not (scene / "data.csv").is_file():
        sys.exit(f"{scene}: no scene dataset (data.csv); give its folder with --scene")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(fresh)], check=True)
    subprocess.run(["make", "setup"], cwd=fresh, check=True)
    start = time.perf_counter()
    subprocess.run(["make", "scene", f"SCENE={scene}"], cwd=fresh, check=True)
    print(f"make scene: {time.perf_counter() - start:.0f} s (make's own figure: results/scene.seconds)")


def record(clone: Path, command: str) -> dict:
    """The timing row of the ``make scene`` that ran in ``clone`` (by ``command``)."""
    seconds_file = clone / "results" / "scene.seconds"
    if not seconds_file.is_file():
        sys.exit(f"{seconds_file}: not found; `make scene` writes it when it finishes")
    seconds = float(seconds_file.read_text())
    lock = yaml.safe_load(git(clone, "show", f"{experiment_ref(clone, 'scene')}:dvc.lock"))
    params = yaml.safe_load(git(clone, "show", f"{experiment_ref(clone, 'scene')}:params.yaml"))
    stages, methods, seeds = len(lock["stages"]), len(params["methods"]), len(params["seeds"])
    commit = git(clone, "rev-parse", f"{experiment_ref(clone, 'scene')}^").strip()
    return {"name": "bench_scene", "command": command, "commit": commit,
            "machine": machine_info(), "stages": stages, "seconds": round(seconds, 1),
            "checks": [{"what": f"make scene (scene, {methods} methods × {seeds} seeds, {stages} stages; no scene run in the "
                                f"DVC cache)", "result": minutes(seconds),
                        "target": f"≤ {TARGET_S / 3600:.0f} h", "pass": seconds <= TARGET_S}]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--dir", type=Path, help="A new folder for the fresh clone that runs make scene.")
    where.add_argument("--recorded", type=Path, help="A clone where make scene already ran: record it.")
    parser.add_argument("--scene", type=Path, default=SCENE, help="The scene dataset's folder (official layout).")
    args = parser.parse_args()
    if args.recorded is None:
        run(args.dir, args.scene.resolve())
        result = record(args.dir, "python bench/bench_scene.py")
    else:
        result = record(args.recorded, "make scene, recorded by python bench/bench_scene.py --recorded")
    write_record(result, ROOT)
    passed = result["checks"][0]["pass"]
    print(f"make scene at {result['commit'][:10]}: {result['seconds']:.0f} s ({result['stages']} stages), "
          f"{result['seconds'] / TARGET_S:.2f}x the 3-hour target: {'PASS' if passed else 'FAIL'}")
