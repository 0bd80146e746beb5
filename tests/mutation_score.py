"""The score of a finished ``mutmut run`` (``make mutation``), checked against the committed list of
accepted survivors, and recorded in ``results/published/mutation.json`` (README's mutation block).

A mutant is killed when a test failed on it (or it timed out or crashed the test process: the
suite noticed). Every other mutant (survived, or no test reaches it) must be named in
``tests/mutation_survivors.md`` with why it is equivalent or accepted; a survivor that is not
listed fails this script, as does a listed name that is no longer a survivor (the list would drift).

Run in the folder ``mutmut run`` ran in: ``python tests/mutation_score.py [--record]``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from retdm.published import machine_info, minutes, write_record  # noqa: E402
from retdm.revision import code_revision  # noqa: E402

SURVIVORS_FILE = ROOT / "tests" / "mutation_survivors.md"
TARGET = 0.85  # issue: ≥ 85 % of mutants killed
CAUGHT = ("killed", "timeout", "segfault")  # a test failed, hung or crashed on the mutant: the suite noticed


def mutant_statuses(mutmut: str) -> dict[str, str]:
    """``{mutant name: status}`` of every mutant, from ``mutmut results --all true``."""
    out = subprocess.run([mutmut, "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"^\s*(\S+): (.+?)\s*$", out, re.M))


def listed_survivors(text: str) -> set[str]:
    """The mutant names ``tests/mutation_survivors.md`` lists (each in backticks, ``__mutmut_`` in it)."""
    return set(re.findall(r"`([\w.]+__mutmut_\d+)`", text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutmut", default=str(Path(sys.executable).parent / "mutmut"), help="the mutmut command")
    parser.add_argument("--seconds", type=float, help="the run's wall time, recorded")
    parser.add_argument("--commit", help="the commit that ran (default: HEAD)")
    parser.add_argument("--record", action="store_true", help="write results/published/mutation.json")
    parser.add_argument("--command", default="make mutation", help="how the run was made, recorded")
    args = parser.parse_args(argv)

    statuses = mutant_statuses(args.mutmut)
    if not statuses:
        sys.exit("no mutants found: run `mutmut run` (make mutation) in this folder first")
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    unchecked = counts.get("not checked", 0)
    if unchecked:
        sys.exit(f"{unchecked} of {len(statuses)} mutants were not checked: the run did not finish; run it again")
    caught = sum(counts.get(s, 0) for s in CAUGHT)
    score = caught / len(statuses)
    survivors = {name for name, status in statuses.items() if status not in CAUGHT}
    listed = listed_survivors(SURVIVORS_FILE.read_text()) if SURVIVORS_FILE.is_file() else set()
    unexplained, stale = sorted(survivors - listed), sorted(listed - survivors)
    print(f"mutation score: {caught} of {len(statuses)} mutants killed ({100 * score:.1f} %); "
          + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    for name in unexplained:
        print(f"not in {SURVIVORS_FILE.name}: {name} ({statuses[name]}); `mutmut show {name}`")
    for name in stale:
        print(f"in {SURVIVORS_FILE.name} but not a survivor: {name} ({statuses.get(name, 'no such mutant')})")
    if args.record:
        commit = args.commit or code_revision()
        modules = sorted({re.match(r"(.*?)\.x[_ǁ]", name)[1] for name in statuses})
        write_record({
            "name": "mutation", "command": args.command, "commit": commit, "machine": machine_info(),
            "wall_seconds": None if args.seconds is None else round(args.seconds), "counts": counts,
            "checks": [{"what": f"mutants of {', '.join(f'`{m}`' for m in modules)} killed by the test suite",
                        "result": f"{caught:,} of {len(statuses):,} ({100 * score:.1f} %)",
                        "target": f"≥ {100 * TARGET:.0f} %", "pass": score >= TARGET},
                       {"what": f"survivors explained in `tests/{SURVIVORS_FILE.name}`",
                        "result": f"{len(survivors) - len(unexplained)} of {len(survivors)}",
                        "target": "all", "pass": not unexplained}]
            + ([{"what": "mutmut run", "result": minutes(args.seconds)}] if args.seconds else []),
        }, ROOT)
    return 0 if score >= TARGET and not unexplained and not stale else 1


if __name__ == "__main__":
    sys.exit(main())
