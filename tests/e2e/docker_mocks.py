"""A test double for the pulumi-docker provider: Pulumi mocks that create the Docker objects for real.

The Pulumi CLI and the docker provider plugin cannot be installed here, so the
real program runs under ``pulumi.runtime.set_mocks`` and this class's
``new_resource`` does what the provider would, through the Docker SDK:

- ``docker:index/network:Network`` and ``docker:index/volume:Volume``: created
  with their names and labels (an existing volume is reused, as `docker volume
  create` does).
- ``docker:index/container:Container``: created with image, command, env,
  labels, log options, restart policy, healthcheck, published ports, named
  volumes and network aliases; ``uploads`` are copied in before start. With
  ``wait`` it blocks until Docker reports the container healthy; with
  ``attach`` it blocks until the container exits and reports the real
  ``exitCode``.
- ``random:index/randomPassword:RandomPassword``: a really random password from
  the program's own length and special-character set, drawn until it holds at
  least one character that percent-encoding changes, and its bcrypt hash.
- ``tls:index/*``: real keys and certificates (tests/tls_mocks.py), so nginx
  serves a genuinely generated CA-signed certificate.

The Pulumi engine registers a resource only after everything it depends on has
returned from here, so containers start in the program's own dependency order;
nothing in the tests sequences them.

Where this differs from pulumi-docker (also in the README's testing section):
- ``wait`` fails as soon as Docker reports ``unhealthy`` or the container
  exits, instead of burning the whole ``wait_timeout``.
- No update or replace: every run creates; ``destroy()`` removes in reverse
  order and honours ``retain_on_delete`` from the recorded registrations.
- Only the container arguments the program uses are mapped; an unknown one
  raises, so a new argument cannot be silently ignored.
"""

from __future__ import annotations

import io
import secrets
import string
import tarfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import bcrypt
import docker
import pulumi
from docker.types import LogConfig

from harness import Run, StackMocks, _unwrap
from tls_mocks import tls_state

TEST_LABEL = "prefect-ha-test.run"
TLS_TYPES = (
    "tls:index/privateKey:PrivateKey",
    "tls:index/selfSignedCert:SelfSignedCert",
    "tls:index/certRequest:CertRequest",
    "tls:index/locallySignedCert:LocallySignedCert",
)

# Container inputs this double maps to Docker; anything else is an error.
HANDLED_CONTAINER_INPUTS = {
    "name", "image", "command", "envs", "labels", "logDriver", "logOpts", "restart", "healthcheck",
    "ports", "volumes", "networksAdvanced", "uploads", "wait", "waitTimeout", "attach", "mustRun",
    "rm", "logs", "securityOpts", "capabilities", "readOnly", "tmpfs", "privileged",
}


def seconds(go: str) -> float:
    """A Go duration as the program writes it ("1m30s", "5s") in seconds."""
    total, number = 0.0, ""
    units = {"h": 3600, "m": 60, "s": 1}
    for char in go:
        if char.isdigit() or char == ".":
            number += char
        else:
            total += float(number) * units[char]
            number = ""
    return total


@dataclass
class Created:
    kind: str  # container | network | volume
    docker_id: str
    name: str
    resource_name: str
    at: float = field(default_factory=time.time)


