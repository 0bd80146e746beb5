"""The README's first command, timed as a newcomer runs it: ``make run`` in a fresh clone.

Clones the committed HEAD into ``--dir`` (a fresh folder: no virtual environment, no outputs),
then times ``make setup`` (the virtual environment from the pinned requirements) and ``make run``
(``dvc repro`` of the default params: every method, one seed, the sweep and the report).
Target: both together ≤ 10 minutes on 2 cores. Writes ``results/published/make_run.json`` (the
README's "make run" timing block: ``retdm publish --readme``). The clone is kept, so its run can
be published too (``make publish-run`` there writes ``results/published/default.json``).

Run: ``python bench/bench_make_run.py --dir /tmp/retdm-fresh`` (about 10-13 minutes); ``run_all.py
--make-run`` adds its row to the results table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from retdm.published import machine_info, minutes, write_record

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 600.0


def timed(cmd: list[str], cwd: Path) -> float:
    """Run ``cmd`` in ``cwd`` (its output to the terminal); its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True)
    return time.perf_counter() - start


def main(fresh: Path) -> dict:
    """Clone, set up and run in ``fresh``; the figures as a dict."""
    if fresh.exists():
        sys.exit(f"{fresh} exists; give a new folder (nothing is deleted)")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(fresh)], check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=fresh, capture_output=True, text=True,
                            check=True).stdout.strip()
    setup = timed(["make", "setup"], fresh)
    run = timed(["make", "run"], fresh)
    stages = len(subprocess.run([str(fresh / ".venv/bin/dvc"), "stage", "list", "--name-only"], cwd=fresh,
                                capture_output=True, text=True, check=True).stdout.split())
    return {"name": "make_run", "command": "python bench/bench_make_run.py", "commit": commit,
            "machine": machine_info(), "stages": stages,
            "seconds": {"setup": round(setup, 1), "repro": round(run, 1)},
            "checks": [{"what": "make setup (fresh virtual environment)", "result": minutes(setup)},
                       {"what": f"dvc repro (default params, {stages} stages)", "result": minutes(run)},
                       {"what": "make run from a fresh clone", "result": minutes(setup + run),
                        "target": f"≤ {TARGET_S / 60:.0f} min", "pass": setup + run <= TARGET_S}]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, required=True, help="A new folder for the fresh clone.")
    result = main(parser.parse_args().dir)
    write_record(result, ROOT)
    setup, run = result["seconds"]["setup"], result["seconds"]["repro"]
    total = setup + run
    print(f"make run from a fresh clone of {result['commit'][:10]}: setup {setup:.0f} s + dvc repro {run:.0f} s "
          f"({result['stages']} stages) = {total:.0f} s, {total / TARGET_S:.2f}x the 10-minute target: "
          f"{'PASS' if total <= TARGET_S else 'FAIL'}")
