"""One training at a time per stage directory: a second process is refused with the holder's pid,
and a lock left by a killed process is taken over."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from retdm.errors import TrainingError
from retdm.train.lock import LOCK_FILE, hold
from retdm.train.run import train_method

ROOT = Path(__file__).resolve().parents[2]
HOLDER = ("import sys, time; from retdm.train.lock import hold\n"
          "with hold([sys.argv[1]]):\n print('held', flush=True); time.sleep(600)")


def start_holder(directory: Path) -> subprocess.Popen:
    """Another process holding ``directory``'s lock until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_training_on_a_directory_in_use_exits_1_naming_the_holder(tiny_table, tmp_path):
    holder = start_holder(tmp_path / "run" / "bce" / "pretrain")
    try:
        proc = subprocess.run([sys.executable, "-m", "retdm.cli", "train", "--data", str(tiny_table), "--out",
                               str(tmp_path / "run"), "--method", "bce", "--quiet", "--set", "pretrain.epochs=1"],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line, no traceback
    assert f"pid {holder.pid}" in proc.stderr and "bce/pretrain: in use by another training" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "run" / "bce" / "pretrain").iterdir()) == [LOCK_FILE]  # nothing written


def test_a_lock_left_by_a_killed_process_is_taken_over(tiny_table, tiny_cfg, tmp_path):
    stage = tmp_path / "run" / "bce" / "pretrain"
    holder = start_holder(stage)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (stage / LOCK_FILE).read_text().strip() == str(holder.pid)  # stale: its pid is no longer alive
    train_method(tiny_table, tmp_path / "run", tiny_cfg, "bce", progress=False)
    assert (stage / "best.pt").is_file() and not (stage / LOCK_FILE).exists()  # released: no trace in the outputs


def test_the_lock_names_this_process_while_held_and_refuses_a_second_holder(tmp_path):
    with hold([tmp_path / "a", tmp_path / "b"]):
        assert (tmp_path / "b" / LOCK_FILE).read_text().strip() == str(os.getpid())
        with pytest.raises(TrainingError, match=rf"b: in use by another training \(pid {os.getpid()},"):
            with hold([tmp_path / "b"]):
                pass
        assert (tmp_path / "b" / LOCK_FILE).is_file()  # the refused attempt left the holder's lock alone
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # created here, left empty: removed
