"""tests/mutation_score.py: the score of a mutmut run, and the rule that every survivor is explained."""

import json
import stat

import pytest

from tests import mutation_score

RESULTS = """\
    retdm.metrics.x_f1__mutmut_1: killed
    retdm.metrics.x_f1__mutmut_2: killed
    retdm.metrics.x_f1__mutmut_3: timeout
    retdm.losses.center.xǁCenterLossCentersǁ__init____mutmut_4: survived
    retdm.neighbours.x_pool__mutmut_5: no tests
"""


@pytest.fixture
def fake_mutmut(tmp_path):
    """A ``mutmut`` that prints ``RESULTS`` for ``results --all true``."""
    (tmp_path / "results.txt").write_text(RESULTS)
    exe = tmp_path / "mutmut"
    exe.write_text(f"#!/bin/sh\n[ \"$1 $2 $3\" = 'results --all true' ] && cat {tmp_path / 'results.txt'}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def run(tmp_path, monkeypatch, fake_mutmut, survivors: str, *extra: str) -> int:
    (tmp_path / "survivors.md").write_text(survivors)
    monkeypatch.setattr(mutation_score, "SURVIVORS_FILE", tmp_path / "survivors.md")
    monkeypatch.setattr(mutation_score, "ROOT", tmp_path)
    return mutation_score.main(["--mutmut", str(fake_mutmut), *extra])


def test_killed_and_timed_out_mutants_count_as_caught_and_the_rest_must_be_listed(tmp_path, monkeypatch, fake_mutmut,
                                                                                  capsys):
    listed = ("- `retdm.losses.center.xǁCenterLossCentersǁ__init____mutmut_4`: equivalent\n"
              "- `retdm.neighbours.x_pool__mutmut_5`: accepted\n")
    assert run(tmp_path, monkeypatch, fake_mutmut, listed) == 1  # 3 of 5 = 60 % < 85 %
    out = capsys.readouterr().out
    assert "3 of 5 mutants killed (60.0 %)" in out and "not in" not in out


def test_an_unexplained_or_stale_survivor_fails_and_is_named(tmp_path, monkeypatch, fake_mutmut, capsys):
    run(tmp_path, monkeypatch, fake_mutmut, "- `retdm.neighbours.x_pool__mutmut_5`: x\n- `retdm.metrics.x_f1__mutmut_1`: y\n")
    out = capsys.readouterr().out
    assert "not in survivors.md: retdm.losses.center.xǁCenterLossCentersǁ__init____mutmut_4 (survived)" in out
    assert "in survivors.md but not a survivor: retdm.metrics.x_f1__mutmut_1 (killed)" in out


def test_the_record_names_the_modules_the_score_and_whether_it_passes(tmp_path, monkeypatch, fake_mutmut):
    monkeypatch.setattr(mutation_score, "TARGET", 0.5)
    listed = "`retdm.losses.center.xǁCenterLossCentersǁ__init____mutmut_4` `retdm.neighbours.x_pool__mutmut_5`"
    assert run(tmp_path, monkeypatch, fake_mutmut, listed, "--record", "--commit", "abc", "--seconds", "90") == 0
    record = json.loads((tmp_path / "results" / "published" / "mutation.json").read_text())
    score, explained, wall = record["checks"]
    assert "`retdm.losses.center`, `retdm.metrics`, `retdm.neighbours`" in score["what"]
    assert (score["result"], score["pass"], explained["result"], explained["pass"]) == ("3 of 5 (60.0 %)", True,
                                                                                          "2 of 2", True)
    assert record["counts"] == {"killed": 2, "timeout": 1, "survived": 1, "no tests": 1} and record["commit"] == "abc"
    assert wall["result"] == "1.5 min (90 s)"


def test_an_unfinished_run_is_refused(tmp_path, monkeypatch, fake_mutmut):
    (tmp_path / "results.txt").write_text(RESULTS + "    retdm.metrics.x_f1__mutmut_9: not checked\n")
    with pytest.raises(SystemExit, match="1 of 6 mutants were not checked"):
        run(tmp_path, monkeypatch, fake_mutmut, "")
