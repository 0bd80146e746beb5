"""infra/prefect.yaml declares a valid nightly deployment of the `reproduce` flow."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_deployment_is_a_nightly_cron_of_reproduce_on_a_process_pool():
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.client.schemas.schedules import CronSchedule

    raw = yaml.safe_load((ROOT / "infra/prefect.yaml").read_text())
    PrefectYamlModel.model_validate(raw)
    (deployment,) = raw["deployments"]
    path, name = deployment["entrypoint"].split(":")
    assert (ROOT / path).is_file() and f"def {name}(" in (ROOT / path).read_text()
    (schedule,) = deployment["schedules"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    assert cron.cron.split()[2:] == ["*", "*", "*"]  # every day
    assert deployment["work_pool"]["name"] and set(deployment["parameters"]) == {"datasets", "methods", "profile"}


def test_flow_parameters_match_the_deployment():
    import inspect

    from pipelines.flows import reproduce

    raw = yaml.safe_load((ROOT / "infra/prefect.yaml").read_text())
    assert set(raw["deployments"][0]["parameters"]) <= set(inspect.signature(reproduce.fn).parameters)
