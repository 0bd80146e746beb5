"""Loads the fuzz profile (``fuzzing``) before the tests are collected, and counts the cases each
test ran: printed at the end of the run, per parser (``fuzzing.PARSERS``) and per test. Under
``RETDM_FUZZ=full`` (``make fuzz``) the counts also go to ``results/published/fuzz.json``, the
README's fuzzing block (``retdm publish --readme``)."""

import sys
import time
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "data"))  # official_layouts: the fixture writers

import fuzzing  # noqa: E402,F401  (registers and loads the Hypothesis profile)

from retdm.revision import code_revision  # noqa: E402

CASES: Counter = Counter()
FAILED: set[str] = set()
STARTED = time.perf_counter()
ROOT = Path(__file__).resolve().parents[2]
COMMIT = code_revision()  # read when the run starts: the code it fuzzes


def _counted(inner, nodeid):
    def run(*args, **kwargs):
        CASES[nodeid] += 1
        return inner(*args, **kwargs)

    return run


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    hyp = getattr(getattr(item, "obj", None), "hypothesis", None)
    if hyp is not None and not getattr(hyp.inner_test, "_fuzz_counted", False):
        hyp.inner_test = _counted(hyp.inner_test, item.nodeid)
        hyp.inner_test._fuzz_counted = True


def _parser(nodeid: str) -> str:
    """The ``fuzzing.PARSERS`` entry the test ``nodeid`` fuzzes."""
    return fuzzing.parser_of(nodeid.split("::")[-1].split("[")[0])


def per_parser() -> dict[str, tuple[int, bool]]:
    """``{parser: (cases, every test of it passed)}`` for the parsers this run fuzzed (``fuzzing.PARSERS``)."""
    out: dict[str, tuple[int, bool]] = {}
    for nodeid, n in CASES.items():
        name = _parser(nodeid)
        cases, ok = out.get(name, (0, True))
        out[name] = (cases + n, ok and nodeid not in FAILED)
    return out


def pytest_terminal_summary(terminalreporter):
    if not CASES:
        return
    terminalreporter.section(f"fuzz cases per parser ({'RETDM_FUZZ=full' if fuzzing.FULL else 'CI budget'})")
    for name, (n, ok) in per_parser().items():
        terminalreporter.write_line(f"{n:>8}  {name}{'' if ok else '  (INVARIANT BROKEN)'}")
        for nodeid, m in sorted(CASES.items()):
            if _parser(nodeid) == name:
                terminalreporter.write_line(f"{m:>16}  {nodeid.split('::', 1)[1]}")


def pytest_runtest_logreport(report):
    if report.failed:
        FAILED.add(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """``make fuzz``: the cases per parser, and whether each held the invariant, as a published record."""
    if not (fuzzing.FULL and CASES):
        return
    from retdm.published import machine_info, minutes, write_record

    seconds = time.perf_counter() - STARTED
    target = fuzzing.TARGET_EXAMPLES
    checks = [{"what": name, "result": f"{n:,} cases, invariant {'held' if ok else 'BROKEN'}",
               "target": f"≥ {target:,} cases, invariant held", "pass": n >= target and ok}
              for name, (n, ok) in per_parser().items()]
    checks.append({"what": "all parsers", "result": f"{sum(CASES.values()):,} cases in {minutes(seconds)}"})
    write_record({"name": "fuzz", "command": f"make fuzz (RETDM_FUZZ_EXAMPLES={fuzzing.FULL_EXAMPLES})",
                  "commit": COMMIT, "machine": machine_info(), "wall_seconds": round(seconds),
                  "cases": dict(sorted(CASES.items())), "failed": sorted(FAILED), "checks": checks}, ROOT)
