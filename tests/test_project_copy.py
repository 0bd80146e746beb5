"""The project copy of the pipeline tests and benchmarks: git-tracked files only, never a run's
outputs (``make run`` followed by ``make test`` once failed: the copy took the run's dvc.lock)."""

import subprocess

import yaml

from tests.project_copy import ROOT, RUN_OUTPUTS, copy_project, tracked_files


def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_only_tracked_files_are_copied_never_a_runs_outputs(tmp_path):
    repo = tmp_path / "checkout"
    for rel in ("dvc.yaml", "params.yaml", "retdm/cli.py", "data/.gitkeep", "reports/keep.md", "dvc.lock",
                "rundown.md", "datasets/notes.md"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(f"committed {rel}\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x")
    # what `make run` leaves behind, untracked and not ignored, and an edit to a tracked file
    for rel in ("results/comparison.parquet", "reports/comparison.md", "runs/synthetic/bce/pretrain/best.pt",
                "notes.txt"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("from a run\n")
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # even a committed lock file stays out
    (repo / "params.yaml").write_text("edited\n")
    (repo / "staged.py").write_text("new\n")
    git(repo, "add", "staged.py")

    out = copy_project(tmp_path / "copy", root=repo)
    copied = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert copied == ["datasets/notes.md", "dvc.yaml", "params.yaml", "retdm/cli.py", "rundown.md", "staged.py"]
    assert (out / "params.yaml").read_text() == "edited\n"  # the working tree's version


def test_run_outputs_cover_every_output_of_the_pipeline():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    tops = set()
    for stage in stages.values():
        stage = stage.get("do", stage)
        for out in [*stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]:
            tops.add((out if isinstance(out, str) else next(iter(out))).split("/")[0])
    assert tops and tops <= set(RUN_OUTPUTS)
    assert "dvc.yaml" in tracked_files() and "dvc.lock" not in tracked_files()


def test_every_training_stage_depends_on_the_files_that_resolve_its_config():
    """A change to how the training config is resolved (profiles, defaults, merge order, method
    specs) re-runs every training stage: each lists those files as deps in dvc.yaml."""
    config = {"pipelines/params.py", "retdm/config.py", "retdm/profiles.yaml", "retdm/methods.py"}
    raw = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    stages = {name: stage.get("do", stage) for name, stage in raw.items()}  # foreach stages: under `do`
    training = {name: stage for name, stage in stages.items()
                if stage["cmd"].startswith(("python -m pipelines.train", "python -m pipelines.sweep ${item.dataset} "
                                            "${item.seed} ${item.alpha}"))}
    assert set(training) == {"pretrain", "embed", "finetune", "finetune_baseline", "probe", "fit", "sweep_point"}
    assert {name: sorted(config - set(stage["deps"])) for name, stage in training.items()} == \
        {name: [] for name in training}
