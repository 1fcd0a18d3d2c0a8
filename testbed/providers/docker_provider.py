"""Test double of pulumi-docker (v5) as a real provider plugin, backed by the Docker SDK.

Networks, volumes, containers and, on a swarm manager (DOCKER_HOST), services,
secrets and configs are created on the real engine. The
lifecycle follows kreuzwerker/terraform-provider-docker v3.0, which
pulumi-docker bridges (resource_docker_container*.go, resource_docker_network*.go,
resource_docker_volume.go):

- Container: an input change replaces the container unless the provider
  updates it in place (``CONTAINER_UPDATABLE``: restart, maxRetryCount,
  memory, memorySwap, cpuShares through one ContainerUpdate; healthcheck,
  tmpfs and the provider's own flags in the state only). Inputs the schema
  marks Optional+Computed (envs, labels, command, logDriver, securityOpts,
  healthcheck) keep the state's value when left out; sets compare without
  order; unset values equal their zero value. ``wait`` polls once a second
  until healthy for at most ``waitTimeout`` seconds and does not stop early
  on ``unhealthy`` ("container failed to be in healthy state"); ``attach``
  blocks until the exit and Read records ``exitCode``; ``mustRun`` fails a
  container that exited right after start ("container exited immediately").
- Read (refresh) reports what Docker has, spelled as the provider spells it:
  capabilities ``CAP_``-prefixed, healthcheck durations as Go prints them
  (``1m0s``), ports from the bindings sorted by internal port, memory in MB.
  It does not read back envs, labels, volumes, uploads or networksAdvanced.
  A container that must run but does not is removed and dropped from the
  state. The state holds nested blocks with every field (``hostPath: ""``).
- Delete: no stop for ``attach`` containers, else a stop with
  ``destroyGraceSeconds`` (0: kill), then a forced removal with anonymous
  volumes, waiting until it is gone.
- Volume: every input change replaces; Read of a missing volume fails (the
  provider does not drop it); delete is retried while "in use", for 30 s.
  Network: every input change replaces; a missing one is dropped; an overlay
  network on a swarm manager has scope "swarm" (create and Read report Docker's).
- Service (resource_docker_service*.go; the SDK's schema, with healthcheck
  ``tests`` optional and ``capAdds``, is v3.9 or later, where service labels
  update in place, PR #814): only ``name`` is ForceNew among the inputs the
  program uses; every other change is one ServiceUpdate of the whole
  spec (Swarm rolls the tasks per updateConfig); a block's own ForceNew (mode)
  counts only when the block appears or goes, and mode is Optional+Computed.
  The spec is sent as Terraform hands it over: fields of a given block that the
  program leaves out go at their zero value (restartPolicy delay/window 0, not
  Docker's default; stopGracePeriod unset is 0; Healthcheck {} and an empty
  RestartPolicy/Placement/Resources always); an update re-sends Optional+Computed
  values from the state. With ``convergeConfig`` create waits (first after
  convergeConfig.delay, then 5 s, 10 s, 10 s ...) until the running tasks, one
  per slot, equal the replicas; on a timeout or error it deletes the service and
  fails ("Service with ID (<id>) did not converge after <timeout>"). An update
  waits 7 s, then reads UpdateStatus: "completed" ends it; rollback_completed,
  paused and rollback_paused fail with "service rollback completed: <msg>",
  "service update paused: <msg>", "service rollback paused: <msg>"; without a
  status it counts running tasks as create does. A failed update leaves Swarm
  where it rolled back to. Read finds the service by id or name (a missing one
  is dropped) and reads back name, labels, taskSpec, mode, update/rollback
  config and endpointSpec as the provider flattens them: durations in shortDur
  (``1m``, not ``1m0s``), maxFailureRatio with one decimal, a network's ``name``
  as the ID Docker stores (pass network ids: a name differs after every Read),
  tmpfs mode as its permission bits; convergeConfig is kept as given. Delete
  removes the service; only with a stopGracePeriod other than 0s does it wait,
  up to that period per container, for the containers of the tasks not yet shut
  down, then force-removes them ("error on wait for container ..." when one is
  still there); without it, the tasks are shut down after delete returned.
- Secret (name, data base64, labels) and ServiceConfig (name, data base64):
  every change replaces; data must be StdEncoding base64 (Check); Read drops it
  on any inspect error and reads back only the name (and a config's data); a
  delete of one in use or already gone fails.

Differs from the real provider (the README's testing section lists these):
- every object also carries the label ``prefect-ha-test.run`` (from
  ``PREFECT_HA_TEST_RUN``) so a test can sweep up what it made; Read hides it;
- the image must exist locally (no registry here): it is never pulled, and
  ``image`` keeps the reference as written;
- capabilities are normalized to ``CAP_`` names on Read even though this
  machine's Docker 20.10 stores them as written (newer engines normalize);
- no preview-time Create (outputs are unknown in previews);
- only the inputs the program uses are modelled; any other input fails Check;
- services: the run label is also on each task's container (ContainerSpec
  labels), secrets and configs carry it too; Read hides it. A service's env is
  sent in the program's order (the provider builds it from a Go map, in random
  order, so with two or more variables an update may roll the tasks even when
  nothing else changed). The image is never resolved to a digest (the provider
  asks the registry, and keeps the reference when it cannot reach one, as here).
  Read does not wait 2 s first, and a service found by name under a new id keeps
  the old id (the provider adopts the new one). A failed update keeps the old
  state (the bridge records the new inputs with an initialization error; the
  next ``up`` updates again either way). capAdds goes to CapabilityAdd and reads
  back as written: the provider sources read here predate that field. The
  sources read here panic on any tmpfsOptions (issue #563: ``value.(int64)``
  on create, ``Mode.Perm`` method value on Read); the double applies and reads
  tmpfsOptions as intended, so check that against the pinned provider first;
- Secret/ServiceConfig Check: a data value that is not base64 fails with the
  provider's words, but without quoting the value.
"""

from __future__ import annotations

import base64
import io
import os
import re
import struct
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import docker
import requests
from docker.types import LogConfig

# The engine starts this file as a script: its own folder is on sys.path, the test bed's is not.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from plugin import UNKNOWN, Resource, Unsupported, canonical, run  # noqa: E402
from run_label import RUN_ENV, RUN_LABEL as TEST_LABEL, run_labels  # noqa: E402

CONTAINER_INPUTS = frozenset({
    "name", "image", "command", "envs", "labels", "logDriver", "logOpts", "restart", "healthcheck",
    "ports", "volumes", "networksAdvanced", "uploads", "wait", "waitTimeout", "attach", "mustRun",
    "rm", "logs", "securityOpts", "capabilities", "readOnly", "tmpfs", "privileged", "start",
    "destroyGraceSeconds", "maxRetryCount", "memory", "memorySwap", "cpuShares", "cpus",
})
# Applied to the running container (resourceDockerContainerUpdate) or only
# steering what the provider does; every other input replaces.
CONTAINER_UPDATABLE = frozenset({
    "restart", "maxRetryCount", "cpuShares", "memory", "memorySwap",
    "wait", "waitTimeout", "attach", "mustRun", "logs", "start", "destroyGraceSeconds", "rm",
    "healthcheck", "tmpfs",
})
CONTAINER_DEFAULTS = {
    "attach": False, "logs": False, "mustRun": True, "rm": False, "start": True, "wait": False,
    "waitTimeout": 60, "restart": "no", "readOnly": False, "privileged": False, "maxRetryCount": 0,
}


def client() -> docker.DockerClient:
    return docker.from_env(timeout=300)


def test_labels() -> dict[str, str]:
    run_id = os.environ.get(RUN_ENV)
    return run_labels(run_id) if run_id else {}


