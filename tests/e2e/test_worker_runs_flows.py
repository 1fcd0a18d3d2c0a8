"""A Docker worker next to the server, on a real Docker engine: flow runs in containers of their own.

The stack runs the worker stand-in image (prefect-docker baked in); the flows
live in a locally built image that flow-run containers start from with pull
policy Never, so no registry is ever contacted. The deployment is made with
the stack's own `deploy_command` output, run in that image.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from images import FLOWS_IMAGE, WORKER_IMAGE
from testbed import deploy_flow, crash_process, deploy_or_fail, tear_down, wait_for

pytestmark = pytest.mark.timeout(900)

POOL = "e2e-docker-pool"
TIMEOUT = 77  # not the default, so the test sees config reach the container


@pytest.fixture(scope="module")
def stack(docker_client):
    started = time.monotonic()
    stack = deploy_or_fail(docker_client, "wk", {
        "api.replicas": 2,
        "worker.enabled": True,
        "worker.pool": POOL,
        "worker.image": WORKER_IMAGE,
        "worker.extraPipPackages": "",
        "worker.dockerClientTimeout": TIMEOUT,
        "worker.jobImagePullPolicy": "Never",
    })
    print(f"\n[e2e] stack with a Docker worker deployed in {time.monotonic() - started:.1f} s")
    yield stack
    # Flow-run containers are the worker's, not the program's: a run still going
    # at teardown would hold the edge network.
    for leftover in docker_client.containers.list(all=True, filters={"ancestor": FLOWS_IMAGE}):
        leftover.remove(force=True)
    tear_down(stack)


@pytest.fixture(scope="module")
def flow_deployment(stack):
    return deploy_flow(stack, "containers")


def test_worker_container_runs_as_configured(stack):
    names = stack.outputs["containers"]["workers"]
    assert len(names) == 1
    info = stack.client.api.inspect_container(names[0])
    assert info["State"]["Health"]["Status"] == "healthy"
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["DOCKER_CLIENT_TIMEOUT"] == str(TIMEOUT)
    assert env["PREFECT_API_URL"] == "http://prefect-api:4200/api"
    socket = next(m for m in info["Mounts"] if m["Destination"] == "/var/run/docker.sock")
    assert socket["RW"] is False
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert info["HostConfig"]["Privileged"] is False
    setup = stack.container("work-pool").attrs["State"]
    assert setup["Status"] == "exited" and setup["ExitCode"] == 0


def test_work_pool_was_created_with_the_stack_job_defaults(stack):
    assert stack.outputs["work_pool"] == POOL
    pool = json.loads(stack.prefect("work_pool.py", POOL).strip().splitlines()[-1])
    assert pool["type"] == "docker"
    assert pool["defaults"]["networks"] == [stack.outputs["services"]["networks"]["edge"]]
    assert pool["defaults"]["image_pull_policy"] == "Never"
    assert pool["defaults"]["auto_remove"] is True
    # the worker's name in Prefect is the container's without its generation
    assert re.sub(r"-[0-9a-f]{8}$", "", stack.outputs["containers"]["workers"][0]) in pool["workers"]


def flow_run_containers(stack, result) -> set[str]:
    """The containers the runs ran in (prefect-docker records each one's id), none of them the worker."""
    containers = {r["container"] for r in result["runs"]}
    assert None not in containers, f"a run has no container id: {result}"
    worker_id = stack.client.api.inspect_container(stack.outputs["containers"]["workers"][0])["Id"]
    assert worker_id not in containers
    return containers


def test_a_deployment_run_completes_in_a_new_container_and_its_logs_come_back_through_nginx(stack, flow_deployment):
    result = json.loads(stack.prefect("run_many.py", flow_deployment, "1", "240").strip().splitlines()[-1])
    [run] = result["runs"]
    assert run["state"] == "COMPLETED", result
    print(f"\n[e2e] one run on the Docker pool: COMPLETED after {run['final_after_s']:.1f} s")
    assert len(flow_run_containers(stack, result)) == 1
    logs = json.loads(stack.prefect("run_logs.py", run["id"]).strip().splitlines()[-1])
    assert any("hello from flow run number 0" in m for m in logs[run["id"]]), logs


def test_ten_runs_submitted_at_once_all_complete(stack, flow_deployment):
    result = json.loads(stack.prefect("run_many.py", flow_deployment, "10", "600", timeout=700).strip().splitlines()[-1])
    states = [r["state"] for r in result["runs"]]
    assert states == ["COMPLETED"] * 10, result
    times = sorted(r["final_after_s"] for r in result["runs"])
    print(f"\n[e2e] 10 runs at once: submitted in {result['submitted_s']:.1f} s, "
          f"first COMPLETED after {times[0]:.1f} s, last after {times[-1]:.1f} s")
    containers = flow_run_containers(stack, result)
    assert len(containers) == 10, "each run gets a container of its own"
    ids = [r["id"] for r in result["runs"]]
    logs = json.loads(stack.prefect("run_logs.py", *ids).strip().splitlines()[-1])
    for r in result["runs"]:
        assert any(f"hello from flow run number {r['n']}" in m for m in logs[r["id"]]), (r, logs[r["id"]])
    # auto-remove (the pool's job default): Docker removes each run's container once it exited,
    # which may be a moment after the API shows the run COMPLETED.
    def left() -> list[str]:
        return [c.name for cid in containers for c in stack.client.containers.list(all=True, filters={"id": cid})]

    wait_for(lambda: not left(), timeout=60, interval=1, what="the 10 flow-run containers to be auto-removed",
             detail=lambda: f"still there: {left()}")


def test_a_crashed_worker_is_restarted_and_serves_the_pool_again(stack, flow_deployment):
    name = stack.outputs["containers"]["workers"][0]
    before = stack.client.api.inspect_container(name)["RestartCount"]
    crash_process(stack.client, name)
    wait_for(lambda: stack.client.api.inspect_container(name)["RestartCount"] > before, timeout=60,
             what=f"{name} to be restarted by its policy")
    wait_for(lambda: stack.client.api.inspect_container(name)["State"]["Health"]["Status"] == "healthy",
             timeout=180, interval=2, what=f"{name} healthy again")
    result = json.loads(stack.prefect("run_many.py", flow_deployment, "1", "240").strip().splitlines()[-1])
    assert [r["state"] for r in result["runs"]] == ["COMPLETED"], result
