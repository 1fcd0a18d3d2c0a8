"""platform: swarm on a three-node swarm (Docker-in-Docker nodes, tests/e2e/swarm.py),
deployed by the real engine with DOCKER_HOST at the manager, as a user points the program
at an existing swarm.

The tests run in order on one deployment: spread and a flow run, a Prefect upgrade under
the request loop, a password rotation under the loop, the loss of a node, and destroy.
The figures they print are the ones the README states.
"""

from __future__ import annotations

import json
import time

import docker
import pytest
import requests
from pulumi import automation as auto

from engine import _text
from images import FLOWS_IMAGE, NEXT_PREFECT_IMAGE, NEXT_PREFECT_VERSION, PREFECT_DOCKER_REQUIREMENT, PREFECT_VERSION
from swarm import Swarm
from testbed import (IMAGES, PREFECT_IMAGE, Deployment, RequestLoop, changes, deploy_flow, prepare, run_selector,
                     wait_for)

pytestmark = pytest.mark.timeout(2400)

NODE_IMAGES = [*IMAGES.values(), NEXT_PREFECT_IMAGE, FLOWS_IMAGE]
PORT = 4200
CLIENTS, INTERVAL = 2, 0.05
STACK_LABEL = "prefect-ha.stack"


@pytest.fixture(scope="module")
def cluster(docker_client):
    started = time.monotonic()
    made = Swarm.start(docker_client, images=NODE_IMAGES)
    print(f"\n[swarm] three nodes ready in {time.monotonic() - started:.1f} s")
    yield made
    made.tear_down()


@pytest.fixture(scope="module")
def stack(cluster, docker_client):
    manager = cluster.manager()
    data_node = cluster.nodes[0]
    address = cluster.ips[data_node]
    deployment = prepare(manager, "swarm", {
        "platform": "swarm",
        "proxy.port": PORT,
        "proxy.publicUrl": f"http://{address}:{PORT}",
        "api.replicas": 3,
        "backup.enabled": False,
        "worker.enabled": True,
        "worker.image": "",
        "worker.extraPipPackages": PREFECT_DOCKER_REQUIREMENT,
        "worker.jobImagePullPolicy": "Never",
    }, docker_host=cluster.manager_host, host=address)
    deployment.scripts_client = docker_client  # client scripts run on this machine, against the node's address
    started = time.monotonic()
    try:
        deployment.up_result = deployment.stack.up()
    except auto.CommandError as err:
        pytest.fail(f"swarm deployment failed:\n{str(err)[-6000:]}\n{service_logs(manager)}")
    deployment.outputs = deployment.stack.outputs()
    print(f"\n[swarm] deployed in {time.monotonic() - started:.1f} s")
    yield deployment
    try:
        deployment.stack.destroy()
    except auto.CommandError:
        pass  # the cluster's teardown removes the nodes with everything on them


def service_logs(manager: docker.DockerClient) -> str:
    """The tasks' states and errors of every service, for a failure message."""
    lines = []
    for service in manager.services.list():
        for task in service.tasks():
            status = task["Status"]
            lines.append(f"{service.name} {task.get('NodeID', '')[:8]} {status['State']} {status.get('Err', '')}")
    return "\n".join(lines)


def service(stack: Deployment, kind: str):
    return stack.client.services.get(stack.outputs["swarm_services"][kind])


def running_tasks(stack: Deployment, kind: str) -> list[dict]:
    return [t for t in service(stack, kind).tasks(filters={"desired-state": "running"})
            if t["Status"]["State"] == "running"]


def node_names(stack: Deployment, tasks: list[dict]) -> list[str]:
    names = {n.id: n.attrs["Description"]["Hostname"] for n in stack.client.nodes.list()}
    return sorted(names[t["NodeID"]] for t in tasks)


def configure(deployment: Deployment, settings: dict) -> None:
    deployment.stack.stack.set_all_config({k: auto.ConfigValue(_text(v)) for k, v in settings.items()}, path=True)


