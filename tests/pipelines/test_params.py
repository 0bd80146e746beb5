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


def test_a_stage_computes_with_the_threads_the_flow_schedules_it_by(tmp_path, monkeypatch):
    """One resolution of a stage's threads (``stage_thread_count``): the stage applies it to torch
    and the BLAS pools, and the flow's scheduler counts the same number."""
    import torch
    from threadpoolctl import threadpool_info

    from pipelines.params import stage_thread_count
    from pipelines.schedule import threads_of_stage

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["threads"] = 1
    params["methods"]["asl"] = {"threads": 3}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    train_asl = ["synthetic", "asl", "finetune", "0"]
    assert stage_thread_count(params, "train", train_asl) == 3  # the method's own
    assert stage_thread_count(params, "train", ["synthetic", "bce", "pretrain", "0"]) == 1  # train.threads
    assert stage_thread_count(params, "evaluate", ["synthetic", "asl", "0"]) == 1
    assert threads_of_stage(params, "python -m pipelines.train " + " ".join(train_asl), cores=8) == 3
    params["train"]["threads"] = 0
    assert threads_of_stage(params, "python -m pipelines.evaluate synthetic asl 0", cores=8) == 8  # 0: all cores

    seen = {}

    def stage(name: str) -> None:  # not a pipelines/ entry: train.threads (1)
        seen["torch"] = torch.get_num_threads()
        seen["blas"] = {pool["num_threads"] for pool in threadpool_info()}

    before = torch.get_num_threads()
    try:
        stage_main(stage, ["x"])
    finally:
        torch.set_num_threads(before)
    assert seen == {"torch": 1, "blas": {1}}