class DockerMocks(StackMocks):
    def __init__(self, run_id: str, client: docker.DockerClient | None = None, tamper=None):
        super().__init__()
        self.run_id = run_id
        self.client = client or docker.from_env(timeout=120)
        self.created: list[Created] = []
        self.passwords: list[str] = []
        self.attach_logs: dict[str, str] = {}
        self._lock = threading.Lock()
        # tamper(container_name, create_kwargs) may alter a container's creation in a
        # test that needs a fault injected; the shipped program never sees it.
        self.tamper = tamper

    # -- Pulumi mocks interface ------------------------------------------------
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        handler = {
            "random:index/randomPassword:RandomPassword": self._password,
            **{typ: self._tls for typ in TLS_TYPES},
            "docker:index/network:Network": self._network,
            "docker:index/volume:Volume": self._volume,
            "docker:index/container:Container": self._container,
        }.get(args.typ)
        if handler is None:
            return f"{args.name}-id", dict(args.inputs)
        # Secret inputs arrive wrapped; the provider would see plain values.
        args.inputs = _unwrap(args.inputs)
        return handler(args)

    # -- resources -----------------------------------------------------------------
    def _record(self, kind: str, docker_id: str, name: str, resource_name: str) -> None:
        with self._lock:
            self.created.append(Created(kind, docker_id, name, resource_name))

    def _labels(self, labels: list[dict] | None) -> dict[str, str]:
        found = {item["label"]: item["value"] for item in (labels or [])}
        found[TEST_LABEL] = self.run_id
        return found

    def _password(self, args):
        inputs = args.inputs
        specials = inputs.get("overrideSpecial") or "!@#$%&*()-_=+[]{}<>:?"
        alphabet = string.ascii_letters + string.digits + (specials if inputs.get("special", True) else "")
        length = int(inputs["length"])
        min_special = int(inputs.get("minSpecial") or 0)
        while True:
            candidate = "".join(secrets.choice(alphabet) for _ in range(length))
            if sum(c in specials for c in candidate) >= min_special and quote(candidate, safe="") != candidate:
                break
        self.passwords.append(candidate)
        # Go's bcrypt, as the provider uses, writes $2a$; nginx's crypt() reads both.
        hashed = bcrypt.hashpw(candidate.encode(), bcrypt.gensalt(rounds=10, prefix=b"2a")).decode()
        return f"{args.name}-id", {**inputs, "result": candidate, "bcryptHash": hashed}

    def _tls(self, args):
        return f"{args.name}-id", tls_state(args.typ, args.inputs)

    def _network(self, args):
        inputs = args.inputs
        network = self.client.networks.create(
            inputs["name"], driver=inputs.get("driver") or "bridge", labels=self._labels(inputs.get("labels")),
            internal=bool(inputs.get("internal")), check_duplicate=True,
        )
        self._record("network", network.id, inputs["name"], args.name)
        return network.id, {**inputs, "name": inputs["name"]}

    def _volume(self, args):
        inputs = args.inputs
        volume = self.client.volumes.create(inputs["name"], labels=self._labels(inputs.get("labels")))
        self._record("volume", volume.id, inputs["name"], args.name)
        return volume.id, {**inputs, "name": inputs["name"], "mountpoint": volume.attrs.get("Mountpoint", "")}

    def _container(self, args):
        inputs = args.inputs
        unknown = set(inputs) - HANDLED_CONTAINER_INPUTS
        if unknown:
            raise NotImplementedError(f"{args.name}: the Docker test double does not map {sorted(unknown)}")
        api = self.client.api
        name = inputs["name"]
        networks = inputs.get("networksAdvanced") or []
        first, rest = (networks[0], networks[1:]) if networks else (None, [])
        caps = inputs.get("capabilities") or {}
        host_config = api.create_host_config(
            restart_policy={"Name": inputs.get("restart") or "no"},
            log_config=LogConfig(type=inputs.get("logDriver") or "json-file", config=inputs.get("logOpts") or {}),
            # Numbers come back from the engine's wire format as floats.
            port_bindings={f"{int(p['internal'])}/tcp": ("0.0.0.0", int(p["external"])) for p in inputs.get("ports") or []},
            binds={
                (v.get("volumeName") or v["hostPath"]): {
                    "bind": v["containerPath"], "mode": "ro" if v.get("readOnly") else "rw",
                }
                for v in inputs.get("volumes") or []
            },
            network_mode=first["name"] if first else None,
            security_opt=inputs.get("securityOpts") or None,
            cap_drop=caps.get("drops") or None,
            cap_add=caps.get("adds") or None,
            read_only=bool(inputs.get("readOnly")),
            tmpfs=inputs.get("tmpfs") or None,
            privileged=bool(inputs.get("privileged")),
        )
        hc = inputs.get("healthcheck")
        kwargs: dict[str, Any] = dict(
            image=inputs["image"],
            command=inputs.get("command"),
            name=name,
            environment=inputs.get("envs") or [],
            labels=self._labels(inputs.get("labels")),
            host_config=host_config,
            ports=[int(p["internal"]) for p in inputs.get("ports") or []],
            healthcheck=None if not hc else {
                "test": hc["tests"],
                "interval": int(seconds(hc.get("interval", "0s")) * 1e9),
                "timeout": int(seconds(hc.get("timeout", "0s")) * 1e9),
                "retries": int(hc.get("retries", 0)),
                "start_period": int(seconds(hc.get("startPeriod", "0s")) * 1e9),
            },
            networking_config=api.create_networking_config(
                {first["name"]: api.create_endpoint_config(aliases=first.get("aliases") or None)}
            ) if first else None,
        )
        if self.tamper:
            self.tamper(name, kwargs)
        container_id = api.create_container(**kwargs)["Id"]
        self._record("container", container_id, name, args.name)
        for extra in rest:
            api.connect_container_to_network(container_id, extra["name"], aliases=extra.get("aliases"))
        for upload in inputs.get("uploads") or []:
            api.put_archive(container_id, "/", _tar(upload["file"], upload["content"], upload.get("executable")))
        api.start(container_id)

        state = dict(inputs)
        timeout = float(inputs.get("waitTimeout") or 60)
        if inputs.get("attach"):
            result = api.wait(container_id, timeout=timeout)
            state["exitCode"] = result["StatusCode"]
            if inputs.get("logs"):
                self.attach_logs[name] = api.logs(container_id).decode(errors="replace")
        elif inputs.get("wait"):
            self._wait_healthy(container_id, name, timeout)
        return container_id, state

    def _wait_healthy(self, container_id: str, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            state = self.client.api.inspect_container(container_id)["State"]
            health = (state.get("Health") or {}).get("Status")
            if health == "healthy":
                return
            if health == "unhealthy" or state["Status"] in ("exited", "dead"):
                logs = self.client.api.logs(container_id, tail=40).decode(errors="replace")
                raise RuntimeError(f"container {name} is {health or state['Status']}; last logs:\n{logs}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"container {name} not healthy after {timeout:.0f} s (health: {health})")
            time.sleep(0.25)

    # -- teardown ----------------------------------------------------------------------
    def destroy(self, run: Run | None = None) -> list[str]:
        """What `pulumi destroy` does: remove in reverse creation order, keeping
        volumes the program marked retain_on_delete. Returns the retained names."""
        retained_resources = set()
        if run is not None:
            retained_resources = {r.name for r in run.registrations if r.retain_on_delete}
        retained = []
        for item in reversed(self.created):
            try:
                if item.kind == "container":
                    self.client.api.remove_container(item.docker_id, force=True, v=False)
                elif item.kind == "network":
                    self.client.api.remove_network(item.docker_id)
                elif item.resource_name in retained_resources:
                    retained.append(item.name)
                else:
                    self.client.api.remove_volume(item.name, force=True)
            except docker.errors.NotFound:
                pass
        self.created.clear()
        return retained


def _tar(path: str, content: str, executable: bool | None) -> bytes:
    """A tar archive holding ``path`` (with its parent directories) for put_archive."""
    buffer = io.BytesIO()
    data = content.encode()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            info = tarfile.TarInfo("/".join(parts[:depth]))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
            tar.addfile(info)
        info = tarfile.TarInfo("/".join(parts))
        info.size, info.mode, info.mtime = len(data), 0o755 if executable else 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def cleanup_by_label(client: docker.DockerClient, run_id: str | None = None) -> dict[str, list[str]]:
    """Remove whatever a test run labelled and left behind; returns what it found."""
    label = TEST_LABEL if run_id is None else f"{TEST_LABEL}={run_id}"
    found: dict[str, list[str]] = {"containers": [], "networks": [], "volumes": []}
    for container in client.containers.list(all=True, filters={"label": label}):
        found["containers"].append(container.name)
        container.remove(force=True)
    for network in client.networks.list(filters={"label": label}):
        found["networks"].append(network.name)
        network.remove()
    for volume in client.volumes.list(filters={"label": label}):
        found["volumes"].append(volume.name)
        volume.remove(force=True)
    return found