def change_under_load(deployment: Deployment, settings: dict, what: str) -> RequestLoop:
    configure(deployment, settings)
    loop = RequestLoop(deployment.base, threads=CLIENTS, interval=INTERVAL, limit=10**6, seconds=1200)
    result = loop.during(deployment.stack.up)
    deployment.up_result = result
    deployment.outputs = deployment.stack.outputs()
    print(f"\n[swarm] {what}: pulumi up {loop.action_seconds:.1f} s, {loop.done} requests, "
          f"{len(loop.failures)} failed; changes {changes(result.summary.resource_changes)}")
    return loop


def last_json(output: str):
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def flow_deployment(stack):
    return deploy_flow(stack, "swarm")


def test_three_api_replicas_on_three_nodes_behind_nginx_on_every_node(stack, cluster):
    api = running_tasks(stack, "api")
    assert len(api) == 3 and len(set(node_names(stack, api))) == 3, node_names(stack, api)
    # nginx is global, each task publishing the port on its own node (host mode: no
    # routing mesh, which needs IPVS in the kernel). `pulumi up` does not wait for a
    # global service (the provider refuses a convergence check on one): the test does.
    wait_for(lambda: len(running_tasks(stack, "proxy")) == 3, timeout=120, what="an nginx task on each node",
             detail=lambda: service_logs(stack.client))
    for node, address in cluster.ips.items():
        wait_for(lambda: requests.get(f"http://{address}:{PORT}/api/health", timeout=5).ok, timeout=60,
                 what=f"nginx on {node}")
        answer = requests.get(f"http://{address}:{PORT}/api/health", timeout=10)
        assert answer.status_code == 200, (node, answer.status_code)
    assert requests.get(f"{stack.base}/api/admin/version", timeout=10).json() == PREFECT_VERSION
    # No secret in any service spec: they travel as Swarm secrets.
    specs = json.dumps([s.attrs["Spec"] for s in stack.client.services.list()])
    for password in stack.passwords():
        assert password not in specs
    mounted = [s["File"]["Name"] for s in service(stack, "api").attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]]
    assert mounted == ["/run/secrets/prefect-ha-env"]


def test_a_second_up_and_a_refresh_change_nothing(stack):
    """What Docker reads back of every service, secret and config is what the program
    wrote: no update on the next preview, none after a refresh."""
    assert changes(stack.stack.preview().change_summary) == {}
    stack.stack.refresh()
    assert changes(stack.stack.preview().change_summary) == {}


def test_a_flow_run_completes_on_a_swarm_worker_through_nginx(stack, flow_deployment):
    run = last_json(stack.prefect("submit_run.py", flow_deployment, "0"))["id"]
    states = last_json(stack.prefect("wait_runs.py", "300", run, timeout=400))
    assert states[run]["state"] == "COMPLETED", states


def test_a_prefect_upgrade_rolls_start_first_without_a_failed_request(stack):
    api_id, before = service(stack, "api").id, {t["ID"] for t in running_tasks(stack, "api")}
    loop = change_under_load(stack, {"prefect.image": NEXT_PREFECT_IMAGE},
                             f"prefect.image {PREFECT_VERSION} -> {NEXT_PREFECT_VERSION}")
    assert loop.done > 100, loop.done
    assert loop.failures == [], f"{len(loop.failures)} of {loop.done} failed: {loop.failures[:10]}"
    api = service(stack, "api")
    assert api.id == api_id, "the API service was replaced instead of updated"
    assert api.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == NEXT_PREFECT_IMAGE
    assert api.attrs.get("UpdateStatus", {}).get("State") in (None, "completed"), api.attrs.get("UpdateStatus")
    now = running_tasks(stack, "api")
    assert len(now) == 3 and not {t["ID"] for t in now} & before
    assert requests.get(f"{stack.base}/api/admin/version", timeout=10).json() == NEXT_PREFECT_VERSION


