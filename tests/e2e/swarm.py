"""A three-node Docker Swarm on this one machine, for end-to-end tests of Swarm deployments.

Each node is a container of prefect-ha-test/swarm-node:1 (testbed/images/swarm-node/: Debian's
docker.io, dockerd 20.10) running its own Docker engine (Docker-in-Docker), answering on
tcp://<node ip>:2375 (plain TCP, no TLS: test-only) and keeping its state in its own volume at
/var/lib/docker (overlay2 on the host's filesystem). The nodes share a user-defined bridge
network on the host engine; node 1 is the only manager (and carries the node label
prefect-ha.data=true), the others are workers. Images are not pulled (there is no registry):
`Swarm.start` copies the given images from the host engine into every node, one
`docker save` tarball of all of them (so shared layers travel once) loaded into each node.

    bed = Swarm.start(client, images=["prefect-ha-test/nginx:1.22"])
    bed.manager().services.create(...)
    bed.kill_node(bed.nodes[2])             # power failure of node 3
    bed.wait_node_status(bed.nodes[2], "down", timeout=60)
    bed.tear_down()

Everything the bed makes on the host engine (node containers, their volumes, the network)
carries the label SWARM_LABEL=<swarm name>; `sweep_leftovers` removes whatever a crashed run
left. (The run label of testbed/run_label.py is not used here: a swarm outlives no run, and the
program's own objects live inside the nodes, which go with them.)

What this machine allows, and what it does not (tests/e2e/test_swarm_bed.py checks both):
  * `--privileged` fails here: the host's dockerd runs without CAP_SYS_RESOURCE in its bounding
    set, and runc refuses with "unable to apply caps: operation not permitted". The nodes then
    run with every other capability, seccomp/AppArmor unconfined, /proc unmasked and all devices
    allowed (NODE_SECURITY_FALLBACK); the image's entrypoint remounts /sys and the cgroup
    hierarchies read-write. Where --privileged works, it is used.
  * The kernel has no IPVS (CONFIG_IP_VS is not set, and there are no modules to load), so
    the swarm's VIP load balancing and its ingress routing mesh do not work: dockerd logs
    "Could not get ipvs family information from the kernel. It is possible that ipvs is not
    enabled in your kernel. Native loadbalancing will not work until this is fixed."
    Overlay networks (VXLAN), `tasks.<service>` DNS, endpoint_mode dnsrr and published ports in
    mode=host work. `has_ipvs()` says which case a bed is in.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest

from harness import REPO
from testbed import wait_for

NODE_IMAGE = "prefect-ha-test/swarm-node:1"
NODE_CONTEXT = REPO / "testbed" / "images" / "swarm-node"
BASE_IMAGE = "prefect-ha-test/base:bookworm"
# The label testbed/build_images.sh puts on its images: sha256 of the build inputs.
INPUTS_LABEL = "prefect-ha-test.inputs"
# Bump when the way the node image is built changes in a way its build context does not show.
RECIPE_VERSION = 1
# On every container, volume and network a swarm test bed makes on the host engine: its name.
SWARM_LABEL = "prefect-ha-test.swarm"
# The node label the bed puts on the data node (node 1, the manager the program talks to); the
# program places its data stores by DOCKER_HOST, not by this label, which marks the node for people.
DATA_LABEL = "prefect-ha.data"
API_PORT = 2375
API_VERSION = "1.41"  # Docker 20.10's; a fixed version spares a /version round trip per client
CACHE = Path(os.environ.get("PREFECT_HA_CACHE", REPO / ".ci" / "cache"))

# How a node container runs when --privileged is refused (see the module docstring): all
# capabilities but the one the host engine lacks, no seccomp/AppArmor/SELinux confinement,
# /proc and /sys not masked, every device allowed; its own cgroup namespace so the nested
# engine's cgroups sit under the node's and go with it.
# (MaskedPaths/ReadonlyPaths empty: what `docker run --security-opt systempaths=unconfined` sends;
# the engine does not take that option over the API, the CLI translates it.)
NODE_SECURITY_FALLBACK = {
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined", "label=disable"],
    "device_cgroup_rules": ["a *:* rwm"],
    "MaskedPaths": [],
    "ReadonlyPaths": [],
}
NODE_SECURITY_PRIVILEGED = {"privileged": True}
_security: dict[str, dict] = {}  # per engine: what node containers run with, found by a probe


def log(message: str) -> None:
    print(f"[swarm {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------------------------------
# the node image

def _context_hash(client: docker.DockerClient) -> str:
    """sha256 of the node image's inputs: the build context (paths, types, modes, contents),
    the base image's id and the recipe version (as testbed/build_images.sh hashes its images)."""
    digest = hashlib.sha256()
    base_id = client.images.get(BASE_IMAGE).id
    digest.update(f"recipe={RECIPE_VERSION} image={NODE_IMAGE} base={base_id}\n".encode())
    for path in sorted(NODE_CONTEXT.rglob("*")):
        kind = "d" if path.is_dir() else "f"
        digest.update(f"{kind} {path.stat().st_mode & 0o7777:o} {path.relative_to(NODE_CONTEXT)}\n".encode())
        if kind == "f":
            digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
    return digest.hexdigest()


