"""DOCKER_CLIENT_TIMEOUT reaches the Docker client a prefect-docker worker builds, on a real engine.

Each check runs a container with the environment the program gives its worker
containers (components.prefect_settings.worker_env) and the Docker socket
mounted read-only where that environment's DOCKER_HOST points. Inside,
tests/e2e/scripts/docker_client_timeout.py constructs prefect-docker's
DockerWorker and calls its _get_client(): the test reads the timeout off the
client object (not the environment) and the engine version the client got
through the read-only socket. Two configured values and the unset case show
that the variable, not a constant, decides. The same holds for the plain
prefect image, which gets prefect-docker only at start, from EXTRA_PIP_PACKAGES.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import docker
import pytest

from components.config import load_paths
from components.prefect_settings import DOCKER_CLIENT_TIMEOUT, EXTRA_PIP_PACKAGES, worker_env
from images import PREFECT_DOCKER_REQUIREMENT, PREFECT_DOCKER_VERSION, WORKER_IMAGE
from testbed import PREFECT_IMAGE, SCRIPTS, new_run_id, run_labels, sweep

HOST_SOCKET = "/var/run/docker.sock"  # the engine testbed/dockerd.sh starts
# Nothing listens there: DockerWorker contacts no API until it is started.
API_URL = "http://127.0.0.1:9/api"
DOCKER_DEFAULT_TIMEOUT = 60  # docker.constants.DEFAULT_TIMEOUT_SECONDS, what prefect-docker falls back to


@pytest.fixture(scope="module")
def run_id(docker_client):
    run_id = new_run_id("dct")
    yield run_id
    sweep(docker_client, run_id)  # whatever a failed check left behind


def program_env(overrides: dict[str, str], *, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The worker container's environment as the program builds it for this config."""
    config = load_paths({"worker.enabled": "true", **overrides})
    entries = worker_env(config.worker, timezone=config.timezone, log_level=config.prefect.log_level, api_url=API_URL)
    assert all(isinstance(e, str) for e in entries), entries  # no secrets without auth
    env = dict(e.split("=", 1) for e in entries)
    for name in drop:
        del env[name]
    return env


def run_check(client: docker.DockerClient, image: str, env: dict[str, str], run_id: str) -> tuple[dict, dict, str]:
    """Run the script in `image`; returns (its JSON, the container's mounts by destination, its logs)."""
    socket_path = urlsplit(env["DOCKER_HOST"]).path
    container = client.containers.run(
        image,
        ["python", "/e2e/docker_client_timeout.py"],
        environment=env,
        volumes={
            HOST_SOCKET: {"bind": socket_path, "mode": "ro"},
            str(SCRIPTS): {"bind": "/e2e", "mode": "ro"},
        },
        network_mode="none",  # the unix socket is all it may reach (and pip has no index anyway)
        labels=run_labels(run_id),
        detach=True,
    )
    try:
        status = container.wait(timeout=300)
        logs = container.logs().decode(errors="replace")
        assert status["StatusCode"] == 0, f"{image} exited {status['StatusCode']}:\n{logs[-4000:]}"
        mounts = {m["Destination"]: m for m in client.api.inspect_container(container.id)["Mounts"]}
        out = container.logs(stderr=False).decode(errors="replace").strip().splitlines()
        result = json.loads(out[-1])
        print(f"\n[e2e] {image} {DOCKER_CLIENT_TIMEOUT}={env.get(DOCKER_CLIENT_TIMEOUT)}: "
              f"client.api.timeout={result['timeout']}, engine {result['engine_version']}")
        return result, mounts, logs
    finally:
        container.remove(force=True)


def assert_client_reached_engine(result: dict, mounts: dict, client: docker.DockerClient) -> None:
    assert result["engine_version"] == client.version()["Version"]
    assert result["base_url"] == "http+docker://localhost"  # the unix socket, not a TCP engine
    assert mounts["/var/run/docker.sock"]["RW"] is False
    assert result["prefect_docker"] == PREFECT_DOCKER_VERSION


# The program's default (120) and a configured one; both differ from docker's own default.
@pytest.mark.parametrize("overrides", [{}, {"worker.dockerClientTimeout": "37"}], ids=["default-120", "configured-37"])
def test_worker_image_client_timeout_is_the_configured_value(docker_client, run_id, overrides):
    expected = load_paths(overrides).worker.docker_client_timeout
    env = program_env({**overrides, "worker.extraPipPackages": ""})
    assert env[DOCKER_CLIENT_TIMEOUT] == str(expected)
    assert EXTRA_PIP_PACKAGES not in env  # the image has prefect-docker baked in

    result, mounts, _ = run_check(docker_client, WORKER_IMAGE, env, run_id)

    assert result["timeout"] == expected, result
    assert result["timeout"] != result["docker_default_timeout"]
    assert_client_reached_engine(result, mounts, docker_client)


def test_worker_image_client_timeout_without_the_variable_is_dockers_default(docker_client, run_id):
    env = program_env({"worker.extraPipPackages": ""}, drop=(DOCKER_CLIENT_TIMEOUT,))

    result, mounts, _ = run_check(docker_client, WORKER_IMAGE, env, run_id)

    assert result["env"] is None
    assert result["timeout"] == result["docker_default_timeout"] == DOCKER_DEFAULT_TIMEOUT, result
    assert_client_reached_engine(result, mounts, docker_client)


def test_prefect_image_installs_prefect_docker_at_start_and_its_client_gets_the_timeout(docker_client, run_id):
    # the program's default worker.extraPipPackages is what the stand-in's /wheels can install offline
    env = program_env({"worker.dockerClientTimeout": "45"})
    assert env[EXTRA_PIP_PACKAGES] == PREFECT_DOCKER_REQUIREMENT

    result, mounts, logs = run_check(docker_client, PREFECT_IMAGE, env, run_id)

    assert f"Successfully installed {PREFECT_DOCKER_REQUIREMENT.replace('==', '-')}" in logs, logs[-4000:]
    assert result["timeout"] == 45, result
    assert_client_reached_engine(result, mounts, docker_client)


def test_prefect_image_alone_has_no_prefect_docker(docker_client, run_id):
    """So the check above passes only through the start-time install."""
    container = docker_client.containers.run(
        PREFECT_IMAGE,
        ["python", "-c", "import importlib.util; print(importlib.util.find_spec('prefect_docker'))"],
        network_mode="none",
        labels=run_labels(run_id),
        detach=True,
    )
    try:
        assert container.wait(timeout=120)["StatusCode"] == 0
        assert container.logs(stderr=False).decode().strip() == "None"
    finally:
        container.remove(force=True)
