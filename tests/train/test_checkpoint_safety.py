"""Checkpoints are untrusted input: loading one rebuilds data only, never runs pickled code."""

import ast
import dataclasses
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from retdm.cli import main
from retdm.errors import TrainingError
from retdm.checkpoint import load_checkpoint, load_model
from retdm.train.run import train_method


class CreatesAFile:
    """Unpickling this calls ``open(path, "w")``: the file appearing means pickled code ran."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stderr


@pytest.fixture(scope="module")
def trained(tiny_table, tmp_path_factory):
    from retdm.config import load_config

    from tests.tiny_params import TINY_CONFIG

    cfg = load_config("cpu", dict(TINY_CONFIG))
    cfg = dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, epochs=1))
    runs = tmp_path_factory.mktemp("runs")
    return train_method(tiny_table, runs, cfg, "bce", progress=False), cfg


def crafted(real: Path, dest: Path, marker: Path) -> Path:
    """A copy of a real checkpoint, format tag and all, with a payload in its history."""
    payload = load_checkpoint(real)
    payload["history"].append({"note": CreatesAFile(marker)})
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, dest)
    return dest


def test_a_real_checkpoint_loads_as_data(trained):
    best, _ = trained
    model, _, names, record = load_model(best)
    assert len(names) == 10 and record["stage"] == "pretrain" and isinstance(record["config"], dict)


def test_evaluate_and_predict_refuse_a_crafted_checkpoint_without_running_it(trained, tiny_table, tmp_path):
    best, _ = trained
    marker = tmp_path / "pwned"
    evil = crafted(best, tmp_path / "evil.pt", marker)
    code, err = run("evaluate", "--data", tiny_table, "--checkpoint", evil, "--out", tmp_path / "m.parquet")
    assert code == 1 and f"{evil}: refused" in err and "could run code" in err and "Traceback" not in err
    code, err = run("predict", "--checkpoint", evil, "--images", tiny_table.parent / "images",
                    "--out", tmp_path / "p.parquet")
    assert code == 1 and f"{evil}: refused" in err
    assert not marker.exists() and not (tmp_path / "m.parquet").exists() and not (tmp_path / "p.parquet").exists()


def test_resuming_from_a_crafted_last_checkpoint_refuses_it(trained, tiny_table, tmp_path):
    best, _ = trained
    marker = tmp_path / "pwned"
    evil = crafted(best, tmp_path / "run" / "bce" / "pretrain" / "last.pt", marker)
    code, err = run("train", "--data", tiny_table, "--out", tmp_path / "run", "-m", "bce", "--quiet",
                    "--set", "pretrain.epochs=2", "--set", "data.image_size=32", "--set", "data.resize=36",
                    "--set", "data.batch_size=16")
    assert code == 1 and f"{evil}: refused" in err
    assert not marker.exists() and not (evil.parent / "best.pt").exists()


def test_a_text_file_is_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello, these are my notes\n")
    with pytest.raises(TrainingError, match=r"notes\.pt: not a readable checkpoint"):
        load_checkpoint(text)
    code, err = run("predict", "--checkpoint", text, "--images", tmp_path, "--out", tmp_path / "p.parquet")
    assert code == 1 and "not a readable checkpoint" in err and len(err.strip().splitlines()) == 1


def test_every_torch_load_in_the_code_is_weights_only():
    root = Path(__file__).resolve().parents[2]
    loose = []
    for path in [*root.glob("retdm/**/*.py"), *root.glob("pipelines/*.py"), *root.glob("bench/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" \
                    and getattr(node.func.value, "id", None) == "torch":
                safe = any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords)
                if not safe:
                    loose.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not loose, f"torch.load without weights_only=True: {loose}"
