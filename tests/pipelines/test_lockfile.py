"""pipelines/lockfile.py: a dvc.lock that a killed run cut short is set aside before `dvc repro`, a sound one is left."""

import subprocess
import sys

import pytest

from pipelines.lockfile import lock_problem, set_aside_damaged_lock
from tests.project_copy import ROOT

SOUND = subprocess.run(["git", "show", "HEAD:dvc.lock"], cwd=ROOT, capture_output=True, text=True,
                       check=True).stdout  # the committed default run's


def test_a_sound_lock_and_no_lock_are_left_alone(tmp_path):
    assert set_aside_damaged_lock(tmp_path) is None
    (tmp_path / "dvc.lock").write_text(SOUND)
    assert lock_problem(tmp_path / "dvc.lock") is None
    assert set_aside_damaged_lock(tmp_path) is None and (tmp_path / "dvc.lock").read_text() == SOUND


@pytest.mark.parametrize("cut", [0, SOUND.index("outs:") + 12, SOUND.index("    cmd:") + 8])  # empty, cut mid-entry
def test_a_lock_cut_short_is_moved_aside_and_nothing_is_deleted(tmp_path, capsys, cut):
    (tmp_path / "dvc.lock").write_text(SOUND[:cut])
    (tmp_path / "dvc.lock.damaged").write_text("an earlier one")
    moved = set_aside_damaged_lock(tmp_path)
    assert moved == tmp_path / "dvc.lock.damaged-2" and moved.read_text() == SOUND[:cut]
    assert not (tmp_path / "dvc.lock").exists() and (tmp_path / "dvc.lock.damaged").read_text() == "an earlier one"
    err = capsys.readouterr().err
    assert "dvc.lock: DVC cannot read it (" in err and "moved to dvc.lock.damaged-2" in err and err.count("\n") == 1


def test_a_lock_cut_between_stages_is_sound_and_left_alone(tmp_path):
    """DVC reads it and runs the stages it lacks again: nothing to set aside."""
    (tmp_path / "dvc.lock").write_text(SOUND[:SOUND.index("\n  split@")])
    assert set_aside_damaged_lock(tmp_path) is None


def test_the_command_line_checks_the_folder_it_is_given(tmp_path):
    (tmp_path / "dvc.lock").write_text(SOUND[:100])
    proc = subprocess.run([sys.executable, "-m", "pipelines.lockfile", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0 and (tmp_path / "dvc.lock.damaged").read_text() == SOUND[:100]