def ensure_node_image(client: docker.DockerClient) -> str:
    """Build NODE_IMAGE from testbed/images/swarm-node/ unless an image with the same inputs
    label exists; returns its id. One build at a time per cache (parallel sessions)."""
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{BASE_IMAGE} is missing: run testbed/build_images.sh base first")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".swarm-node-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wanted = _context_hash(client)
        try:
            old = client.images.get(NODE_IMAGE)
        except docker.errors.ImageNotFound:
            old = None
        if old is not None and old.labels.get(INPUTS_LABEL) == wanted:
            log(f"{NODE_IMAGE} is up to date")
            return old.id
        started = time.monotonic()
        try:
            # the legacy builder (as DOCKER_BUILDKIT=0): the API's default for /build
            image, _ = client.images.build(path=str(NODE_CONTEXT), tag=NODE_IMAGE, labels={INPUTS_LABEL: wanted},
                                           rm=True, forcerm=True, pull=False)
        except docker.errors.BuildError as err:
            lines = "".join(chunk.get("stream", "") or chunk.get("error", "") for chunk in err.build_log)
            pytest.fail(f"docker build of {NODE_IMAGE} failed: {err.msg}\n{lines[-4000:]}")
        log(f"built {NODE_IMAGE} in {time.monotonic() - started:.1f} s")
        if old is not None and old.id != image.id:
            try:
                client.images.remove(old.id)
            except docker.errors.APIError:
                pass  # still used by a container: it stays behind as a dangling image
        return image.id


def _node_security(client: docker.DockerClient) -> dict:
    """--privileged if the host engine can start such a container, NODE_SECURITY_FALLBACK if
    it fails the way it does here (caps the engine lacks); probed once per engine."""
    key = client.api.base_url
    if key in _security:
        return _security[key]
    probe = client.containers.create(NODE_IMAGE, entrypoint=["true"], labels={SWARM_LABEL: "probe"},
                                     **NODE_SECURITY_PRIVILEGED)
    try:
        probe.start()
        probe.wait(timeout=60)
        _security[key] = NODE_SECURITY_PRIVILEGED
    except docker.errors.APIError as err:
        if "apply caps" not in str(err):
            raise
        log(f"--privileged is refused by this engine ({err.explanation}); "
            "nodes run with all other capabilities, unconfined")
        _security[key] = NODE_SECURITY_FALLBACK
    finally:
        probe.remove(force=True)
    return _security[key]


# ---------------------------------------------------------------------------------------------
# leftovers

def _sweep(client: docker.DockerClient, selector: dict) -> dict[str, list[str]]:
    left = {"containers": [], "volumes": [], "networks": []}
    for container in client.containers.list(all=True, filters=selector):
        left["containers"].append(container.name)
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
    for volume in client.volumes.list(filters=selector):
        left["volumes"].append(volume.name)
        try:
            volume.remove(force=True)
        except docker.errors.NotFound:
            pass
    for network in client.networks.list(filters=selector):
        left["networks"].append(network.name)
        try:
            network.remove()
        except docker.errors.NotFound:
            pass
    return left


