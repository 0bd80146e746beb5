"""params.yaml read at the edge: a bad entry stops a stage with one line and exit status 1."""

from pathlib import Path

import pytest
import yaml

from pipelines import split
from pipelines.params import stage_main
from retdm.methods import METHODS

ROOT = Path(__file__).resolve().parents[2]


def run_stage(capsys, run, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        stage_main(run, list(args))
    return exit_.value.code, capsys.readouterr().err


def test_an_unknown_method_in_params_yaml_is_one_line_listing_the_valid_ones(tmp_path, monkeypatch, capsys):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["methods"]["nosuch"] = {}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    code, err = run_stage(capsys, split.main, "synthetic")
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("error: params.yaml: methods ['nosuch'] are not registered; valid methods are: asl, bce")
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]


def test_an_unknown_name_anywhere_in_a_stage_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no params.yaml: the stage's threads stay the libraries' defaults

    def stage(name: str) -> None:
        METHODS.get(name)

    code, err = run_stage(capsys, stage, "retdn")
    assert code == 1 and err == f"error: unknown method 'retdn'; valid methods are: {', '.join(METHODS.names())}\n"
