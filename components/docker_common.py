"""Container settings every component shares: healthchecks, logs, labels, options."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

import pulumi
import pulumi_docker as docker
import pulumi_random as random
from pulumi import _types as pulumi_types  # is_input_type: the SDK has no public spelling

from .config import Group, LoggingConfig, size_in_mb

LABEL_PREFIX = "prefect-ha"
STACK_LABEL = f"{LABEL_PREFIX}.stack"
COMPONENT_LABEL = f"{LABEL_PREFIX}.component"


@dataclass(frozen=True)
class Placement:
    """Where a component puts its containers and what every container shares:
    the stack's name and networks, the timezone, the health wait and log rotation.

    ``backend`` holds Postgres, Redis and every Prefect server process and has no
    route out; ``edge`` is where nginx, the API replicas, workers and flow runs meet.
    """

    stack: str
    prefix: str
    backend: docker.Network
    edge: docker.Network
    timezone: str
    wait_timeout: int
    logging: LoggingConfig
    swarm: bool = False
    """The stateless tier runs as Swarm services (components/swarm.py); the data
    stores and one-shot jobs stay containers on the engine the provider talks to."""

    def name(self, role: str) -> str:
        """Physical Docker name, unique per stack on a shared host."""
        return f"{self.prefix}-{role}"

    def volume(self, resource_name: str, role: str, parent: pulumi.Resource, *,
               retain: bool = False, depends_on: Sequence[pulumi.Input[pulumi.Resource]] = ()) -> docker.Volume:
        """A named volume of this stack (``<prefix>-<role>``), labelled with the stack;
        ``retain`` keeps it (and its data) when the stack is destroyed."""
        return docker.Volume(
            resource_name,
            name=self.name(role),
            labels=[docker.VolumeLabelArgs(label=STACK_LABEL, value=self.stack)],
            opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=retain, depends_on=list(depends_on)),
        )

    def log_args(self) -> dict:
        return {
            "log_driver": "json-file",
            "log_opts": {"max-size": self.logging.max_size, "max-file": str(self.logging.max_file)},
        }


def go_duration(seconds: int) -> str:
    """Durations as Go prints them, as the provider reads them back: 5s, 1m0s, 1h0m0s.

    Any other spelling (``60s``) shows a diff on every preview.
    """
    if seconds < 0:
        raise ValueError(f"duration must be >= 0, got {seconds}")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def healthcheck(
    test: Sequence[str], *, interval: int, timeout: int, retries: int, start_period: int = 0
) -> docker.ContainerHealthcheckArgs:
    return docker.ContainerHealthcheckArgs(
        tests=list(test),
        interval=go_duration(interval),
        timeout=go_duration(timeout),
        retries=retries,
        start_period=go_duration(start_period),
    )


def labels(stack: str, component: str, **extra: pulumi.Input[str]) -> list[docker.ContainerLabelArgs]:
    """Labels that say which stack and component a container belongs to."""
    values = {STACK_LABEL: stack, COMPONENT_LABEL: component}
    values.update({f"{LABEL_PREFIX}.{key}": value for key, value in extra.items()})
    return [docker.ContainerLabelArgs(label=key, value=value) for key, value in values.items()]


def passed(job: docker.Container, succeeded: pulumi.Output[int]) -> pulumi.Output[docker.Container]:
    """A one-shot job as a dependency that holds only once it exited 0:
    ``succeeded`` raises on any other exit code, and whatever lists the result
    in its ``depends_on`` is then never created. An ordering edge, not an
    input, so a re-run of the job replaces nothing that waits on it."""
    return succeeded.apply(lambda _: job)


def limits(group: Group) -> dict:
    """A workload's memory and CPU caps from its group's memoryLimit and cpuLimit.
    Swap is capped at the memory limit (none on top): Docker's default of twice
    the limit would read back as a change on every refresh."""
    memory = size_in_mb(group.memory_limit)
    return {"memory": memory, "memory_swap": memory, "cpus": group.cpu_limit or None}


def container_opts(parent: pulumi.Resource, *, depends_on: Sequence[pulumi.Input[pulumi.Resource]] = ()) -> pulumi.ResourceOptions:
    """Options for a container with a fixed name: never two at once, and a healthcheck
    change replaces it because Docker cannot update one in place."""
    return pulumi.ResourceOptions(
        parent=parent,
        depends_on=list(depends_on),
        delete_before_replace=True,
        replace_on_changes=["healthcheck"],
    )


# Inputs the provider changes on the running container (one ContainerUpdate) or
# that only steer the provider itself; any other input's change replaces it.
IN_PLACE_INPUTS = frozenset({
    "restart", "max_retry_count", "cpu_shares", "memory", "memory_swap",
    "wait", "wait_timeout", "attach", "must_run", "logs", "start", "rm", "destroy_grace_seconds",
})
DIGEST_LENGTH = 8
# A rolling container's generation: 8 hex digits in its name.
GENERATION_BYTES = 4


def _plain(value: Any) -> Any:
    # Args classes (ContainerHealthcheckArgs, ...) by their fields: their repr
    # carries a memory address, which would rename the container on every run.
    if pulumi_types.is_input_type(type(value)):
        return vars(value)
    raise TypeError(f"cannot digest a {type(value).__name__}")


def inputs_digest(inputs: Any) -> str:
    """A short digest of a container's replacing inputs, for its name: the same
    inputs give the same name in every run."""
    text = json.dumps(inputs, sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_LENGTH]


def replacing_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """The container inputs whose change replaces it."""
    return {key: value for key, value in inputs.items() if key not in IN_PLACE_INPUTS}


def input_fingerprint(inputs: dict[str, Any]) -> pulumi.Output[dict[str, str]]:
    """A short digest per input whose change replaces a container: what changed, never
    its value (secrets only one-way)."""
    return pulumi.Output.unsecret(pulumi.Output.from_input(replacing_inputs(inputs)).apply(
        lambda values: {key: inputs_digest(value) for key, value in values.items()}
    ))


def fixed_container(
    resource_name: str, *, parent: pulumi.Resource, depends_on: Sequence[pulumi.Input[pulumi.Resource]] = (),
    **inputs: Any,
) -> tuple[docker.Container, pulumi.Output[dict[str, str]]]:
    """A container with a fixed name (see container_opts), and its input fingerprint:
    replacing it is downtime, which the stack says in the preview (components/downtime.py)."""
    container = docker.Container(resource_name, **inputs, opts=container_opts(parent, depends_on=depends_on))
    return container, input_fingerprint(inputs)


def rolling_container(
    resource_name: str,
    *,
    place: Placement,
    role: str,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Input[pulumi.Resource]] = (),
    **inputs: Any,
) -> docker.Container:
    """A container replaced create-before-delete: the successor is created (and,
    with ``wait``, healthy) before its predecessor is stopped, at the end of the
    update.

    Its name ends with a generation: random hex drawn anew whenever an input that
    replaces the container changes (a RandomId keyed on their digest), and kept
    while they stay the same. Two generations never share a name, not even when
    a change is undone after a failed update, whose predecessor Docker still
    holds under the earlier name until the engine deletes it. The digest covers
    secrets (the environment) one-way; the name itself is not secret."""
    digest = pulumi.Output.unsecret(pulumi.Output.from_input(replacing_inputs(inputs)).apply(inputs_digest))
    generation = random.RandomId(
        f"{resource_name}-generation",
        byte_length=GENERATION_BYTES,
        keepers={"inputs": digest},
        # Behind the same gates as the container: a failed migration must leave the
        # servers' generations as they were, or undoing the change would roll them.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )
    return docker.Container(
        resource_name,
        name=generation.hex.apply(lambda hex_: place.name(f"{role}-{hex_}")),
        **inputs,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on), replace_on_changes=["healthcheck"]),
    )


def network_attachment(network: docker.Network, *aliases: str) -> list[docker.ContainerNetworksAdvancedArgs]:
    return [docker.ContainerNetworksAdvancedArgs(name=network.name, aliases=list(aliases))]


def published(internal: int, external: int) -> list[docker.ContainerPortArgs]:
    """Host port mapping, or none when ``external`` is 0."""
    if not external:
        return []
    return [docker.ContainerPortArgs(internal=internal, external=external)]


NO_NEW_PRIVILEGES = "no-new-privileges:true"


def capability_names(caps: Sequence[str]) -> list[str]:
    """Capabilities as Docker stores them and the provider reads them back
    (``CAP_CHOWN``): written ``CHOWN``, every `pulumi refresh` would plan a
    replacement of the container."""
    return sorted(c if c.startswith("CAP_") else f"CAP_{c}" for c in caps)


def hardening(
    *, read_only: bool, tmpfs: Sequence[str] = (), cap_add: Sequence[str] = ()
) -> dict:
    """Container arguments that shrink what a compromised process can do: no
    privilege gain through setuid binaries, every capability dropped but the ones
    the image's entrypoint needs, and (where the image allows) a read-only root
    filesystem with tmpfs scratch space. Nothing here is ever privileged.

    Docker refuses file uploads into a read-only container, so read-only
    containers take their files through the environment instead.
    """
    return {
        "security_opts": [NO_NEW_PRIVILEGES],
        "capabilities": docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=capability_names(cap_add) or None),
        "read_only": read_only,
        "tmpfs": {path: "rw,noexec,nosuid,size=64m" for path in tmpfs} or None,
        "privileged": False,
    }


def one_shot() -> dict:
    """compose's service_completed_successfully: run to completion during `pulumi up`
    and report the exit code (read it and raise; a non-zero exit does not fail the
    resource). rm stays off because it breaks attach."""
    return {"attach": True, "must_run": False, "rm": False, "logs": True, "restart": "no"}