def label_map(labels: list[dict] | None) -> dict[str, str]:
    return {item["label"]: item["value"] for item in labels or []}


def label_list(labels: dict[str, str], wanted: list[dict] | None = None) -> list[dict]:
    """Labels as the provider keeps them, in the program's order where it gave one."""
    shown = {k: v for k, v in labels.items() if k != TEST_LABEL}
    order = [item["label"] for item in wanted or [] if item["label"] in shown]
    order += sorted(k for k in shown if k not in order)
    return [{"label": k, "value": shown[k]} for k in order]


def docker_capabilities(caps: list[str] | None) -> list[str]:
    """Capabilities as current Docker engines store them and the provider reads
    them back (CAP_CHOWN; ALL stays ALL). The 20.10 engine here keeps what was
    written, so the double normalizes as the newer engines users run do."""
    return [c if c.startswith("CAP_") or c == "ALL" else f"CAP_{c}" for c in caps or []]


def go_seconds(go: str) -> float:
    total, number = 0.0, ""
    units = {"h": 3600, "m": 60, "s": 1}
    for char in go or "0s":
        if char.isdigit() or char == ".":
            number += char
        elif char in units:
            total += float(number or 0) * units[char]
            number = ""
        else:
            raise ValueError(f"not a Go duration: {go!r}")
    return total


