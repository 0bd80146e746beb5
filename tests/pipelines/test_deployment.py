"""infra/prefect.yaml declares a valid nightly deployment of the `reproduce` flow, and an
on-demand one on Dask workers."""

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
    assert deployment["work_pool"]["name"] and set(deployment["parameters"]) == {"datasets", "methods", "profile"}


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
