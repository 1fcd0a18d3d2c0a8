"""The Docker worker under mocks: env, API address, credentials, start order, socket, work pool job."""

import json
import re

import pytest

from components.config import load_paths
from components.prefect_settings import CLIENT_API_URL, CLIENT_AUTH_STRING, DOCKER_CLIENT_TIMEOUT, EXTRA_PIP_PACKAGES
from harness import StackMocks, run_program
from support import container, containers, env_of, replica, replicas, without_digest


def worker_run(stack="dev", **overrides):
    run = run_program(stack, {"worker.enabled": True, **overrides})
    assert run.error is None, repr(run.error)
    return run


def test_worker_env_carries_the_timeout_the_internal_api_url_and_no_auth_in_dev():
    run = worker_run(**{"worker.dockerClientTimeout": 45})
    env = env_of(replica(run, "worker", 1))
    assert env[DOCKER_CLIENT_TIMEOUT] == "45"
    assert env[CLIENT_API_URL] == "http://prefect-api:4200/api"
    assert env["DOCKER_HOST"] == "unix:///var/run/docker.sock"
    assert CLIENT_AUTH_STRING not in env
    assert env[EXTRA_PIP_PACKAGES] == "prefect-docker==0.7.4"


def test_timeout_defaults_to_120_seconds():
    assert load_paths({}).worker.docker_client_timeout == 120
    env = env_of(replica(worker_run(), "worker", 1))
    assert env[DOCKER_CLIENT_TIMEOUT] == "120"


def test_auth_string_reaches_the_worker_when_auth_is_on():
    run = worker_run("prod")
    reg = replica(run, "worker", 1)
    assert env_of(reg)[CLIENT_AUTH_STRING] == f"prefect:{StackMocks().password}"
    assert CLIENT_AUTH_STRING in reg.secret_envs()


def test_a_configured_api_url_replaces_the_internal_one():
    run = worker_run(**{"worker.apiUrl": "http://localhost:4200/api"})
    assert env_of(replica(run, "worker", 1))[CLIENT_API_URL] == "http://localhost:4200/api"


def test_workers_start_after_every_api_replica_is_healthy_and_after_the_pool_job():
    run = worker_run("prod", **{"worker.replicas": 2})
    api = {r.urn for r in containers(run, "api")}
    assert len(api) == 3
    pool_job = container(run, "work-pool")
    assert api <= pool_job.all_dependencies()
    workers = replicas(run, "worker")
    assert [without_digest(w.inputs["name"]) for w in workers] == ["prefect-ha-prod-worker-1", "prefect-ha-prod-worker-2"]
    for worker in workers:
        name = worker.inputs["name"]
        assert api <= worker.all_dependencies(), name
        # the pool job's exit-code gate is a direct dependency: a failed set-up stops the workers
        assert pool_job.urn in worker.dependencies, name
        # the Prefect worker's name is stable across generations; the container's is not
        assert worker.inputs["command"][worker.inputs["command"].index("--name") + 1] == without_digest(name)
        assert worker.seq > pool_job.seq > max(r.seq for r in containers(run, "api"))
        assert worker.inputs["wait"] is True and worker.inputs["restart"] == "unless-stopped"
        assert "/health" in " ".join(worker.inputs["healthcheck"]["tests"])
        assert worker.inputs["command"][:7] == ["prefect", "worker", "start", "--pool", "docker-pool", "--type", "docker"]


def test_failed_pool_setup_stops_every_worker():
    run = run_program("dev", mocks=StackMocks(exit_codes={"prefect-ha-dev-work-pool": 1}))
    assert run.error is not None
    assert re.search(r"work-pool container prefect-ha-dev-work-pool-[0-9a-f]{8} exited with code 1", str(run.error)), run.error
    assert containers(run, "worker") == []


def test_docker_socket_is_mounted_read_only_and_not_for_a_tcp_engine():
    run = worker_run()
    [mount] = replica(run, "worker", 1).inputs["volumes"]
    assert mount == {"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock", "readOnly": True}
    tcp = worker_run(**{"worker.dockerHost": "tcp://docker.internal:2376"})
    worker = replica(tcp, "worker", 1)
    assert not worker.inputs.get("volumes")
    assert env_of(worker)["DOCKER_HOST"] == "tcp://docker.internal:2376"


def test_baked_image_runs_read_only_and_start_time_install_does_not():
    baked = worker_run(**{"worker.image": "example/worker:1.0", "worker.extraPipPackages": ""})
    worker = replica(baked, "worker", 1).inputs
    assert worker["image"] == "example/worker:1.0" and worker["readOnly"] is True
    assert EXTRA_PIP_PACKAGES not in env_of(replica(baked, "worker", 1))
    installing = replica(worker_run(), "worker", 1).inputs
    assert installing["image"] == "prefecthq/prefect:3.8.8-python3.12" and installing["readOnly"] is False


def test_pool_job_carries_the_job_defaults_and_limits():
    run = worker_run(**{"worker.jobImagePullPolicy": "Never", "worker.jobAutoRemove": False,
                        "worker.poolConcurrencyLimit": 4, "worker.limit": 3})
    spec = json.loads(env_of(container(run, "work-pool"))["WORK_POOL_SPEC"])
    assert spec == {
        "name": "docker-pool", "concurrency_limit": 4,
        "job_defaults": {"networks": ["prefect-ha-dev-edge"], "image_pull_policy": "Never", "auto_remove": False},
    }
    assert replica(run, "worker", 1).inputs["command"][-2:] == ["--limit", "3"]
    assert run.outputs["work_pool"] == "docker-pool"
    assert run.outputs["deploy_command"].startswith("prefect --no-prompt deploy ")
    assert [without_digest(n) for n in run.outputs["containers"]["workers"]] == ["prefect-ha-dev-worker-1"]


def test_job_network_can_be_overridden():
    run = worker_run(**{"worker.jobNetwork": "shared-data"})
    spec = json.loads(env_of(container(run, "work-pool"))["WORK_POOL_SPEC"])
    assert spec["job_defaults"]["networks"] == ["shared-data"]


def test_worker_off_means_no_worker_resources():
    run = run_program("prod")
    assert containers(run, "worker") == [] and containers(run, "work-pool") == []
    assert "work_pool" not in run.outputs


@pytest.mark.parametrize("raw, expected", [
    ({"worker.dockerClientTimeout": "0"}, "worker.dockerClientTimeout must be a positive number of seconds, got 0"),
    ({"worker.dockerClientTimeout": "1.5"}, "worker.dockerClientTimeout"),
    ({"worker.dockerHost": "/var/run/docker.sock"}, "worker.dockerHost must be unix:///path/to/docker.sock"),
    ({"worker.jobImagePullPolicy": "never"}, "worker.jobImagePullPolicy must be one of IfNotPresent, Always, Never"),
    ({"worker.pool": "my pool"}, "worker.pool must be letters"),
    ({"worker.replicas": "0"}, "worker.replicas must be 1-10, got 0"),
    ({"worker.image": "prefecthq/prefect"}, "worker.image must be pinned"),
    ({"worker.apiUrl": "http://prefect-api:4200"}, "worker.apiUrl must be an http(s) URL ending in /api"),
])
def test_bad_worker_config_is_refused_naming_the_key(raw, expected):
    from components.config import ConfigError

    with pytest.raises(ConfigError) as err:
        load_paths(raw)
    assert any(expected in p for p in err.value.problems), err.value.problems
