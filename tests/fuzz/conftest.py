"""Loads the fuzz profile (``fuzzing``) before the tests are collected, and counts the cases each
test ran: printed at the end of the run, per parser (test file) and per test."""

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "data"))  # official_layouts: the fixture writers

import fuzzing  # noqa: E402,F401  (registers and loads the Hypothesis profile)

CASES: Counter = Counter()


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


def pytest_terminal_summary(terminalreporter):
    if not CASES:
        return
    per_file = Counter()
    for nodeid, n in CASES.items():
        per_file[nodeid.split("::")[0]] += n
    terminalreporter.section(f"fuzz cases ({'RETDM_FUZZ=full' if fuzzing.FULL else 'CI budget'})")
    for path, n in sorted(per_file.items()):
        terminalreporter.write_line(f"{n:>8}  {Path(path).stem}")
        for nodeid, m in sorted(CASES.items()):
            if nodeid.startswith(path + "::"):
                terminalreporter.write_line(f"{m:>16}  {nodeid.split('::', 1)[1]}")
