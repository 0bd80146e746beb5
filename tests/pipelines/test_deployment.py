"""infra/prefect.yaml declares a valid nightly deployment of the `reproduce` flow, and an
on-demand one on Dask workers."""

import os
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def deployments() -> dict[str, dict]:
    """The deployments of infra/prefect.yaml by name, after checking the file against Prefect's model."""
    from prefect.cli.deploy._models import PrefectYamlModel

    raw = yaml.safe_load((ROOT / "infra/prefect.yaml").read_text())
    PrefectYamlModel.model_validate(raw)
    return {d["name"]: d for d in raw["deployments"]}


def test_deployment_is_a_nightly_cron_of_reproduce_on_a_process_pool():
    from prefect.client.schemas.schedules import CronSchedule

    deployment = deployments()["nightly-reproduce"]
    path, name = deployment["entrypoint"].split(":")
    assert (ROOT / path).is_file() and f"def {name}(" in (ROOT / path).read_text()
    (schedule,) = deployment["schedules"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    assert cron.cron.split()[2:] == ["*", "*", "*"]  # every day
    assert deployment["work_pool"]["name"] and set(deployment["parameters"]) == {"datasets", "methods"}


def test_the_dask_deployment_runs_reproduce_on_demand_with_valid_runner_options():
    from pipelines.flows import check_runner

    deployment = deployments()["reproduce-on-dask"]
    assert deployment["entrypoint"] == "pipelines/flows.py:reproduce" and not deployment.get("schedules")
    params = deployment["parameters"]
    assert params["runner"] == "dask"
    check_runner(params["runner"], params["workers"], params["dask_address"])


def test_flow_parameters_match_the_deployment():
    import inspect

    from pipelines.flows import reproduce

    for deployment in deployments().values():
        assert set(deployment["parameters"]) <= set(inspect.signature(reproduce.fn).parameters)


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, text=True, check=False,
                          capture_output=True)


def pull(checkout: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(ROOT / "infra/pull.sh"), str(checkout)], text=True, capture_output=True,
                          check=False)


def test_the_deployment_pulls_its_branch_first_and_never_overwrites_local_edits(tmp_path):
    """The pull step runs infra/pull.sh in the checkout: a fast-forward to the branch's upstream;
    local edits that the update would touch stop the run and stay as they were."""
    step_dir, step_pull = yaml.safe_load((ROOT / "infra/prefect.yaml").read_text())["pull"]
    assert list(step_dir) == ["prefect.deployments.steps.set_working_directory"]
    assert step_pull == {"prefect.deployments.steps.run_shell_script": {"script": "sh infra/pull.sh"}}

    origin, checkout = tmp_path / "origin", tmp_path / "checkout"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    (origin / "params.yaml").write_text("profile: cpu\n")
    git(origin, "add", ".")
    git(origin, "commit", "-qm", "one")
    assert git(tmp_path, "clone", "-q", str(origin), str(checkout)).returncode == 0
    (origin / "params.yaml").write_text("profile: lite\n")
    git(origin, "commit", "-qam", "two")

    done = pull(checkout)
    assert done.returncode == 0 and (checkout / "params.yaml").read_text() == "profile: lite\n", done.stderr
    assert "up to date with origin/main" in done.stdout

    (origin / "params.yaml").write_text("profile: paper\n")
    git(origin, "commit", "-qam", "three")
    (checkout / "params.yaml").write_text("profile: mine\n")  # a local edit the update would overwrite
    refused = pull(checkout)
    assert refused.returncode != 0 and "params.yaml" in refused.stderr
    assert (checkout / "params.yaml").read_text() == "profile: mine\n"

    skipped = subprocess.run(["sh", str(ROOT / "infra/pull.sh"), str(checkout)], text=True, capture_output=True,
                             check=False, env={**os.environ, "RETDM_PULL": "0"})
    assert skipped.returncode == 0 and "RETDM_PULL=0" in skipped.stdout

    alone = tmp_path / "alone"  # no upstream: runs as it is
    git(tmp_path, "init", "-q", "-b", "main", str(alone))
    as_is = pull(alone)
    assert as_is.returncode == 0 and "has no upstream branch" in as_is.stdout
