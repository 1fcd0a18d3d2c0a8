"""The swarm test bed itself (tests/e2e/swarm.py): three Docker-in-Docker nodes on this machine
form a swarm whose node labels, overlay networking, published ports and handling of a lost node
are what the Swarm deployment tests build on. The tests run in order on one bed; the last one
kills a node. The figures they print are the bed's costs on this machine.
"""

from __future__ import annotations

import time

import docker
import pytest
import requests

from swarm import DATA_LABEL, NODE_IMAGE, SWARM_LABEL, Swarm
from testbed import IMAGES, wait_for

pytestmark = pytest.mark.timeout(900)

NGINX = IMAGES["proxy.image"]
NAME = "prefect-ha-swarm-bed"  # not the default name: the deployment tests' bed may run at the same time
OVERLAY = "bed-overlay"
WEB = "bed-web"
EDGE = "bed-edge"
MESH_PORT, HOST_PORT = 8080, 8081
IPVS_MISSING = "Could not get ipvs family information from the kernel"


@pytest.fixture(scope="module")
def bed(docker_client):
    made = Swarm.start(docker_client, name=NAME, images=[NGINX])
    t = made.timings
    print(f"\n[swarm bed] node image {t['node_image_build']:.1f} s; engines up {t['engines_up']:.1f} s; "
          f"image save {t['image_save']:.1f} s, {t['image_bytes'] / 1e6:.0f} MB loaded per node in "
          + ", ".join(f"{n} {t[f'image_load:{n}']:.1f} s" for n in made.nodes)
          + f" (all {t['image_load']:.1f} s); swarm formed in {t['swarm_formation']:.1f} s; total {t['total']:.1f} s")
    yield made
    made.tear_down()
    selector = {"label": f"{SWARM_LABEL}={NAME}"}
    left = [c.name for c in docker_client.containers.list(all=True, filters=selector)] + \
        [v.name for v in docker_client.volumes.list(filters=selector)] + \
        [n.name for n in docker_client.networks.list(filters=selector)]
    assert left == [], f"tear_down left {left}"


def running_tasks(service) -> list[dict]:
    return [t for t in service.tasks(filters={"desired-state": "running"}) if t["Status"]["State"] == "running"]


def task_states(service) -> str:
    return "; ".join(f"{t.get('NodeID', '')[:8]} {t['Status']['State']} {t['Status'].get('Err', '')}"
                     for t in service.tasks())


def overlay_address(task: dict) -> str:
    for attachment in task.get("NetworksAttachments", []):
        if attachment["Network"]["Spec"]["Name"] == OVERLAY:
            return attachment["Addresses"][0].split("/")[0]
    raise AssertionError(f"task {task['ID']} has no address on {OVERLAY}: {task.get('NetworksAttachments')}")


@pytest.fixture(scope="module")
def web(bed):
    """An attachable overlay network and a 3-replica nginx service on it, spread over the nodes."""
    manager = bed.manager()
    manager.networks.create(OVERLAY, driver="overlay", attachable=True)
    service = manager.services.create(
        NGINX, name=WEB, networks=[OVERLAY], mode=docker.types.ServiceMode("replicated", replicas=3),
        preferences=[("spread", "node.id")])
    started = time.monotonic()
    wait_for(lambda: len(running_tasks(service)) == 3, timeout=120, interval=0.5,
             what=f"3 running tasks of {WEB}", detail=lambda: task_states(service))
    print(f"\n[swarm bed] {WEB}: 3 tasks running in {time.monotonic() - started:.1f} s")
    return service


@pytest.fixture
def probe(bed, web):
    """A standalone container on node 1 attached to the overlay network, with curl."""
    container = bed.manager().containers.run(NGINX, ["sleep", "600"], network=OVERLAY, detach=True,
                                              name=f"bed-probe-{time.monotonic_ns()}")
    yield container
    container.remove(force=True)


def http_code(container, url: str) -> str:
    result = container.exec_run(["curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", url])
    return result.output.decode(errors="replace").strip()


def answers_over_the_overlay(bed, web, probe) -> dict[str, str]:
    """Resolve tasks.<service> in the probe, expect exactly the running tasks' addresses, and
    return each task's node -> HTTP status curl got from it."""
    addresses = {overlay_address(t): bed.node_name(t["NodeID"]) for t in running_tasks(web)}

    def resolved():
        out = probe.exec_run(["getent", "ahostsv4", f"tasks.{WEB}"]).output.decode()
        return {line.split()[0] for line in out.splitlines() if line.strip()} == set(addresses)

    wait_for(resolved, timeout=60, interval=0.5, what=f"tasks.{WEB} to resolve to {sorted(addresses)}",
             detail=lambda: probe.exec_run(["getent", "ahostsv4", f"tasks.{WEB}"]).output.decode())
    return {f"{node} {address}": http_code(probe, f"http://{address}/") for address, node in addresses.items()}