def sweep_leftovers(client: docker.DockerClient) -> dict[str, list[str]]:
    """Remove every container, volume and network of any swarm test bed (the SWARM_LABEL label),
    e.g. after a crashed run; returns the names found, by kind. It also removes the beds of
    other sessions running now: call it when none runs."""
    return _sweep(client, {"label": SWARM_LABEL})


# ---------------------------------------------------------------------------------------------

def _ip(container) -> str:
    container.reload()
    networks = container.attrs["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["IPAddress"]


def _node_client(ip: str, timeout: int = 120) -> docker.DockerClient:
    return docker.DockerClient(base_url=f"tcp://{ip}:{API_PORT}", version=API_VERSION, timeout=timeout)


def _answers(client: docker.DockerClient) -> bool:
    try:
        return client.ping()
    except (docker.errors.DockerException, OSError):  # requests' errors are OSErrors
        return False


@dataclass
class Swarm:
    """A running swarm test bed. ``nodes`` are the node container names (node 1 first, the
    manager), ``ips`` their addresses on the bed's bridge network, ``timings`` what start()
    measured (seconds; image_bytes in bytes)."""

    host: docker.DockerClient
    name: str
    nodes: list[str]
    ips: dict[str, str]
    network: str
    volumes: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)  # nodes killed or with their engine stopped
    _clients: dict[str, docker.DockerClient] = field(default_factory=dict, repr=False)
    _ids: dict[str, str] = field(default_factory=dict, repr=False)

    # -- start -----------------------------------------------------------------------------------
    @classmethod
    def start(cls, client: docker.DockerClient, name: str = "prefect-ha-swarm", nodes: int = 3,
              images: list[str] | tuple[str, ...] = ()) -> "Swarm":
        """Start ``nodes`` node containers <name>-1..N, load ``images`` into each, form the swarm
        (node 1 the manager, the rest workers), label node 1 prefect-ha.data=true, and wait until
        the manager lists every node Ready. Leftovers of an earlier bed of this name go first."""
        started = time.monotonic()
        build_started = time.monotonic()
        ensure_node_image(client)
        build_seconds = time.monotonic() - build_started
        for image in images:
            client.images.get(image)  # raises with the name if it is missing
        selector = {"label": f"{SWARM_LABEL}={name}"}
        left = _sweep(client, selector)
        if any(left.values()):
            log(f"removed leftovers of an earlier {name}: {left}")
        labels = {SWARM_LABEL: name}
        network = client.networks.create(name, driver="bridge", labels=labels)
        names = [f"{name}-{i}" for i in range(1, nodes + 1)]
        bed = cls(client, name, names, {}, network.name, [f"{n}-docker" for n in names])
        bed.timings["node_image_build"] = build_seconds
        try:
            bed._start_nodes(labels)
            bed._load_images(list(images))
            bed._form_swarm()
        except BaseException:
            for node in bed.nodes:
                try:
                    log(f"{node} log tail:\n{client.containers.get(node).logs(tail=30).decode(errors='replace')}")
                except docker.errors.APIError:
                    pass
            bed.tear_down()
            raise
        bed.timings["total"] = time.monotonic() - started
        log(f"{name}: {nodes} nodes ready in {bed.timings['total']:.1f} s "
            f"(node image {build_seconds:.1f} s, engines up {bed.timings['engines_up']:.1f} s, "
            f"images {bed.timings['image_load']:.1f} s, swarm formed {bed.timings['swarm_formation']:.1f} s)")
        return bed

    def _start_nodes(self, labels: dict) -> None:
        security = _node_security(self.host)
        started = time.monotonic()
        api = self.host.api
        for node, volume in zip(self.nodes, self.volumes):
            self.host.volumes.create(volume, labels=labels)
            options = {k: v for k, v in security.items() if k[0].islower()}
            host_config = api.create_host_config(binds={volume: {"bind": "/var/lib/docker", "mode": "rw"}},
                                                 network_mode=self.network, cgroupns="private", **options)
            host_config.update({k: v for k, v in security.items() if k[0].isupper()})  # raw HostConfig fields
            made = api.create_container(NODE_IMAGE, name=node, hostname=node, labels=labels, host_config=host_config)
            api.start(made["Id"])
        for node in self.nodes:
            self.ips[node] = _ip(self.host.containers.get(node))
        for node in self.nodes:
            wait_for(lambda: _answers(self.client(node)), timeout=90, interval=0.2,
                     what=f"the engine of {node} to answer on tcp://{self.ips[node]}:{API_PORT}",
                     detail=lambda: self._node_log(node))
        self.timings["engines_up"] = time.monotonic() - started

    def _node_log(self, node: str, tail: int = 30) -> str:
        try:
            container = self.host.containers.get(node)
            return f"{node} is {container.status}; its log:\n{container.logs(tail=tail).decode(errors='replace')}"
        except docker.errors.APIError as err:
            return f"{node}: {err}"

    def _load_images(self, images: list[str]) -> None:
        """One `docker save` of all ``images`` from the host (shared layers once), loaded into
        every node at the same time."""
        self.timings["image_load"] = 0.0
        if not images:
            return
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="swarm-images-", dir=CACHE) as tmp:
            tarball = Path(tmp) / "images.tar"
            response = self.host.api._get(self.host.api._url("/images/get"), params={"names": images}, stream=True)
            self.host.api._raise_for_status(response)
            with open(tarball, "wb") as out:
                for chunk in response.iter_content(chunk_size=4 << 20):
                    out.write(chunk)
            size = tarball.stat().st_size
            saved = time.monotonic() - started
            log(f"saved {len(images)} images ({size / 1e6:.0f} MB) in {saved:.1f} s")
            errors: dict[str, BaseException] = {}

            def load(node: str) -> None:
                began = time.monotonic()
                try:
                    with open(tarball, "rb") as data:
                        _node_client(self.ips[node], timeout=900).images.load(data)
                except BaseException as err:  # noqa: BLE001 reported below
                    errors[node] = err
                    return
                self.timings[f"image_load:{node}"] = time.monotonic() - began
                log(f"{node}: loaded {size / 1e6:.0f} MB in {self.timings[f'image_load:{node}']:.1f} s")

            threads = [threading.Thread(target=load, args=(node,)) for node in self.nodes]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                pytest.fail(f"loading {images} into the nodes failed: {errors}")
        self.timings["image_bytes"] = size
        self.timings["image_save"] = saved
        self.timings["image_load"] = time.monotonic() - started
        for node in self.nodes:
            present = {tag for image in self.client(node).images.list() for tag in image.tags}
            missing = sorted(set(images) - present)
            assert not missing, f"{node} lacks {missing} after the load"

    def _form_swarm(self) -> None:
        started = time.monotonic()
        first = self.nodes[0]
        manager = self.manager()
        manager.swarm.init(advertise_addr=self.ips[first], listen_addr="0.0.0.0:2377")
        manager.swarm.reload()
        token = manager.swarm.attrs["JoinTokens"]["Worker"]
        for node in self.nodes[1:]:
            self.client(node).swarm.join(remote_addrs=[f"{self.ips[first]}:2377"], join_token=token,
                                         listen_addr="0.0.0.0:2377", advertise_addr=self.ips[node])

        def all_ready():
            listed = {n.attrs["Description"]["Hostname"]: n for n in manager.nodes.list()}
            ready = [h for h, n in listed.items() if n.attrs["Status"]["State"] == "ready"]
            if sorted(ready) == sorted(self.nodes):
                self._ids = {h: n.id for h, n in listed.items()}
                return True
            return False

        wait_for(all_ready, timeout=120, interval=0.2, what=f"{self.nodes} all Ready on the manager",
                 detail=lambda: self.node_states())
        data_node = manager.nodes.get(self._ids[first])
        spec = data_node.attrs["Spec"]
        spec["Labels"] = {**spec.get("Labels", {}), DATA_LABEL: "true"}
        data_node.update(spec)
        self.timings["swarm_formation"] = time.monotonic() - started

    # -- access ----------------------------------------------------------------------------------
    @property
    def manager_host(self) -> str:
        """DOCKER_HOST of the manager (node 1): tcp://IP:2375."""
        return f"tcp://{self.ips[self.nodes[0]]}:{API_PORT}"

    def client(self, node: str) -> docker.DockerClient:
        """A client of the node's engine (tcp://IP:2375)."""
        if node not in self._clients:
            self._clients[node] = _node_client(self.ips[node])
        return self._clients[node]

    def manager(self) -> docker.DockerClient:
        """The client of node 1, the manager."""
        return self.client(self.nodes[0])

    def node_id(self, node: str) -> str:
        """The swarm node id of the node container ``node`` (its hostname)."""
        if node not in self._ids:
            self._ids.update({n.attrs["Description"]["Hostname"]: n.id for n in self.manager().nodes.list()})
        return self._ids[node]

    def node_name(self, node_id: str) -> str:
        """The node container name of a swarm node id (e.g. a task's NodeID)."""
        return next(name for name in self.nodes if self.node_id(name) == node_id)

    def node_states(self) -> dict[str, str]:
        """hostname -> Status.State (ready, down, unknown, disconnected) as the manager sees it."""
        return {n.attrs["Description"]["Hostname"]: n.attrs["Status"]["State"] for n in self.manager().nodes.list()}

    def live_nodes(self) -> list[str]:
        """The nodes not killed and whose engine was not stopped."""
        return [n for n in self.nodes if n not in self.down]

    def has_ipvs(self, node: str | None = None) -> bool:
        """Whether the nodes' kernel has IPVS, which VIP load balancing and the routing mesh need."""
        result = self.host.containers.get(node or self.nodes[0]).exec_run(["test", "-e", "/proc/net/ip_vs"])
        return result.exit_code == 0

    # -- faults ----------------------------------------------------------------------------------
    def kill_node(self, node: str) -> None:
        """Abrupt node loss, as on a power failure: `docker kill` of the node container, so its
        engine and every container in it die at once (SIGKILL to the node's PID 1 takes its whole
        PID namespace) and its address disappears from the network; nothing tells the manager,
        which notices by missed heartbeats. Killing node 1 loses the only manager (and the swarm's
        control plane with it)."""
        self.host.containers.get(node).kill()
        self.down.add(node)
        self._clients.pop(node, None)

    def stop_engine(self, node: str, timeout: float = 90) -> float:
        """A clean engine stop, as `systemctl stop docker` on a node: SIGTERM to the node's dockerd,
        which stops its containers and leaves; the node container and its address stay (its
        ports then refuse connections instead of timing out). Waits until the engine's API stops
        answering; returns the seconds that took. `start_engine` brings it back."""
        started = time.monotonic()
        result = self.host.containers.get(node).exec_run(["/usr/local/bin/stop-dockerd.sh"],
                                                         environment={"STOP_WAIT": str(int(timeout))})
        assert result.exit_code == 0, f"stopping the engine of {node}: {result.output.decode(errors='replace')}"
        wait_for(lambda: not _answers(self.client(node)), timeout=timeout, interval=0.2,
                 what=f"the engine of {node} to stop answering")
        self.down.add(node)
        return time.monotonic() - started

    def start_engine(self, node: str, timeout: float = 90) -> float:
        """Start the node's dockerd again after `stop_engine` (it rejoins the swarm by itself);
        returns the seconds until its API answers."""
        started = time.monotonic()
        result = self.host.containers.get(node).exec_run(["/usr/local/bin/start-dockerd.sh"])
        assert result.exit_code == 0, f"starting the engine of {node}: {result.output.decode(errors='replace')}"
        wait_for(lambda: _answers(self.client(node)), timeout=timeout, interval=0.2,
                 what=f"the engine of {node} to answer again", detail=lambda: self._node_log(node))
        self.down.discard(node)
        return time.monotonic() - started

    def wait_node_status(self, node: str, status: str, timeout: float = 120) -> float:
        """Wait until the manager reports ``node`` as ``status`` ("down" or "ready"); returns the
        seconds waited."""
        assert status in ("down", "ready"), status
        started = time.monotonic()
        node_id = self.node_id(node)
        wait_for(lambda: self.manager().nodes.get(node_id).attrs["Status"]["State"] == status,
                 timeout=timeout, interval=0.2, what=f"the manager to report {node} {status}",
                 detail=lambda: f"node states {self.node_states()}")
        return time.monotonic() - started

    # -- teardown --------------------------------------------------------------------------------
    def tear_down(self) -> dict[str, list[str]]:
        """Remove the node containers (forced), their volumes and the network; safe to call
        again. Returns what it found, by kind."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        return _sweep(self.host, {"label": f"{SWARM_LABEL}={self.name}"})