def test_a_rotated_password_is_a_new_secret_that_rolls_the_services(stack, flow_deployment):
    env_secret = lambda kind: service(stack, kind).attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretName"]  # noqa: E731
    before = {kind: env_secret(kind) for kind in ("api", "services")}
    loop = change_under_load(stack, {"secrets.rotation": 1}, "secrets.rotation 0 -> 1")
    print(f"[swarm] rotation: failed requests {loop.failures[:5]}")
    assert loop.done > 100
    after = {kind: env_secret(kind) for kind in ("api", "services")}
    assert all(before[k] != after[k] for k in before), (before, after)
    # The old secrets went with the update: only what a service names is left.
    names = {s.name for s in stack.client.secrets.list(filters={"label": f"{STACK_LABEL}=prod"})}
    assert not names & set(before.values()), names
    run = last_json(stack.prefect("submit_run.py", flow_deployment, "0"))["id"]
    assert last_json(stack.prefect("wait_runs.py", "300", run, timeout=400))[run]["state"] == "COMPLETED"


def test_losing_a_node_with_a_replica_reschedules_it_on_the_others(stack, cluster):
    """A worker node holding an API replica dies at once (its Docker engine and every
    container in it), under the request loop against the data node's address."""
    by_node = dict(zip(node_names(stack, running_tasks(stack, "api")), running_tasks(stack, "api")))
    victim = next(n for n in cluster.nodes[1:] if n in by_node)
    loop = RequestLoop(stack.base, threads=CLIENTS, interval=INTERVAL, limit=10**6, seconds=600)
    timings: dict[str, float] = {}

    def lose_node():
        started = time.monotonic()
        cluster.kill_node(victim)
        timings["down"] = cluster.wait_node_status(victim, "down", timeout=120)
        wait_for(lambda: len(running_tasks(stack, "api")) == 3 and victim not in node_names(stack, running_tasks(stack, "api")),
                 timeout=300, interval=0.5, what="three running API replicas on the remaining nodes",
                 detail=lambda: service_logs(stack.client))
        timings["replicas"] = time.monotonic() - started


    loop.during(lose_node, tail=10)
    print(f"\n[swarm] node loss ({victim}): node down after {timings['down']:.1f} s, 3 API replicas running "
          f"again after {timings['replicas']:.1f} s; "
          f"{loop.done} requests, {len(loop.failures)} failed: {loop.failures[:5]}")
    assert loop.done > 100
    # After recovery everything is served again.
    for _ in range(20):
        assert requests.get(f"{stack.base}/api/health", timeout=10).status_code == 200
    assert set(node_names(stack, running_tasks(stack, "api"))) <= set(cluster.nodes) - {victim}
    # nginx on the nodes left still answers; the lost node's address does not.
    assert {node_names(stack, [t])[0] for t in running_tasks(stack, "proxy")} == set(cluster.nodes) - {victim}


def test_destroy_leaves_only_the_kept_postgres_volume(stack, cluster):
    """After the node loss, as an operator does for a node that is gone for good: remove it
    from the swarm. Until then Swarm keeps its tasks, and deleting the overlay networks
    fails with "network ... is in use by task" (seen in one of three runs before this step)."""
    manager = stack.client
    for lost in set(cluster.nodes) - set(cluster.live_nodes()):
        manager.nodes.get(cluster.node_id(lost)).remove(force=True)
    stack.stack.destroy()
    assert manager.services.list(filters={"label": f"{STACK_LABEL}=prod"}) == []
    assert manager.secrets.list(filters={"label": f"{STACK_LABEL}=prod"}) == []
    assert [c.name for c in manager.configs.list()] == []
    assert [n.name for n in manager.networks.list(filters=run_selector(stack.run_id))] == []
    # The provider waits for the tasks it sees on the manager; the other nodes' engines
    # remove theirs as Swarm tells them, moments later.
    for node in cluster.live_nodes():
        client = cluster.client(node)
        left = lambda: [c.name for c in client.containers.list(all=True, filters=run_selector(stack.run_id))]  # noqa: E731
        wait_for(lambda: left() == [], timeout=60, what=f"no container of the stack on {node}", detail=left)
    volumes = sorted(v.name for v in manager.volumes.list(filters=run_selector(stack.run_id)))
    assert volumes == [f"{stack.prefix}-postgres-data"], volumes
