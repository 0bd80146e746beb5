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
    assert moved == tmp_path / "dvc.lock.damaged.1" and moved.read_text() == SOUND[:cut]
    assert not (tmp_path / "dvc.lock").exists() and (tmp_path / "dvc.lock.damaged").read_text() == "an earlier one"
    err = capsys.readouterr().err
    assert "dvc.lock: DVC cannot read it (" in err and "moved to dvc.lock.damaged.1" in err and err.count("\n") == 1


def test_a_lock_cut_between_stages_is_sound_and_left_alone(tmp_path):
    """DVC reads it and runs the stages it lacks again: nothing to set aside."""
    (tmp_path / "dvc.lock").write_text(SOUND[:SOUND.index("\n  split@")])
    assert set_aside_damaged_lock(tmp_path) is None


def test_the_command_line_checks_the_folder_it_is_given(tmp_path):
    (tmp_path / "dvc.lock").write_text(SOUND[:100])
    (tmp_path / ".dvc" / "tmp").mkdir(parents=True)
    (tmp_path / ".dvc/tmp/rwlock").write_text("")
    proc = subprocess.run([sys.executable, "-m", "pipelines.lockfile", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0 and (tmp_path / "dvc.lock.damaged").read_text() == SOUND[:100]
    assert (tmp_path / ".dvc/tmp/rwlock.damaged").read_text() == "" and not (tmp_path / ".dvc/tmp/rwlock").exists()


RWLOCK_SOUND = '{"write": {"data/synthetic/labels.parquet": {"pid": 4242, "cmd": "dvc repro"}}, "read": {}}'


@pytest.mark.parametrize("cut", [0, 1, 40])  # empty, cut at the first brace, cut mid-entry
def test_an_rwlock_cut_short_is_moved_aside_and_dvc_reads_the_folder_again(tmp_path, capsys, cut):
    from dvc.fs import LocalFileSystem
    from dvc.rwlock import RWLockFileCorruptedError, _edit_rwlock

    from pipelines.lockfile import set_aside_damaged_rwlock

    folder = tmp_path / ".dvc" / "tmp"
    folder.mkdir(parents=True)
    (folder / "rwlock").write_text(RWLOCK_SOUND[:cut])
    with pytest.raises(RWLockFileCorruptedError), _edit_rwlock(str(folder), LocalFileSystem(), False):
        pass  # what every `dvc repro` hits
    moved = set_aside_damaged_rwlock(tmp_path)
    assert moved == folder / "rwlock.damaged" and moved.read_text() == RWLOCK_SOUND[:cut]
    with _edit_rwlock(str(folder), LocalFileSystem(), False) as lock:
        assert lock == {"read": {}, "write": {}}
    err = capsys.readouterr().err
    assert "rwlock: DVC cannot read it (" in err and "moved to rwlock.damaged" in err


def test_a_sound_rwlock_and_none_are_left_alone(tmp_path):
    from pipelines.lockfile import set_aside_damaged_rwlock

    assert set_aside_damaged_rwlock(tmp_path) is None
    (tmp_path / ".dvc" / "tmp").mkdir(parents=True)
    (tmp_path / ".dvc/tmp/rwlock").write_text(RWLOCK_SOUND)
    assert set_aside_damaged_rwlock(tmp_path) is None and (tmp_path / ".dvc/tmp/rwlock").read_text() == RWLOCK_SOUND
