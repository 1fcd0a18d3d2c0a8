"""Test double of pulumi-docker (v5) as a real provider plugin, backed by the Docker SDK.

Networks, volumes and containers are created on the real engine. The
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
  Network: every input change replaces; a missing one is dropped.

Differs from the real provider (the README's testing section lists these):
- every object also carries the label ``prefect-ha-test.run`` (from
  ``PREFECT_HA_TEST_RUN``) so a test can sweep up what it made; Read hides it;
- the image must exist locally (no registry here): it is never pulled, and
  ``image`` keeps the reference as written;
- capabilities are normalized to ``CAP_`` names on Read even though this
  machine's Docker 20.10 stores them as written (newer engines normalize);
- no preview-time Create (outputs are unknown in previews);
- only the inputs the program uses are modelled; any other input fails Check.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import docker
from docker.types import LogConfig

# The engine starts this file as a script: its own folder is on sys.path, the test bed's is not.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from plugin import Resource, Unsupported, canonical, run  # noqa: E402
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
        return net.id, {**news, "driver": news.get("driver") or "bridge", "scope": "local"}

    def read(self, id_, state):
        try:
            attrs = client().api.inspect_network(id_)
        except docker.errors.NotFound:
            return None
        return {**state, "name": attrs["Name"], "driver": attrs["Driver"], "internal": attrs["Internal"],
                "attachable": attrs["Attachable"],
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


RESOURCES = [Network(), Volume(), Container()]

if __name__ == "__main__":
    run("docker", os.environ.get("PREFECT_HA_PLUGIN_VERSION", "5.2.0"), RESOURCES)