def go_duration(nanos: int) -> str:
    """Go's time.Duration.String(), which the provider uses to read durations
    back (1m0s, 1h30m0s, 1.5s, 500ms). Written from Go's rules, not taken from
    the program: the double must not agree with the program by construction."""
    if nanos == 0:
        return "0s"
    sign, n = ("-", -nanos) if nanos < 0 else ("", nanos)
    if n < 1_000_000_000:  # below a second: the largest unit that keeps an integer part
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if n >= size:
                return f"{sign}{_decimal(n, size)}{unit}"
    hours, rest = divmod(n, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = f"{hours}h" if hours else ""
    if hours or minutes:
        text += f"{minutes}m"
    return f"{sign}{text}{_decimal(rest, 1_000_000_000)}s"


def _decimal(value: int, unit: int) -> str:
    whole, fraction = divmod(value, unit)
    if not fraction:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{fraction:0{digits}d}".rstrip("0")


class Network(Resource):
    token = "docker:index/network:Network"
    inputs = frozenset({"name", "driver", "internal", "labels", "attachable", "options", "ipv6"})
    defaults = {"internal": False, "attachable": False, "ipv6": False}
    computed = frozenset({"driver", "options", "internal"})
    sets = frozenset({"labels"})

    def create(self, news, preview, timeout):
        net = client().networks.create(
            news["name"], driver=news.get("driver") or "bridge", internal=bool(news.get("internal")),
            attachable=bool(news.get("attachable")), options=news.get("options") or None,
            labels={**label_map(news.get("labels")), **test_labels()}, check_duplicate=True,
        )
        # Scope as Docker reports it: "local", or "swarm" for an overlay network on a swarm manager.
        return net.id, {**news, "driver": news.get("driver") or "bridge", "scope": net.attrs.get("Scope") or "local"}

    def read(self, id_, state):
        try:
            attrs = client().api.inspect_network(id_)
        except docker.errors.NotFound:
            return None
        return {**state, "name": attrs["Name"], "driver": attrs["Driver"], "internal": attrs["Internal"],
                "attachable": attrs["Attachable"], "scope": attrs.get("Scope") or "local",
                "labels": label_list(attrs.get("Labels") or {}, state.get("labels"))}

    def delete(self, id_, state, timeout):
        # As the provider: retried while the network "has active endpoints", for 30 s.
        deadline = time.monotonic() + 30
        while True:
            try:
                client().api.remove_network(id_)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as err:
                if "active endpoints" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(1)


class Volume(Resource):
    token = "docker:index/volume:Volume"
    inputs = frozenset({"name", "driver", "driverOpts", "labels"})
    computed = frozenset({"name", "driver"})
    sets = frozenset({"labels"})

    def create(self, news, preview, timeout):
        # `docker volume create` of an existing name returns that volume: its data stays.
        vol = client().volumes.create(news["name"], driver=news.get("driver") or "local",
                                      driver_opts=news.get("driverOpts") or None,
                                      labels={**label_map(news.get("labels")), **test_labels()})
        return vol.name, {**news, "driver": vol.attrs["Driver"], "mountpoint": vol.attrs.get("Mountpoint", "")}

    def read(self, id_, state):
        try:
            attrs = client().api.inspect_volume(id_)
        except docker.errors.NotFound as err:
            # As the provider (v3.0): a missing volume fails the refresh, it is not dropped.
            raise RuntimeError(f"Unable to inspect volume: {err.explanation or err}") from None
        return {**state, "name": attrs["Name"], "driver": attrs["Driver"], "mountpoint": attrs["Mountpoint"],
                "driverOpts": dict(attrs.get("Options") or {}),
                "labels": label_list(attrs.get("Labels") or {}, state.get("labels"))}

    def delete(self, id_, state, timeout):
        # As the provider: retried while "volume is in use", for 30 s; any other error fails.
        deadline = time.monotonic() + 30
        while True:
            try:
                client().api.remove_volume(id_, force=True)
                return
            except docker.errors.APIError as err:
                if "in use" not in str(err) or time.monotonic() > deadline:
                    raise RuntimeError(f"Unable to remove volume {id_}: {err.explanation or err}") from None
                time.sleep(1)


PORT_DEFAULTS = {"ip": "0.0.0.0", "protocol": "tcp"}
# Nested blocks as the provider's state holds them: every field, unset ones at
# their zero value (so a named-volume mount carries "hostPath": "").
VOLUME_FIELDS = {"containerPath": "", "hostPath": "", "volumeName": "", "fromContainer": "", "readOnly": False}
NETWORK_FIELDS = {"aliases": [], "ipv4Address": "", "ipv6Address": ""}
UPLOAD_FIELDS = {"content": "", "contentBase64": "", "source": "", "sourceHash": "", "executable": False}
HEALTHCHECK_FIELDS = {"interval": "0s", "timeout": "0s", "startPeriod": "0s", "retries": 0}


def _filled(items: list[dict] | None, fields: dict) -> list[dict]:
    return [{**fields, **{k: v for k, v in item.items() if v is not None}} for item in items or []]


class Container(Resource):
    token = "docker:index/container:Container"
    inputs = CONTAINER_INPUTS
    updatable = CONTAINER_UPDATABLE
    defaults = CONTAINER_DEFAULTS
    computed = frozenset({"envs", "labels", "command", "logDriver", "securityOpts", "healthcheck"})
    sets = frozenset({"envs", "labels", "securityOpts", "volumes", "networksAdvanced", "uploads"})

    def check(self, news):
        checked = super().check(news)
        if checked.get("ports"):
            checked["ports"] = _filled(checked["ports"], PORT_DEFAULTS)
        return checked

    def same(self, key, old, new):
        if key == "ports" and isinstance(old, list) and isinstance(new, list):
            # suppressIfPortsDidNotChange...: entries matched by internal port and protocol.
            by = lambda ports: sorted(canonical({**PORT_DEFAULTS, **p}) for p in ports)  # noqa: E731
            return by(old) == by(new)
        if key == "capabilities" and isinstance(old, dict) and isinstance(new, dict):
            return all(sorted(old.get(k) or []) == sorted(new.get(k) or []) for k in ("adds", "drops"))
        if key == "healthcheck" and isinstance(old, dict) and isinstance(new, dict):
            return canonical({**HEALTHCHECK_FIELDS, **old}) == canonical({**HEALTHCHECK_FIELDS, **new})
        return super().same(key, old, new)

    def create(self, news, preview, timeout):
        api = client().api
        name = news["name"]
        networks = news.get("networksAdvanced") or []
        first, rest = (networks[0], networks[1:]) if networks else (None, [])
        caps = news.get("capabilities") or {}
        host_config = api.create_host_config(
            auto_remove=bool(news.get("rm")),
            restart_policy=_restart_policy(news),
            log_config=LogConfig(type=news.get("logDriver") or "json-file", config=news.get("logOpts") or {}),
            port_bindings={f"{int(p['internal'])}/{p.get('protocol') or 'tcp'}": (p.get("ip") or "0.0.0.0", int(p["external"]))
                           for p in news.get("ports") or []},
            binds={
                (v.get("volumeName") or v["hostPath"]): {"bind": v["containerPath"], "mode": "ro" if v.get("readOnly") else "rw"}
                for v in news.get("volumes") or []
            },
            network_mode=first["name"] if first else None,
            security_opt=news.get("securityOpts") or None,
            cap_drop=caps.get("drops") or None,
            cap_add=caps.get("adds") or None,
            read_only=bool(news.get("readOnly")),
            tmpfs=news.get("tmpfs") or None,
            privileged=bool(news.get("privileged")),
            mem_limit=int(news["memory"]) * 1024 * 1024 if news.get("memory") else None,
            memswap_limit=int(news["memorySwap"]) * 1024 * 1024 if news.get("memorySwap") else None,
            cpu_shares=int(news["cpuShares"]) if news.get("cpuShares") else None,
            # --cpus; not read back, and not in the provider's in-place update.
            nano_cpus=round(float(news["cpus"]) * 1e9) if news.get("cpus") else None,
        )
        hc = news.get("healthcheck")
        try:
            container_id = api.create_container(
                image=news["image"],
                command=news.get("command") or None,
                name=name,
                environment=news.get("envs") or [],
                labels={**label_map(news.get("labels")), **test_labels()},
                host_config=host_config,
                ports=[(int(p["internal"]), p.get("protocol") or "tcp") for p in news.get("ports") or []],
                healthcheck=None if not hc else {
                    "test": hc["tests"],
                    "interval": int(go_seconds(hc.get("interval", "0s")) * 1e9),
                    "timeout": int(go_seconds(hc.get("timeout", "0s")) * 1e9),
                    "retries": int(hc.get("retries", 0)),
                    "start_period": int(go_seconds(hc.get("startPeriod", "0s")) * 1e9),
                },
                networking_config=api.create_networking_config(
                    {first["name"]: api.create_endpoint_config(aliases=first.get("aliases") or None)}
                ) if first else None,
            )["Id"]
        except docker.errors.APIError as err:
            raise RuntimeError(f"Unable to create container: {err.explanation or err}") from None
        for extra in rest:
            api.connect_container_to_network(container_id, extra["name"], aliases=extra.get("aliases") or None)
        for upload in news.get("uploads") or []:
            api.put_archive(container_id, "/", _tar(upload["file"], upload["content"], upload.get("executable")))
        state = {
            **news,
            "volumes": _filled(news.get("volumes"), VOLUME_FIELDS),
            "networksAdvanced": _filled(news.get("networksAdvanced"), NETWORK_FIELDS),
            "uploads": _filled(news.get("uploads"), UPLOAD_FIELDS),
        }
        if news.get("start", True):
            api.start(container_id)
            if news.get("wait"):
                self._wait_healthy(api, container_id, name, float(news.get("waitTimeout") or 60))
        if news.get("attach"):
            # Blocks until the container exits; Read then records exitCode.
            api.wait(container_id, timeout=max(timeout or 0, 3600))
            if news.get("logs"):
                state["containerLogs"] = api.logs(container_id).decode(errors="replace")
        elif news.get("mustRun", True) and news.get("start", True):
            status = api.inspect_container(container_id)["State"]
            if not status.get("Running"):
                logs = api.logs(container_id, tail=40).decode(errors="replace")
                self._remove(api, container_id, state)
                raise RuntimeError(f"container exited immediately ({name}, exit code {status.get('ExitCode')}):\n{logs}")
        found = self.read(container_id, state)
        if found is None:
            raise RuntimeError(f"container {name} is gone right after its creation")
        return container_id, found

    @staticmethod
    def _wait_healthy(api, container_id: str, name: str, timeout: float) -> None:
        # As the provider: poll once a second until healthy; `unhealthy` is no reason to stop early.
        deadline = time.monotonic() + timeout
        health = None
        while time.monotonic() < deadline:
            health = (api.inspect_container(container_id)["State"].get("Health") or {}).get("Status")
            if health == "healthy":
                return
            time.sleep(1)
        logs = api.logs(container_id, tail=40).decode(errors="replace")
        # The provider's own words first; the rest helps whoever reads the failure.
        raise TimeoutError(f"container failed to be in healthy state ({name} after {timeout:.0f} s, "
                           f"last health: {health}); last logs:\n{logs}")

    def read(self, id_, state):
        api = client().api
        try:
            attrs = api.inspect_container(id_)
        except docker.errors.NotFound:
            return None
        running = attrs["State"].get("Running")
        if not running and state.get("mustRun", True):
            # As the provider: a container that must run but does not is
            # removed and dropped from the state; the next `up` creates it again.
            self._remove(api, id_, state)
            return None
        cfg, host = attrs["Config"], attrs["HostConfig"]
        # Not read back, as the provider: envs, labels, volumes, uploads,
        # networksAdvanced (and image, which the provider keeps as written).
        out = dict(state)
        out["name"] = attrs["Name"].lstrip("/")
        out["rm"] = bool(host.get("AutoRemove"))
        out["restart"] = host["RestartPolicy"]["Name"] or "no"
        out["maxRetryCount"] = host["RestartPolicy"].get("MaximumRetryCount", 0)
        out["readOnly"] = bool(host.get("ReadonlyRootfs"))
        out["privileged"] = bool(host.get("Privileged"))
        out["logDriver"] = host["LogConfig"]["Type"]
        out["logOpts"] = dict(host["LogConfig"].get("Config") or {})
        if host.get("CapAdd") or host.get("CapDrop"):
            out["capabilities"] = {"adds": docker_capabilities(host.get("CapAdd")),
                                   "drops": docker_capabilities(host.get("CapDrop"))}
        out["securityOpts"] = list(host.get("SecurityOpt") or [])
        out["tmpfs"] = dict(host.get("Tmpfs") or {})
        if cfg.get("Cmd") is not None:
            out["command"] = list(cfg["Cmd"])
        hc = cfg.get("Healthcheck")
        if hc:
            out["healthcheck"] = {
                "tests": list(hc.get("Test") or []),
                "interval": go_duration(hc.get("Interval", 0)),
                "timeout": go_duration(hc.get("Timeout", 0)),
                "startPeriod": go_duration(hc.get("StartPeriod", 0)),
                "retries": hc.get("Retries", 0),
            }
        ports = []
        for key, bindings in sorted((attrs["NetworkSettings"].get("Ports") or {}).items(),
                                    key=lambda kv: int(kv[0].split("/")[0])):
            internal, protocol = key.split("/")
            for binding in bindings or []:
                ports.append({"internal": int(internal), "external": int(binding["HostPort"]),
                              "ip": binding.get("HostIp") or "0.0.0.0", "protocol": protocol})
        out["ports"] = ports
        out["memory"] = int((host.get("Memory") or 0) // (1024 * 1024))
        swap = host.get("MemorySwap") or 0
        out["memorySwap"] = int(swap // (1024 * 1024)) if swap > 0 else swap
        out["cpuShares"] = int(host.get("CpuShares") or 0)
        if not running:
            out["exitCode"] = attrs["State"].get("ExitCode")
        return out

    def update(self, id_, olds, news, preview, timeout):
        changed, replaces = self.diff(olds, news)
        if replaces:
            raise Unsupported(f"update asked for replacing inputs {replaces}")
        # As the provider: one ContainerUpdate when a resource setting changed;
        # everything else (healthcheck, tmpfs, the provider's own flags) is
        # kept in the state only. No read-back.
        if {"restart", "maxRetryCount", "cpuShares", "memory", "memorySwap"} & set(changed):
            kwargs: dict[str, Any] = {
                "restart_policy": _restart_policy(news),
                "cpu_shares": int(news.get("cpuShares") or 0),
                "mem_limit": int(news.get("memory") or 0) * 1024 * 1024,
            }
            if news.get("memorySwap"):
                kwargs["memswap_limit"] = int(news["memorySwap"]) * 1024 * 1024
            client().api.update_container(id_, **kwargs)
        return {**olds, **news}

    def delete(self, id_, state, timeout):
        self._remove(client().api, id_, state)

    @staticmethod
    def _remove(api, id_: str, state: dict[str, Any]) -> None:
        try:
            if not state.get("attach"):
                # No grace unless destroyGraceSeconds: the provider kills at once.
                api.stop(id_, timeout=int(state.get("destroyGraceSeconds") or 0))
            api.remove_container(id_, force=True, v=True)
        except docker.errors.NotFound:
            return
        # Wait until it is really gone: a successor may take its name next.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                api.inspect_container(id_)
            except docker.errors.NotFound:
                return
            time.sleep(0.2)


def _restart_policy(values: dict[str, Any]) -> dict[str, Any]:
    return {"Name": values.get("restart") or "no", "MaximumRetryCount": int(values.get("maxRetryCount") or 0)}


def _tar(path: str, content: str, executable: bool | None) -> bytes:
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


# ---------------------------------------------------------------- swarm: services, secrets, configs
#
# From kreuzwerker/terraform-provider-docker, internal/provider/: resource_docker_service.go (schema),
# resource_docker_service_funcs.go (CRUD, convergence, deleteService), resource_docker_service_structures.go
# (createServiceSpec and the flatteners Read uses), resource_docker_secret.go, resource_docker_config.go.

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
          "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")


def go_parse_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds; ValueError where Go returns an error."""
    body, sign = text, 1
    if body[:1] in ("+", "-"):
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    if body == "0":
        return 0
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    total, pos = 0, 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match or (not match.group(1) and not match.group(2)):
            raise ValueError(f'time: invalid duration "{text}"')
        unit, fraction = _UNITS[match.group(3)], match.group(2) or ""
        total += int(match.group(1) or 0) * unit + (int(fraction) * unit // 10 ** len(fraction) if fraction else 0)
        pos = match.end()
    return sign * total


def _lenient_duration(text: Any) -> int:
    # The provider parses with `parsed, _ := time.ParseDuration(...)`: an unset ("") or bad value is 0.
    try:
        return go_parse_duration(text or "")
    except ValueError:
        return 0


def short_duration(nanos: int) -> str:
    """shortDur (resource_docker_service_structures.go): Go's String() without a trailing 0s / 0m."""
    text = go_duration(int(nanos or 0))
    if text.endswith("m0s"):
        text = text[:-2]
    if text.endswith("h0m"):
        text = text[:-2]
    return text


class F:
    """One field of the provider's schema, under its Pulumi name: kind, Optional+Computed, Default."""

    def __init__(self, kind: str, fields: dict[str, "F"] | None = None, *, computed: bool = False,
                 default: Any = None, pattern: str | None = None, duration: bool = False):
        self.kind, self.fields, self.computed, self.default = kind, fields or {}, computed, default
        self.pattern, self.duration = pattern, duration


def _labels_schema(computed: bool = False) -> F:
    return F("blockset", {"label": F("str"), "value": F("str")}, computed=computed)


def _update_schema(actions: str, orders: str) -> F:
    # update_config / rollback_config: defaults and patterns as the schema has them.
    return F("block", {
        "parallelism": F("int", default=1),
        "delay": F("str", default="0s", duration=True),
        "failureAction": F("str", default="pause", pattern=actions),
        "monitor": F("str", default="5s", duration=True),
        "maxFailureRatio": F("str", default="0.0"),
        "order": F("str", default="stop-first", pattern=orders),
    })


def _file_refs(id_key: str, name_key: str) -> F:
    return F("blockset", {id_key: F("str"), name_key: F("str"), "fileName": F("str"),
                          "fileUid": F("str", default="0"), "fileGid": F("str", default="0"),
                          "fileMode": F("int", default=0o444)})


# Only what the program uses; anything else fails Check.
SERVICE_SCHEMA: dict[str, F] = {
    "name": F("str"),
    "labels": _labels_schema(computed=True),
    "mode": F("block", {
        "replicated": F("block", {"replicas": F("int", default=1)}, computed=True),
        "global": F("bool", default=False),
    }, computed=True),
    "updateConfig": _update_schema("^(pause|continue|rollback)$", "^(stop-first|start-first)$"),
    "rollbackConfig": _update_schema("(pause|continue)", "(stop-first|start-first)"),
    "endpointSpec": F("block", {
        "mode": F("str", computed=True, pattern="^(vip|dnsrr)$"),
        "ports": F("blocks", {
            "name": F("str"),
            "protocol": F("str", default="tcp", pattern="^(tcp|udp|sctp)$"),
            "targetPort": F("int"),
            "publishedPort": F("int", computed=True),
            "publishMode": F("str", default="ingress", pattern="^(host|ingress)$"),
        }),
    }, computed=True),
    "convergeConfig": F("block", {"delay": F("str", default="7s", duration=True),
                                  "timeout": F("str", default="3m", duration=True)}),
    "taskSpec": F("block", {
        "containerSpec": F("block", {
            "image": F("str"),
            "commands": F("list"),
            "args": F("list"),
            "env": F("map"),
            "labels": _labels_schema(),
            "hostname": F("str"),
            "user": F("str"),
            "readOnly": F("bool"),
            "stopSignal": F("str"),
            "stopGracePeriod": F("str", computed=True, duration=True),
            "healthcheck": F("block", {
                "tests": F("list"),
                "interval": F("str", default="0s", duration=True),
                "timeout": F("str", default="0s", duration=True),
                "startPeriod": F("str", default="0s", duration=True),
                "retries": F("int", default=0),
            }, computed=True),
            "secrets": _file_refs("secretId", "secretName"),
            "configs": _file_refs("configId", "configName"),
            "mounts": F("blockset", {
                "target": F("str"),
                "source": F("str"),
                "type": F("str", pattern="^(bind|volume|tmpfs)$"),
                "readOnly": F("bool"),
                "tmpfsOptions": F("block", {"sizeBytes": F("int"), "mode": F("int")}),
            }),
            "capAdds": F("set"),
            "capDrops": F("set"),
        }),
        # id, or the deprecated name (the provider warns on it); both hold a network id or name.
        "networksAdvanceds": F("blockset", {"id": F("str"), "name": F("str"), "aliases": F("set")}),
        "placement": F("block", {"constraints": F("set"), "prefs": F("set"), "maxReplicas": F("int")},
                       computed=True),
        "resources": F("block", {"limits": F("block", {"memoryBytes": F("int"), "nanoCpus": F("int")})},
                       computed=True),
        "restartPolicy": F("block", {
            "condition": F("str", pattern="^(none|on-failure|any)$"),
            "delay": F("str", duration=True),
            "maxAttempts": F("int"),
            "window": F("str", duration=True),
        }, computed=True),
        "logDriver": F("block", {"name": F("str"), "options": F("map")}),
        "forceUpdate": F("int", computed=True),
    }),
}
_BLOCKS = ("block", "blocks", "blockset")


def _check_value(field: F, value: Any, path: str) -> Any:
    """Unknown nested inputs fail, a present block gets its defaults, patterns and durations are validated."""
    if value is None or value is UNKNOWN:
        return value
    if field.kind in ("blocks", "blockset"):
        return [_check_value(F("block", field.fields), item, f"{path}[{i}]") for i, item in enumerate(value)]
    if field.kind == "block":
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected an object")
        unknown = sorted(set(value) - set(field.fields))
        if unknown:
            raise Unsupported(f"docker:index/service:Service: the test double does not handle {path}.{unknown}")
        out = {}
        for key, sub in field.fields.items():
            item = value.get(key)
            if item is None:
                item = sub.default
            if item is not None:
                out[key] = _check_value(sub, item, f"{path}.{key}")
        return out
    if field.pattern and isinstance(value, str) and not re.search(field.pattern, value):
        # validateStringMatchesPattern (diag form)
        raise ValueError(f"'{value}' doesn't match the pattern '{field.pattern}'")
    if field.duration and isinstance(value, str):
        try:
            if go_parse_duration(value) < 0:
                raise ValueError(f"{path}: duration must not be negative")
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    return value


def _scalar(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _canon(field: F, value: Any) -> Any:
    """A value as comparable, hashable text: defaults applied, zero values dropped, sets sorted."""
    if value is None:
        value = field.default
    if value is UNKNOWN:
        return "<unknown>"
    if field.kind in _BLOCKS and field.kind != "block":
        items = [_canon(F("block", field.fields), item) for item in value or []]
        return tuple(sorted(items, key=repr) if field.kind == "blockset" else items)
    if field.kind == "block":
        if not value:
            return None
        pairs = ((k, _canon(sub, value.get(k))) for k, sub in field.fields.items())
        return tuple((k, v) for k, v in pairs if v not in (None, (), "", 0, False))
    if field.kind in ("list", "set"):
        items = tuple(_scalar(v) for v in value or [])
        return tuple(sorted(items, key=repr)) if field.kind == "set" else items
    if field.kind == "map":
        return tuple(sorted((k, str(v)) for k, v in (value or {}).items()))
    value = _scalar(value)
    return None if value in ("", 0, False) else value


def _same_field(field: F, old: Any, new: Any) -> bool:
    """The provider's diff for one field: Optional+Computed left out keeps the state; sets without order."""
    if old is UNKNOWN or new is UNKNOWN:
        return False
    if new is None and field.computed:
        return True
    if field.kind == "block":
        if old is None or new is None:  # a block added or removed (its count changes)
            return (old is None) == (new is None)
        return all(_same_field(sub, old.get(k), new.get(k)) for k, sub in field.fields.items())
    if field.kind == "blocks":
        old, new = old or [], new or []
        return len(old) == len(new) and all(
            _same_field(F("block", field.fields), o, n) for o, n in zip(old, new))
    if field.kind in ("blockset", "list", "set", "map"):
        return _canon(field, old) == _canon(field, new)
    old, new = _scalar(old if old is not None else field.default), _scalar(new if new is not None else field.default)
    return old == new or (old in (None, "", 0, False) and new in (None, "", 0, False))


def _merge_computed(field: F, old: Any, new: Any) -> Any:
    """The planned value an update sends: the program's inputs, with left-out Optional+Computed fields
    taken from the state (d.Get on update)."""
    if new is None:
        return old if field.computed else None
    if field.kind == "block" and isinstance(new, dict):
        old = old if isinstance(old, dict) else {}
        merged = {k: _merge_computed(sub, old.get(k), new.get(k)) for k, sub in field.fields.items()}
        return {k: v for k, v in merged.items() if v is not None}
    if field.kind == "blocks" and isinstance(new, list):
        old = old if isinstance(old, list) else []
        return [_merge_computed(F("block", field.fields), old[i] if i < len(old) else None, item)
                for i, item in enumerate(new)]
    return new


def _omitempty(values: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    # Go's `json:",omitempty"`: zero values are not sent; pointer fields (keep) are sent when set.
    return {k: v for k, v in values.items() if k in keep or v not in (None, "", 0, False, [], {})}


def _service_spec(config: dict[str, Any]) -> dict[str, Any]:
    """createServiceSpec: the ServiceSpec the provider sends, with every block's unset fields at their
    zero value as Terraform hands them over (so StopGracePeriod 0, Healthcheck {} and an empty
    RestartPolicy are sent even when the program gives none)."""
    task = config.get("taskSpec") or {}
    cs = task.get("containerSpec") or {}
    hc = cs.get("healthcheck")
    healthcheck = _omitempty({
        "Test": list(hc.get("tests") or []),
        "Interval": _lenient_duration(hc.get("interval")),
        "Timeout": _lenient_duration(hc.get("timeout")),
        "StartPeriod": _lenient_duration(hc.get("startPeriod")),
        "Retries": int(hc.get("retries") or 0),
    }) if hc else {}
    mounts = []
    for m in cs.get("mounts") or []:
        mount = {"Type": m["type"], "Target": m["target"], "Source": m.get("source") or "",
                 "ReadOnly": bool(m.get("readOnly"))}
        tmpfs = m.get("tmpfsOptions")
        if tmpfs:
            mount["TmpfsOptions"] = _omitempty({"SizeBytes": int(tmpfs.get("sizeBytes") or 0),
                                                "Mode": int(tmpfs.get("mode") or 0)})
        mounts.append(_omitempty(mount))

    def refs(items: list[dict] | None, id_key: str, name_key: str, api_id: str, api_name: str) -> list[dict]:
        return [{api_id: r[id_key], api_name: r.get(name_key) or "",
                 "File": {"Name": r["fileName"], "UID": r.get("fileUid", "0"), "GID": r.get("fileGid", "0"),
                          "Mode": int(r.get("fileMode", 0o444))}} for r in items or []]

    container = _omitempty({
        "Image": cs.get("image"),
        "Labels": {**label_map(cs.get("labels")), **test_labels()},
        "Command": list(cs.get("commands") or []),
        "Args": list(cs.get("args") or []),
        "Hostname": cs.get("hostname") or "",
        # The provider builds Env from a Go map (random order); here: the program's order.
        "Env": [f"{k}={v}" for k, v in (cs.get("env") or {}).items()],
        "User": cs.get("user") or "",
        "ReadOnly": bool(cs.get("readOnly")),
        "Mounts": mounts,
        "StopSignal": cs.get("stopSignal") or "",
        "StopGracePeriod": _lenient_duration(cs.get("stopGracePeriod")),
        "Healthcheck": healthcheck,
        "DNSConfig": {},
        "Secrets": refs(cs.get("secrets"), "secretId", "secretName", "SecretID", "SecretName"),
        "Configs": refs(cs.get("configs"), "configId", "configName", "ConfigID", "ConfigName"),
        "Isolation": "default",
        "CapabilityAdd": list(cs.get("capAdds") or []),
        "CapabilityDrop": list(cs.get("capDrops") or []),
    }, keep=("StopGracePeriod", "Healthcheck", "DNSConfig"))
    resources: dict[str, Any] = {}
    limits = (task.get("resources") or {}).get("limits")
    if limits:
        resources["Limits"] = _omitempty({"NanoCPUs": int(limits.get("nanoCpus") or 0),
                                          "MemoryBytes": int(limits.get("memoryBytes") or 0)})
    restart: dict[str, Any] = {}
    rp = task.get("restartPolicy")
    if rp:  # every field of a given block is sent: an unset delay or window is 0, not Docker's default
        restart = {"Condition": rp.get("condition") or "", "Delay": _lenient_duration(rp.get("delay")),
                   "MaxAttempts": int(rp.get("maxAttempts") or 0), "Window": _lenient_duration(rp.get("window"))}
        restart = _omitempty(restart, keep=("Delay", "MaxAttempts", "Window"))
    placement: dict[str, Any] = {}
    pl = task.get("placement")
    if pl:
        placement = _omitempty({
            "Constraints": list(pl.get("constraints") or []),
            "Preferences": [{"Spread": {"SpreadDescriptor": p}} for p in pl.get("prefs") or []],
            "MaxReplicas": int(pl.get("maxReplicas") or 0),
        })
    template: dict[str, Any] = {
        "ContainerSpec": container, "Resources": resources, "RestartPolicy": restart, "Placement": placement,
        "ForceUpdate": int(task.get("forceUpdate") or 0),
        "Networks": [_omitempty({"Target": n.get("id") or n["name"], "Aliases": list(n.get("aliases") or [])})
                     for n in task.get("networksAdvanceds") or []],
    }
    if task.get("logDriver"):
        template["LogDriver"] = _omitempty({"Name": task["logDriver"]["name"],
                                            "Options": dict(task["logDriver"].get("options") or {})})
    spec: dict[str, Any] = {
        "Name": config["name"],
        "Labels": {**label_map(config.get("labels")), **test_labels()},
        "TaskTemplate": _omitempty(template, keep=("ContainerSpec", "Resources", "RestartPolicy", "Placement")),
        "Mode": _service_mode(config.get("mode")),
    }
    for key, api_key in (("updateConfig", "UpdateConfig"), ("rollbackConfig", "RollbackConfig")):
        if config.get(key):
            spec[api_key] = _update_config(config[key])
    endpoint = config.get("endpointSpec") or {}
    spec["EndpointSpec"] = _omitempty({
        "Mode": endpoint.get("mode") or "",
        "Ports": [_omitempty({"Name": p.get("name") or "", "Protocol": p.get("protocol") or "",
                              "TargetPort": int(p["targetPort"]), "PublishedPort": int(p.get("publishedPort") or 0),
                              "PublishMode": p.get("publishMode") or ""}) for p in endpoint.get("ports") or []],
    })
    return spec


def _service_mode(mode: dict[str, Any] | None) -> dict[str, Any]:
    # Left out at create: an empty Mode (Docker's default, 1 replica).
    out: dict[str, Any] = {}
    if mode and mode.get("replicated") is not None:
        out["Replicated"] = {"Replicas": int(mode["replicated"].get("replicas", 1))}
    if mode and mode.get("global"):
        out["Global"] = {}
    return out


def _update_config(cfg: dict[str, Any]) -> dict[str, Any]:
    try:
        ratio = float(cfg.get("maxFailureRatio") or 0)
    except ValueError:
        ratio = 0.0
    return {"Parallelism": int(cfg.get("parallelism") or 0), "Delay": _lenient_duration(cfg.get("delay")),
            "FailureAction": cfg.get("failureAction") or "", "Monitor": _lenient_duration(cfg.get("monitor")),
            "MaxFailureRatio": ratio, "Order": cfg.get("order") or ""}


def _float32_ratio(value: float) -> str:
    # strconv.FormatFloat(float64(float32), 'f', 1, 64)
    return f"{struct.unpack('f', struct.pack('f', float(value or 0)))[0]:.1f}"


def _flatten_update_config(cfg: dict[str, Any] | None) -> dict[str, Any] | None:
    if cfg is None:
        return None
    return {"parallelism": cfg.get("Parallelism", 0), "delay": short_duration(cfg.get("Delay", 0)),
            "failureAction": cfg.get("FailureAction", ""), "monitor": short_duration(cfg.get("Monitor", 0)),
            "maxFailureRatio": _float32_ratio(cfg.get("MaxFailureRatio", 0)), "order": cfg.get("Order", "")}


def _flatten_refs(items: list[dict], api_id: str, api_name: str, id_key: str, name_key: str) -> list[dict]:
    out = []
    for ref in items:
        item = {id_key: ref[api_id]}
        if ref.get(api_name):
            item[name_key] = ref[api_name]
        if ref.get("File") is not None:
            item["fileName"] = ref["File"].get("Name", "")
            if ref["File"].get("UID"):
                item["fileUid"] = ref["File"]["UID"]
            if ref["File"].get("GID"):
                item["fileGid"] = ref["File"]["GID"]
            item["fileMode"] = int(ref["File"].get("Mode", 0))
        out.append(item)
    return out


def _flatten_task_spec(task: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """flattenTaskSpec / flattenContainerSpec, for the fields the program uses."""
    out: dict[str, Any] = {}
    cs = task.get("ContainerSpec")
    if cs is not None:
        c: dict[str, Any] = {}
        if cs.get("Image"):
            c["image"] = cs["Image"]
        shown = label_list(cs.get("Labels") or {}, ((wanted.get("containerSpec") or {}).get("labels")))
        if shown:
            c["labels"] = shown
        for api_key, key in (("Command", "commands"), ("Args", "args"), ("CapabilityAdd", "capAdds"),
                             ("CapabilityDrop", "capDrops")):
            if cs.get(api_key):
                c[key] = list(cs[api_key])
        for api_key, key in (("Hostname", "hostname"), ("User", "user"), ("StopSignal", "stopSignal")):
            if cs.get(api_key):
                c[key] = cs[api_key]
        if cs.get("Env"):
            # mapStringSliceToMap: split on the first "="
            c["env"] = {e.split("=", 1)[0]: (e.split("=", 1)[1] if "=" in e else "") for e in cs["Env"] if e}
        if cs.get("ReadOnly"):
            c["readOnly"] = True
        if cs.get("Mounts"):
            mounts = []
            for m in cs["Mounts"]:
                mount = {"target": m.get("Target", ""), "source": m.get("Source", ""), "type": m.get("Type", ""),
                         "readOnly": bool(m.get("ReadOnly"))}
                if m.get("TmpfsOptions") is not None:
                    mount["tmpfsOptions"] = {"sizeBytes": int(m["TmpfsOptions"].get("SizeBytes", 0)),
                                             "mode": int(m["TmpfsOptions"].get("Mode", 0)) & 0o777}
                mounts.append(mount)
            c["mounts"] = mounts
        if "StopGracePeriod" in cs:
            c["stopGracePeriod"] = short_duration(cs["StopGracePeriod"])
        if cs.get("Healthcheck") is not None:
            h = cs["Healthcheck"]
            c["healthcheck"] = {
                **({"tests": list(h["Test"])} if h.get("Test") else {}),
                "interval": short_duration(h.get("Interval", 0)), "timeout": short_duration(h.get("Timeout", 0)),
                "startPeriod": short_duration(h.get("StartPeriod", 0)), "retries": h.get("Retries", 0),
            }
        if cs.get("Secrets"):
            c["secrets"] = _flatten_refs(cs["Secrets"], "SecretID", "SecretName", "secretId", "secretName")
        if cs.get("Configs"):
            c["configs"] = _flatten_refs(cs["Configs"], "ConfigID", "ConfigName", "configId", "configName")
        out["containerSpec"] = c
    if task.get("Resources") is not None:
        limits = task["Resources"].get("Limits")
        out["resources"] = {"limits": None if limits is None else {
            "nanoCpus": limits.get("NanoCPUs", 0), "memoryBytes": limits.get("MemoryBytes", 0)}}
    if task.get("RestartPolicy") is not None:
        rp = task["RestartPolicy"]
        policy: dict[str, Any] = {}
        if rp.get("Condition"):
            policy["condition"] = rp["Condition"]
        if "Delay" in rp:
            policy["delay"] = short_duration(rp["Delay"])
        if "MaxAttempts" in rp:
            policy["maxAttempts"] = rp["MaxAttempts"]
        if "Window" in rp:
            policy["window"] = short_duration(rp["Window"])
        out["restartPolicy"] = policy
    if task.get("Placement") is not None:
        pl = task["Placement"]
        placement: dict[str, Any] = {"maxReplicas": pl.get("MaxReplicas", 0)}
        if pl.get("Constraints"):
            placement["constraints"] = list(pl["Constraints"])
        if pl.get("Preferences"):
            placement["prefs"] = [p["Spread"]["SpreadDescriptor"] for p in pl["Preferences"] if p.get("Spread")]
        out["placement"] = placement
    out["forceUpdate"] = task.get("ForceUpdate", 0)
    if task.get("Networks"):
        # The engine stores the network's ID as Target, whatever the program gave: "name" reads back as the ID.
        given = "id" if any("id" in n for n in (wanted.get("networksAdvanceds") or [])) else "name"
        out["networksAdvanceds"] = [
            {given: n["Target"], **({"aliases": list(n["Aliases"])} if n.get("Aliases") else {})}
            for n in task["Networks"]]
    if task.get("LogDriver") is not None:
        driver = task["LogDriver"]
        out["logDriver"] = {"name": driver.get("Name", ""),
                            **({"options": dict(driver["Options"])} if driver.get("Options") else {})}
    return out


def _flatten_ports(ports: list[dict] | None) -> list[dict]:
    return [{"name": p.get("Name", ""), "protocol": p.get("Protocol", ""), "targetPort": p.get("TargetPort", 0),
             "publishedPort": p.get("PublishedPort", 0), "publishMode": p.get("PublishMode", "")} for p in ports or []]


def _daemon_error(err: docker.errors.APIError) -> str:
    return f"Error response from daemon: {err.explanation or err}"


# serviceCreatePendingStates
SERVICE_CREATE_PENDING = ["new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting",
                          "creating", "paused"]
# Task states in the order the provider numbers them (numberedStates); unknown ones count 0.
_TASK_STATES = {s: i for i, s in enumerate(
    ["new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running",
     "complete", "shutdown", "failed", "rejected"], start=1)}


def _replicas_running(api, service: dict[str, Any]) -> bool:
    """replicatedConsoleLogUpdater.update: one task per slot (the lowest desired state, then the lowest
    observed state, on a node not down), counted when running; converged when that count == replicas."""
    replicated = (service["Spec"].get("Mode") or {}).get("Replicated")
    if not replicated or replicated.get("Replicas") is None:
        raise RuntimeError("no replica count")
    tasks = api.tasks(filters={"service": service["ID"], "desired-state": "running"})
    active = {n["ID"] for n in api.nodes() if (n.get("Status") or {}).get("State") != "down"}
    by_slot: dict[int, dict] = {}
    for task in tasks:
        desired, observed = _TASK_STATES.get(task.get("DesiredState"), 0), _TASK_STATES.get(task["Status"]["State"], 0)
        if not desired or not observed:
            continue
        slot = task.get("Slot", 0)
        if slot in by_slot:
            held = by_slot[slot]
            held_desired = _TASK_STATES.get(held.get("DesiredState"), 0)
            if held_desired < desired:
                continue
            if held_desired == desired and _TASK_STATES.get(held["Status"]["State"], 0) <= observed:
                continue
        if task.get("NodeID") and task["NodeID"] not in active:
            continue
        by_slot[slot] = task
    running = sum(1 for t in by_slot.values()
                  if _TASK_STATES.get(t.get("DesiredState"), 0) <= _TASK_STATES["running"]
                  and t["Status"]["State"] == "running")
    return running == int(replicated["Replicas"])


def _wait_for_state(refresh, pending: list[str], target: list[str], timeout: float, delay: float) -> None:
    """helper/resource.StateChangeConf.WaitForStateContext with MinTimeout 5 s: sleep Delay, refresh,
    then wait 5 s, 10 s, 10 s, ... between refreshes; Timeout counts from the start (Delay included)."""
    deadline = time.monotonic() + timeout
    time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
    wait, last = 0.1, ""
    while time.monotonic() < deadline:
        last = refresh()
        if last in target:
            return
        if last not in pending:
            raise RuntimeError(f"unexpected state '{last}', wanted target '{', '.join(target)}'. "
                               "last error: %!s(<nil>)")
        wait = min(max(wait * 2, 5.0), 10.0)
        time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
    raise TimeoutError(f"timeout while waiting for state to become '{', '.join(target)}' "
                       f"(last state: '{last}', timeout: {go_duration(int(timeout * 1e9))})")


class Service(Resource):
    token = "docker:index/service:Service"
    inputs = frozenset(SERVICE_SCHEMA)
    # ForceNew in the schema: name (and auth, task_spec...hosts, which the program does not use). A block's
    # own ForceNew (mode) only counts when the block appears or goes, and mode is Optional+Computed.
    updatable = frozenset(SERVICE_SCHEMA) - {"name"}
    computed = frozenset(k for k, f in SERVICE_SCHEMA.items() if f.computed)

    def check(self, news):
        checked = super().check(news)
        out = {k: _check_value(SERVICE_SCHEMA[k], v, k) for k, v in checked.items()}
        mode = out["mode"] if isinstance(out.get("mode"), dict) else {}
        # ConflictsWith (validateConflictingAttributes): global vs replicated, global vs converge_config.
        if mode.get("global") is True and mode.get("replicated") is not None:
            raise ValueError('"mode.0.global": conflicts with mode.0.replicated')
        if mode.get("global") is True and out.get("convergeConfig") is not None:
            raise ValueError('"mode.0.global": conflicts with converge_config')
        return out

    def same(self, key, old, new):
        return _same_field(SERVICE_SCHEMA[key], old, new)

    def create(self, news, preview, timeout):
        api = client().api
        try:
            created = api._result(api._post_json(api._url("/services/create"), data=_service_spec(news)), json=True)
        except docker.errors.APIError as err:
            raise RuntimeError(_daemon_error(err)) from None
        service_id = created["ID"]
        converge = news.get("convergeConfig")
        if converge:
            limit = _lenient_duration(converge.get("timeout"))

            def refresh() -> str:
                return "running" if _replicas_running(api, api.inspect_service(service_id)) else "creating"

            try:
                _wait_for_state(refresh, pending=SERVICE_CREATE_PENDING, target=["running", "complete"],
                                timeout=limit / 1e9, delay=_lenient_duration(converge.get("delay")) / 1e9)
            except Exception as err:
                # As the provider: the service is deleted when it cannot be converged.
                _delete_service(api, service_id, news)
                if isinstance(err, TimeoutError):
                    raise RuntimeError(f"Service with ID ({service_id}) did not converge after "
                                       f"{go_duration(limit)}") from None
                raise
        found = self.read(service_id, news)
        if found is None:
            raise RuntimeError(f"service {news['name']} is gone right after its creation")
        return service_id, found

    def read(self, id_, state):
        api = client().api
        try:
            listed = api.services()
        except docker.errors.APIError as err:
            raise RuntimeError(f"Error fetching service information from Docker: {_daemon_error(err)}") from None
        # fetchDockerService: by id, or by name.
        match = next((s for s in listed if s["ID"] == id_ or s["Spec"].get("Name") == state.get("name")), None)
        if match is None:
            return None
        try:
            service = api.inspect_service(match["ID"])
        except docker.errors.APIError as err:
            raise RuntimeError(f"Error inspecting service {match['ID']}: {_daemon_error(err)}") from None
        spec = service["Spec"]
        out = dict(state)
        out["name"] = spec["Name"]
        out["labels"] = label_list(spec.get("Labels") or {}, state.get("labels"))
        out["taskSpec"] = _flatten_task_spec(spec.get("TaskTemplate") or {}, state.get("taskSpec") or {})
        mode = spec.get("Mode") or {}
        out["mode"] = {"global": "Global" in mode}
        if "Replicated" in mode:
            out["mode"]["replicated"] = {"replicas": mode["Replicated"].get("Replicas")}
        out["updateConfig"] = _flatten_update_config(spec.get("UpdateConfig"))
        out["rollbackConfig"] = _flatten_update_config(spec.get("RollbackConfig"))
        endpoint = service.get("Endpoint") or {}
        if (endpoint.get("Spec") or {}).get("Mode"):
            out["endpointSpec"] = {"mode": endpoint["Spec"]["Mode"], "ports": _flatten_ports(endpoint.get("Ports"))}
        elif (spec.get("EndpointSpec") or {}).get("Mode"):
            out["endpointSpec"] = {"mode": spec["EndpointSpec"]["Mode"],
                                   "ports": _flatten_ports(spec["EndpointSpec"].get("Ports"))}
        else:
            raise RuntimeError(f"Error no endpoint spec for service {match['ID']}")
        return out

    def update(self, id_, olds, news, preview, timeout):
        changed, replaces = self.diff(olds, news)
        if replaces:
            raise Unsupported(f"update asked for replacing inputs {replaces}")
        api = client().api
        try:
            version = api.inspect_service(id_)["Version"]["Index"]
        except docker.errors.APIError as err:
            raise RuntimeError(_daemon_error(err)) from None
        planned = {k: _merge_computed(SERVICE_SCHEMA[k], olds.get(k), news.get(k)) for k in SERVICE_SCHEMA}
        planned = {k: v for k, v in planned.items() if v is not None}
        try:
            api._result(api._post_json(api._url("/services/{0}/update", id_), data=_service_spec(planned),
                                       params={"version": version}), json=True)
        except docker.errors.APIError as err:
            raise RuntimeError(_daemon_error(err)) from None
        converge = news.get("convergeConfig")
        if converge:
            limit = _lenient_duration(converge.get("timeout"))
            try:
                _wait_for_state(lambda: _update_refresh(api, id_), pending=["creating", "updating"],
                                target=["completed"], timeout=limit / 1e9, delay=7.0)
            except TimeoutError:
                raise RuntimeError(f"Service with ID ({id_}) did not converge after {go_duration(limit)}") from None
        found = self.read(id_, {**olds, **planned})
        if found is None:
            raise RuntimeError(f"service {news['name']} is gone right after its update")
        return found

    def delete(self, id_, state, timeout):
        _delete_service(client().api, id_, state)


def _update_refresh(api, service_id: str) -> str:
    """resourceDockerServiceUpdateRefreshFunc, with its error words."""
    service = api.inspect_service(service_id)
    rollback = False
    status = service.get("UpdateStatus")
    if status:
        state, message = status.get("State"), status.get("Message", "")
        if state == "completed":
            return "completed"
        if state == "rollback_started":
            rollback = True
        elif state == "rollback_completed":
            raise RuntimeError(f"service rollback completed: {message}")
        elif state == "paused":
            raise RuntimeError(f"service update paused: {message}")
        elif state == "rollback_paused":
            raise RuntimeError(f"service rollback paused: {message}")
    if _replicas_running(api, service):
        if rollback:
            raise RuntimeError(f"service rollback completed: {status.get('Message', '')}")
        return "completed"
    return "updating"


def _delete_service(api, service_id: str, state: dict[str, Any]) -> None:
    """deleteService: only with a stop_grace_period other than 0s does it wait, up to that period, for the
    containers of the tasks not yet shut down (and then force-removes them); otherwise it returns as
    soon as Docker accepted the removal and the tasks are shut down in the background."""
    grace = ((state.get("taskSpec") or {}).get("containerSpec") or {}).get("stopGracePeriod") or ""
    waits = bool(grace) and grace != "0s"
    containers = []
    if waits:
        for listed in api.tasks(filters={"service": state.get("name", "")}):
            try:
                task = api.inspect_task(listed["ID"])
            except docker.errors.APIError:
                continue
            container_id = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID") or ""
            if container_id.strip() and task["Status"]["State"] != "shutdown":
                containers.append(container_id)
    try:
        api.remove_service(service_id)
    except docker.errors.APIError as err:
        raise RuntimeError(f"Error deleting service with ID '{service_id}': {_daemon_error(err)}") from None
    if not waits:
        return
    grace_seconds = _lenient_duration(grace) / 1e9
    for container_id in containers:
        try:
            api.wait(container_id, timeout=grace_seconds, condition="removed")
        except docker.errors.NotFound:
            pass
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            raise RuntimeError(f"error on wait for container with ID '{container_id}': "
                               "context deadline exceeded") from None
        except docker.errors.APIError as err:
            if "No such container" not in str(err):
                raise RuntimeError(f"failed to wait for container with ID '{container_id}': "
                                   f"'{err.explanation}'") from None
        try:
            api.remove_container(container_id, force=True, v=True)
        except docker.errors.APIError as err:
            if "No such container" not in str(err) and "is already in progress" not in str(err):
                raise RuntimeError(f"Error deleting container with ID '{container_id}': {err.explanation}") from None


def _check_base64(value: Any) -> None:
    # validateStringIsBase64Encoded: base64.StdEncoding. Its message quotes the value; a secret's is left out.
    if value is UNKNOWN or value is None:
        return
    try:
        base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        raise ValueError("'(the data)' is not base64 decodeable") from None


class _SwarmData(Resource):
    """A Swarm secret or config: immutable in Swarm, so every input is ForceNew."""

    kind = ""  # "secret" or "config": the Docker API's word
    updatable = frozenset()
    secret_outputs = frozenset({"data"})

    def check(self, news):
        checked = super().check(news)
        _check_base64(checked.get("data"))
        return checked

    def _labels(self, news) -> dict[str, str]:
        return test_labels()

    def create(self, news, preview, timeout):
        api = client().api
        try:
            created = getattr(api, f"create_{self.kind}")(news["name"], base64.b64decode(news["data"]),
                                                          labels=self._labels(news))
        except docker.errors.APIError as err:
            raise RuntimeError(_daemon_error(err)) from None
        found = self.read(created["ID"], news)
        if found is None:
            raise RuntimeError(f"{self.kind} {news['name']} is gone right after its creation")
        return created["ID"], found

    def read(self, id_, state):
        try:
            attrs = getattr(client().api, f"inspect_{self.kind}")(id_)
        except docker.errors.APIError:
            return None  # any error: "not found, removing from state"
        return self._read_back(attrs, state)

    def _read_back(self, attrs, state):
        raise NotImplementedError

    def delete(self, id_, state, timeout):
        try:
            getattr(client().api, f"remove_{self.kind}")(id_)
        except docker.errors.APIError as err:
            raise RuntimeError(_daemon_error(err)) from None


class Secret(_SwarmData):
    token = "docker:index/secret:Secret"
    kind = "secret"
    inputs = frozenset({"name", "data", "labels"})
    sets = frozenset({"labels"})

    def _labels(self, news):
        return {**label_map(news.get("labels")), **test_labels()}

    def _read_back(self, attrs, state):
        # Only the name is read back: Docker does not expose a secret's data; labels are not read either.
        return {**state, "name": attrs["Spec"]["Name"]}


class ServiceConfig(_SwarmData):
    token = "docker:index/serviceConfig:ServiceConfig"
    kind = "config"
    inputs = frozenset({"name", "data"})

    def _read_back(self, attrs, state):
        # The engine returns Data base64-encoded (StdEncoding), as the provider writes it back.
        return {**state, "name": attrs["Spec"]["Name"], "data": attrs["Spec"].get("Data", "")}


RESOURCES = [Network(), Volume(), Container(), Service(), Secret(), ServiceConfig()]

if __name__ == "__main__":
    run("docker", os.environ.get("PREFECT_HA_PLUGIN_VERSION", "5.2.0"), RESOURCES)