def test_three_ready_nodes_one_manager_and_the_data_label_on_node_1(bed):
    by_host = {n.attrs["Description"]["Hostname"]: n for n in bed.manager().nodes.list()}
    assert sorted(by_host) == sorted(bed.nodes)
    assert {h: n.attrs["Status"]["State"] for h, n in by_host.items()} == dict.fromkeys(bed.nodes, "ready")
    assert [h for h, n in by_host.items() if n.attrs["Spec"]["Role"] == "manager"] == [bed.nodes[0]]
    assert by_host[bed.nodes[0]].attrs["Spec"]["Labels"] == {DATA_LABEL: "true"}
    assert all(DATA_LABEL not in by_host[h].attrs["Spec"].get("Labels", {}) for h in bed.nodes[1:])
    assert {h: bed.node_id(h) for h in bed.nodes} == {h: n.id for h, n in by_host.items()}
    for node in bed.nodes:  # every node: its own engine, overlay2, in the swarm, with the image
        info = bed.client(node).info()
        assert (info["Name"], info["Driver"], info["Swarm"]["LocalNodeState"]) == (node, "overlay2", "active")
        assert NGINX in {tag for image in bed.client(node).images.list() for tag in image.tags}, node
    assert bed.host.containers.get(bed.nodes[0]).image.tags == [NODE_IMAGE]


def test_an_overlay_network_carries_traffic_between_the_nodes(bed, web, probe):
    tasks = running_tasks(web)
    assert sorted(bed.node_name(t["NodeID"]) for t in tasks) == sorted(bed.nodes), "not one task per node"
    codes = answers_over_the_overlay(bed, web, probe)
    print(f"\n[swarm bed] from {bed.nodes[0]} over {OVERLAY}: {codes}")
    assert sorted(codes.values()) == ["200"] * 3, codes
    assert {key.split()[0] for key in codes} == set(bed.nodes)  # the other two nodes answered too


def test_published_ports_answer_on_every_node(bed):
    """A global nginx service publishing a port in mode=host (each node's own task) and one through
    the ingress routing mesh. The mesh needs IPVS in the kernel; without it (this machine), the
    test holds that it refuses on every node and that the nodes' engines say why."""
    manager = bed.manager()
    ports = docker.types.EndpointSpec(ports={MESH_PORT: 80, HOST_PORT: (80, "tcp", "host")})
    edge = manager.services.create(NGINX, name=EDGE, mode=docker.types.ServiceMode("global"), endpoint_spec=ports)
    try:
        wait_for(lambda: len(running_tasks(edge)) == len(bed.nodes), timeout=120, interval=0.5,
                 what=f"a running {EDGE} task on every node", detail=lambda: task_states(edge))

        def host_mode_answers():
            return all(requests.get(f"http://{ip}:{HOST_PORT}/", timeout=5).status_code == 200
                       for ip in bed.ips.values())

        wait_for(host_mode_answers, timeout=60, interval=0.5,
                 what=f"HTTP 200 on port {HOST_PORT} (mode=host) of every node {bed.ips}")
        if bed.has_ipvs():
            def mesh_answers():
                return all(requests.get(f"http://{ip}:{MESH_PORT}/", timeout=5).status_code == 200
                           for ip in bed.ips.values())

            wait_for(mesh_answers, timeout=60, interval=0.5,
                     what=f"HTTP 200 on port {MESH_PORT} (routing mesh) of every node {bed.ips}")
            print(f"\n[swarm bed] routing mesh answers on {sorted(bed.ips.values())}")
            return
        refused = {}
        for node, ip in bed.ips.items():
            with pytest.raises(requests.ConnectionError) as err:
                requests.get(f"http://{ip}:{MESH_PORT}/", timeout=5)
            refused[node] = type(err.value).__name__
        said = [line for node in bed.nodes
                for line in bed.host.containers.get(node).logs().decode(errors="replace").splitlines()
                if IPVS_MISSING in line]
        assert said, f"the routing mesh refuses, but no node engine logged {IPVS_MISSING!r}"
        print(f"\n[swarm bed] no IPVS in this kernel: the routing mesh refuses on every node {refused}; "
              f"dockerd: {said[0].split('msg=', 1)[-1]}")
    finally:
        edge.remove()


def test_a_killed_worker_is_reported_down_and_its_task_runs_again_elsewhere(bed, web, probe):
    victim = bed.nodes[2]
    assert victim in {bed.node_name(t["NodeID"]) for t in running_tasks(web)}
    started = time.monotonic()
    bed.kill_node(victim)
    down = bed.wait_node_status(victim, "down", timeout=120)

    def three_elsewhere():
        tasks = running_tasks(web)
        return len(tasks) == 3 and victim not in {bed.node_name(t["NodeID"]) for t in tasks}

    wait_for(three_elsewhere, timeout=180, interval=0.5,
             what=f"3 running tasks of {WEB} on the nodes other than {victim}", detail=lambda: task_states(web))
    rescheduled = time.monotonic() - started
    codes = answers_over_the_overlay(bed, web, probe)
    print(f"\n[swarm bed] {victim} killed: reported down after {down:.1f} s, 3 tasks running on "
          f"{sorted(bed.live_nodes())} after {rescheduled:.1f} s; over {OVERLAY}: {codes}")
    assert bed.live_nodes() == bed.nodes[:2]
    assert bed.node_states()[victim] == "down"
    assert sorted(codes.values()) == ["200"] * 3, codes
