"""Crash consistency of the DVC pipeline: ``dvc repro`` killed with SIGKILL at random points, then
run again to the end, must leave what an uninterrupted run leaves.

A trial clones the tiny project (:func:`tests.project_copy.tiny_project`), starts ``dvc repro``
in a session of its own and, after a delay drawn uniformly over the wall time of a reference run
(``random.Random(seed)``; a point past the end of its run draws again), kills the whole
process group with SIGKILL: DVC and the stage command it runs, as a crash of the machine or
an OOM kill of the job would (a SIGKILL of ``dvc repro`` alone leaves its stage running). Then
``dvc repro`` runs to the end, as is, and the clone is compared with the reference run
(:func:`differences`): ``dvc.lock`` equal as parsed YAML (its md5 of every stage output, ``runs/``
and ``reports/`` included), every file under ``results/`` equal byte for byte (a Parquet file:
equal tables and schema metadata), no other path in the workspace that the reference lacks (the
temporaries of a writer killed mid-write), ``dvc status`` clean.

Where each kill landed comes from the killed run's output (its last ``Running stage``) and
whether DVC had a child process at that moment: ``command`` (the stage's command was running) or
``dvc`` (DVC's own work around it: hashing outputs, filling its cache, writing ``dvc.lock``,
checking the next stage). The killed run's entries stay in ``.dvc/tmp/rwlock``; the rerun goes
past them, as DVC drops the entries of dead pids itself.

Two windows are DVC's, not ours: it rewrites ``dvc.lock`` and ``.dvc/tmp/rwlock`` in place
(truncate, then write), so a kill inside either rewrite leaves the file empty or cut short, and a
plain ``dvc repro`` then stops ("'./dvc.lock' validation failed", "Unable to read RWLock-file").
Every run here therefore starts as ``make run`` does, with ``python -m pipelines.lockfile``,
which sets such a file aside: the run-cache then
restores every finished stage without running it, ``compare`` and ``report`` (outputs outside the
cache) run again, and the result must still be the reference's. Should a rerun fail all the same,
it is recorded as such, then ``rm dvc.lock && dvc repro`` is tried and checked too.
``--at-lock-write`` aims each kill into that window: after the drawn delay, at DVC's next
"Updating lock file".

Before the trials a second uninterrupted run (the control) must equal the reference, or the
comparison would mean nothing: training is byte-reproducible on CPU, and ``timing.csv``, the one
output that is not, is in ``.dvcignore``.

Run: ``python -m tests.crash_consistency [--kills 20] [--seed 0] [--json PATH] [--at-lock-write]``
or ``make crash`` (20 kills, each trial a fresh run from scratch: about 80 minutes on 2 cores).
``--per-run K`` kills each run K times, each time during the rerun of the previous kill, before
the run to the end. The test suite runs that cheap variant once: 3 kills in one run
(``tests/pipelines/test_pipeline.py``).
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from retdm.published import write_record  # noqa: E402
from retdm.revision import code_revision  # noqa: E402
from tests.project_copy import clone, isolated_environ, run_env, sh, tiny_project  # noqa: E402

RUNNING = re.compile(r"Running stage '([^']+)'")
LOCK_WRITE = b"Updating lock file"  # DVC logs it, then rewrites dvc.lock in place (not atomically)


@dataclass
class Kill:
    """One kill: ``after_s`` seconds into a ``dvc repro``, during ``stage`` (None: before the
    first), in ``phase`` ``command``, ``dvc``, ``lock`` (:func:`crash`'s ``at_lock_write``) or
    ``finished`` (the run ended before the kill)."""

    after_s: float
    stage: str | None
    phase: str
    stale_rwlock: bool = False  # .dvc/tmp/rwlock still named the killed run's pids

    @property
    def where(self) -> str:
        """The kind of stage (``pretrain``, ``evaluate``, …) and the phase, for a histogram."""
        if self.phase == "finished":
            return "(run finished first)"
        return f"{self.stage.split('@')[0] if self.stage else '(before the first stage)'} ({self.phase})"


def start_repro(repo: Path, log: Path) -> subprocess.Popen:
    """``dvc repro`` in ``repo`` as ``make run`` runs it (after ``pipelines.lockfile``, which sets aside a
    ``dvc.lock`` or ``.dvc/tmp/rwlock`` that a kill cut short), as the leader of a new process group, its output unbuffered into ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(["sh", "-c", "python -m pipelines.lockfile && exec dvc repro"], cwd=repo,
                                env={**run_env(), "PYTHONUNBUFFERED": "1"}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def reproduce(repo: Path, log: Path) -> float:
    """Run ``dvc repro`` in ``repo`` to the end, its output into ``log``. Returns its wall time in
    seconds, from its start to its last output: the run's own, whatever this process did
    meanwhile (it may be paused while the run goes on). A failure raises ``RuntimeError`` with
    the tail of its output."""
    proc = start_repro(repo, log)
    started = psutil.Process(proc.pid).create_time()  # not reaped before wait(): there even if it ended
    if proc.wait():
        raise RuntimeError(f"dvc repro in {repo} failed (exit {proc.returncode}); its output ends:\n"
                           f"{log.read_text()[-3000:]}")
    return log.stat().st_mtime - started


def kill_group(pgid: int, timeout: float = 30.0) -> None:
    """SIGKILL every process of group ``pgid`` and wait until none is left but zombies."""
    os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc.pid)
            except (ProcessLookupError, psutil.Error):
                continue
        if not alive:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {alive} of group {pgid} outlived SIGKILL for {timeout:.0f} s")
        time.sleep(0.1)


def stale_rwlock(repo: Path) -> bool:
    """Whether ``.dvc/tmp/rwlock`` still holds a read or write entry (of a run that is gone)."""
    path = repo / ".dvc" / "tmp" / "rwlock"
    try:
        lock = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return path.exists()
    return bool(lock.get("read") or lock.get("write"))


def crash(repo: Path, delays: list[float], logs: Path, at_lock_write: bool = False) -> list[Kill]:
    """For each delay: start ``dvc repro`` in ``repo`` and kill its process group with SIGKILL that
    many seconds later (unless it ended first); with ``at_lock_write``, at the moment after that
    when DVC logs its next rewrite of ``dvc.lock`` (phase ``lock``: it truncates the file, then
    writes it anew). Outputs go to ``logs/killN.log``."""
    logs.mkdir(parents=True, exist_ok=True)
    kills = []
    for i, delay in enumerate(delays):
        log = logs / f"kill{i}.log"
        proc = start_repro(repo, log)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            pass
        else:
            kills.append(Kill(delay, None, "finished"))
            continue
        if at_lock_write:
            seen = log.read_bytes().count(LOCK_WRITE)
            while proc.poll() is None and log.read_bytes().count(LOCK_WRITE) == seen:
                time.sleep(0.001)
            if proc.poll() is not None:
                kills.append(Kill(delay, None, "finished"))
                continue
            phase = "lock"
        else:
            try:
                phase = "command" if psutil.Process(proc.pid).children() else "dvc"
            except psutil.NoSuchProcess:
                phase = "dvc"
        kill_group(proc.pid)
        proc.wait()
        stages = RUNNING.findall(log.read_text(errors="replace"))
        kills.append(Kill(delay, stages[-1] if stages else None, phase, stale_rwlock(repo)))
    return kills


def _lock_stages(repo: Path) -> dict:
    return (yaml.safe_load((repo / "dvc.lock").read_text()) or {}).get("stages", {})


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _workspace(root: Path) -> set[str]:
    """The paths of ``root``'s files and folders, less git's, DVC's own, ``results/`` and what
    ``.dvcignore`` names (``timing.csv``: a stage restored from DVC's cache has none)."""
    ignored = [line.strip().rstrip("/") for line in (root / ".dvcignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    found = set()
    for folder, dirs, files in os.walk(root):
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d not in (".git", ".dvc", "results")]
        dirs[:] = [d for d in dirs if not any(fnmatch.fnmatch(d, pattern) for pattern in ignored)]
        rel = Path(folder).relative_to(root)
        found.update((rel / name).as_posix() for name in [*dirs, *files]
                     if not any(fnmatch.fnmatch(name, pattern) for pattern in ignored))
    return found


def _same_parquet(a: Path, b: Path) -> bool:
    ta, tb = pq.read_table(a), pq.read_table(b)
    return ta.equals(tb) and ta.schema.metadata == tb.schema.metadata


def differences(reference: Path, repo: Path) -> list[str]:
    """How ``repo``'s finished run differs from ``reference``'s (empty: none): ``dvc.lock``'s
    stages (parsed), the files under ``results/`` (bytes; Parquet: tables and metadata), the
    paths elsewhere in the workspace (what a killed writer left, e.g. a staging folder in
    ``reports/``; their bytes are in ``dvc.lock``) and ``dvc status``."""
    found = []
    ref_lock, lock = _lock_stages(reference), _lock_stages(repo)
    for name in sorted(set(ref_lock) | set(lock)):
        if name not in lock or name not in ref_lock:
            found.append(f"dvc.lock: stage {name} {'missing' if name not in lock else 'not in the reference'}")
        elif lock[name] != ref_lock[name]:
            keys = sorted(k for k in set(lock[name]) | set(ref_lock[name]) if lock[name].get(k) != ref_lock[name].get(k))
            found.append(f"dvc.lock: stage {name}: {', '.join(keys)} differ")
    ref_files, files = _files(reference / "results"), _files(repo / "results")
    for rel in sorted(set(ref_files) | set(files)):
        if rel not in files or rel not in ref_files:
            found.append(f"results/{rel}: {'missing' if rel not in files else 'not in the reference'}")
        elif ref_files[rel].read_bytes() != files[rel].read_bytes() and not (
                rel.endswith(".parquet") and _same_parquet(ref_files[rel], files[rel])):
            found.append(f"results/{rel}: differs")
    ref_paths, paths = _workspace(reference), _workspace(repo)
    found += [f"{rel}: left behind (not in the reference)" for rel in sorted(paths - ref_paths)]
    found += [f"{rel}: missing" for rel in sorted(ref_paths - paths)]
    status = json.loads(sh(repo, "dvc", "status", "--json").stdout or "{}")
    if status:
        found.append(f"dvc status: {sorted(status)} not up to date")
    return found


def kill_points(rng: random.Random, seconds: float, count: int) -> list[float]:
    """``count`` points uniform over ``[0, seconds]`` as the delays of successive kills: each
    measured from the start of the rerun that follows the previous kill."""
    points = sorted(rng.uniform(0, seconds) for _ in range(count))
    return [b - a for a, b in zip([0.0, *points], points)]


def main(argv: list[str] | None = None) -> int:
    """The experiment (see the module docstring); exit code 0 when every trial matched the reference."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20,
                        help="kills in all (default 20); a point after the end of its run does not count")
    parser.add_argument("--per-run", type=int, default=1, help="kills of each run before its run to the end (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill points (default 0)")
    parser.add_argument("--json", type=Path, help="write the trials and the summary there")
    parser.add_argument("--publish", action="store_true",
                        help="record the result in results/published/crash.json (README's reliability block)")
    parser.add_argument("--keep", action="store_true", help="keep every trial's clone (failed ones are always kept)")
    parser.add_argument("--at-lock-write", action="store_true",
                        help="kill, after each drawn delay, when DVC next rewrites dvc.lock (in place, not atomically)")
    args = parser.parse_args(argv)

    commit = code_revision()  # read before the trials: the code they run
    started = time.perf_counter()
    state = Path(tempfile.mkdtemp(prefix="retdm-crash-"))
    os.environ.update(isolated_environ(state))
    os.environ.setdefault("TQDM_DISABLE", "1")
    origin = tiny_project(state / "origin")
    reference = clone(origin, state / "reference")
    seconds = reproduce(reference, state / "reference.log")
    control = clone(origin, state / "control")
    control_seconds = reproduce(control, state / "control.log")
    control_diffs = differences(reference, control)
    print(f"reference run {seconds:.0f} s, control run {control_seconds:.0f} s: "
          f"{'identical' if not control_diffs else 'DIFFERENT'}", flush=True)
    if control_diffs:
        print("\n".join(f"  {d}" for d in control_diffs) + f"\nkept in {state}")
        return 2
    shutil.rmtree(control)

    rng = random.Random(args.seed)
    trials = []
    landed = 0  # a point past the end of a faster run than the reference kills nothing: draw again
    for i in range(3 * math.ceil(args.kills / args.per_run)):  # at most: each draw may fall past the end
        if landed >= args.kills:
            break
        repo = clone(origin, state / f"trial{i}")
        t0 = time.perf_counter()
        logs = state / f"trial{i}.logs"
        kills = crash(repo, kill_points(rng, seconds, args.per_run), logs, args.at_lock_write)
        if all(k.phase == "finished" for k in kills):
            shutil.rmtree(repo)
            continue
        landed += sum(k.phase != "finished" for k in kills)
        recovery = None  # after a failed rerun: what `rm dvc.lock && dvc repro` leaves ([]: the reference's)
        try:
            rerun = reproduce(repo, logs / "rerun.log")
            diffs = differences(reference, repo)
        except RuntimeError:
            rerun, diffs = math.nan, [f"the rerun failed: {_last_error(logs / 'rerun.log')}"]
            (repo / "dvc.lock").unlink(missing_ok=True)  # the run-cache restores every finished stage
            try:
                reproduce(repo, logs / "recovery.log")
                recovery = differences(reference, repo)
            except RuntimeError:
                recovery = [f"failed too: {_last_error(logs / 'recovery.log')}"]
        trials.append({"trial": i, "kills": [asdict(k) | {"where": k.where} for k in kills], "rerun_s": rerun,
                       "seconds": time.perf_counter() - t0, "differences": diffs, "recovery": recovery})
        where = "; ".join(f"{k.after_s:.1f} s: {k.stage or '-'} ({k.phase})" for k in kills)
        print(f"trial {i}: kill {where}; rerun {rerun:.0f} s: {'PASS' if not diffs else 'FAIL'}", flush=True)
        for d in diffs:
            print(f"  {d}", flush=True)
        if recovery is not None:
            print(f"  rm dvc.lock && dvc repro: {'; '.join(recovery) or 'then as the reference'}", flush=True)
        if not diffs and not args.keep:
            shutil.rmtree(repo)

    passed = sum(not t["differences"] for t in trials)
    recovered = sum(t["recovery"] == [] for t in trials)
    hist = collections.Counter(k["where"] for t in trials for k in t["kills"] if k["phase"] != "finished")
    total = time.perf_counter() - started
    summary = {"kills": landed, "trials": len(trials), "passed": passed, "recovered_by_rm_dvc_lock": recovered,
               "reference_s": seconds, "control_s": control_seconds, "total_s": total, "seed": args.seed,
               "at_lock_write": args.at_lock_write,
               "stale_rwlock": sum(k["stale_rwlock"] for t in trials for k in t["kills"]),
               "where": dict(hist.most_common())}
    print(f"\n{passed} of {len(trials)} killed runs ({landed} kills) left what the uninterrupted run left when "
          f"run again; {recovered} more after `rm dvc.lock`; {total / 60:.0f} min in all (reference run {seconds:.0f} s)")
    print(f"the killed run's entries stayed in .dvc/tmp/rwlock after {summary['stale_rwlock']} kills "
          "(DVC drops those of dead pids itself)")
    print("where the kills landed:")
    for where, n in hist.most_common():
        print(f"  {where:<34} {n:>3} {'#' * n}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "trials": trials}, indent=2) + "\n")
    if args.publish:
        write_record(published_record(summary, commit, f"make crash (--kills {args.kills} --seed {args.seed})"), ROOT)
    if passed == len(trials):
        shutil.rmtree(state, ignore_errors=True)
    else:
        print(f"failed trials kept in {state}")
    return 0 if passed == len(trials) else 1


def published_record(summary: dict, commit: str, command: str) -> dict:
    """The README's crash-consistency figures (``results/published/crash.json``) from a run's ``summary``."""
    from retdm.published import machine_info, minutes

    trials, passed = summary["trials"], summary["passed"]
    return {"name": "crash", "command": command, "commit": commit, "machine": machine_info(),
            "wall_seconds": round(summary["total_s"]), "summary": summary,
            "checks": [{"what": "`dvc repro` of the tiny pipeline killed (SIGKILL, whole process group) at random "
                                "points, then run again: `dvc.lock`, `results/`, `dvc status` as an uninterrupted run's",
                        "result": f"{passed} of {trials} runs ({summary['kills']} kills)",
                        "target": "20 of 20", "pass": trials >= 20 and passed == trials},
                       {"what": "failed reruns that `rm dvc.lock && dvc repro` then brought to the uninterrupted "
                                "run's result (a kill inside DVC's in-place rewrite of `dvc.lock`)",
                        "result": f"{summary['recovered_by_rm_dvc_lock']} of {trials - passed}"},
                       {"what": "where the kills landed (stage: its command, or DVC's own work around it)",
                        "result": ", ".join(f"{w} {n}" for w, n in summary["where"].items())},
                       {"what": "the whole experiment", "result": f"{minutes(summary['total_s'])} (reference run "
                                                                   f"{summary['reference_s']:.0f} s)"}]}


def _last_error(log: Path) -> str:
    """The last ``ERROR`` line of a DVC output (else its last line)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line]
    return (errors or lines or ["(no output)"])[-1]


if __name__ == "__main__":
    sys.exit(main())
