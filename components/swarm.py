"""Swarm services: how the stateless tier runs when ``platform`` is ``swarm``.

The API replicas, background services, workers and nginx become Swarm services
on the stack's attachable overlay networks; Swarm spreads their tasks over the
nodes and replaces the tasks of a lost node on the others. Every update goes
one task at a time, start-first (nginx: stop-first, its port is the node's),
waits for the new task to run (and be healthy, where it has a healthcheck),
and rolls back by itself when a new task fails (the single-host rollout's guarantee,
given by Swarm instead of by Pulumi's create-before-delete).

Secrets never travel in a service's env or labels: a workload's secret settings
are one Swarm secret, a file of ``K=V`` lines that LOAD_ENV exports before the
process starts. Swarm secrets cannot change, so the secret's name carries a
digest of its content: a new password is a new secret, the service spec
changes to name it, and Swarm rolls the tasks over (the old secret goes once
no service names it).

Postgres, Redis and the one-shot jobs stay containers on the engine the
provider talks to (DOCKER_HOST, a manager: the data node), attached to the same
overlay networks, because their exit codes and volumes are what the deployment
gates on; see README "Docker Swarm".
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import pulumi
import pulumi_docker as docker

from . import docker_common as dc

# Where Docker mounts a service's secrets and configs.
SECRETS_DIR = "/run/secrets"
ENV_SECRET_FILE = "prefect-ha-env"
ENV_SECRET_PATH = f"{SECRETS_DIR}/{ENV_SECRET_FILE}"
# Exports each K=V line as it is (no shell evaluation of the value), then execs
# the command given after it: `sh -c LOAD_ENV sh <command...>`.
# Fails closed: without its secret settings Prefect would fall back to defaults (SQLite).
LOAD_ENV = (
    f'[ -r {ENV_SECRET_PATH} ] || {{ echo "prefect-ha: cannot read {ENV_SECRET_PATH}" >&2; exit 78; }}; '
    f'while IFS= read -r line || [ -n "$line" ]; do [ -n "$line" ] && export "$line"; done < {ENV_SECRET_PATH} || exit 78; '
    'exec "$@"'
)
DIGEST_LENGTH = 12
# A task that is not healthy this long after it started fails the update, which rolls back.
MONITOR_SECONDS = 20
RESTART_DELAY_SECONDS = 2
# Swarm's DNS name that answers with every task's address of a service.
TASKS_PREFIX = "tasks."


# Swarm's limits: secret and config names up to 64 characters, service names up to 63
# without dots. The longest name the stack makes is the htpasswd secret's.
MAX_SECRET_NAME = 64
LONGEST_SUFFIX = len(f"-nginx-htpasswd-{'0' * DIGEST_LENGTH}")


def name_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot name the stack's Swarm objects, or None."""
    if "." in prefix:
        return f"Swarm service names cannot hold '.': the name prefix {prefix!r} does (set namePrefix)"
    if len(prefix) + LONGEST_SUFFIX > MAX_SECRET_NAME:
        return (f"the name prefix {prefix!r} is {len(prefix)} characters; on Swarm it may be at most "
                f"{MAX_SECRET_NAME - LONGEST_SUFFIX} (secret names are limited to {MAX_SECRET_NAME}; set namePrefix)")
    return None


def duration(seconds: int) -> str:
    """A duration as the provider reads a service's back (its shortDur: Go's String()
    without a trailing 0s or 0m, ``3m``, ``1h``); any other spelling shows a diff on
    every preview."""
    text = dc.go_duration(seconds)
    if text.endswith("m0s"):
        text = text[:-2]
    if text.endswith("h0m"):
        text = text[:-2]
    return text


def healthcheck(
    test: Sequence[str], *, interval: int, timeout: int, retries: int, start_period: int = 0
) -> docker.ServiceTaskSpecContainerSpecHealthcheckArgs:
    """docker_common.healthcheck for a service: Swarm counts a task as running once healthy."""
    return docker.ServiceTaskSpecContainerSpecHealthcheckArgs(
        tests=list(test), interval=duration(interval), timeout=duration(timeout), retries=retries,
        start_period=duration(start_period),
    )


def content_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_LENGTH]


def content_secret(
    resource_name: str, *, place: dc.Placement, role: str, content: pulumi.Input[str], parent: pulumi.Resource,
) -> docker.Secret:
    """A Swarm secret named ``<prefix>-<role>-<digest of content>``: immutable in
    Swarm, so new content is a new secret (created before the old one goes) and
    every service naming it rolls. The digest is one-way; the name is not secret."""
    content = pulumi.Output.from_input(content)
    name = pulumi.Output.unsecret(content.apply(lambda text: place.name(f"{role}-{content_digest(text)}")))
    return docker.Secret(
        resource_name,
        name=name,
        # The provider takes the data base64-encoded.
        data=pulumi.Output.secret(content.apply(lambda text: base64.b64encode(text.encode()).decode())),
        labels=[docker.SecretLabelArgs(label=key, value=value) for key, value in labels(place.stack, role).items()],
        opts=pulumi.ResourceOptions(parent=parent),
    )


def content_config(
    resource_name: str, *, place: dc.Placement, role: str, content: str, parent: pulumi.Resource,
) -> docker.ServiceConfig:
    """A Swarm config (not secret) named by its content's digest, like content_secret."""
    return docker.ServiceConfig(
        resource_name,
        name=place.name(f"{role}-{content_digest(content)}"),
        data=base64.b64encode(content.encode()).decode(),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def split_env(env: Sequence[pulumi.Input[str]]) -> tuple[dict[str, str], pulumi.Output[str] | None]:
    """(plain settings as the service's env, secret settings as one env-file text).

    prefect_settings writes a setting whose value is secret as an Output and
    every other one as plain text, so the type says which is which; an Output
    may also hold a list of such lines."""
    plain: dict[str, str] = {}
    secret: list[pulumi.Input[str]] = []
    for item in env:
        if isinstance(item, str):
            key, _, value = item.partition("=")
            plain[key] = value
        else:
            secret.append(item)
    if not secret:
        return plain, None

    def env_file(items: list) -> str:
        lines = [line for item in items for line in (item if isinstance(item, list) else [item])]
        if any("\n" in line for line in lines):
            raise ValueError("a secret setting holds a line break, which an env file cannot carry")
        return "".join(f"{line}\n" for line in lines)

    text = pulumi.Output.secret(pulumi.Output.all(*secret).apply(env_file))
    return plain, text


def labels(stack: str, component: str, **extra: str) -> dict[str, str]:
    """Stack and component labels, as components/docker_common.labels gives containers."""
    return {dc.STACK_LABEL: stack, dc.COMPONENT_LABEL: component,
            **{f"{dc.LABEL_PREFIX}.{key}": value for key, value in extra.items()}}


@dataclass
class Mounted:
    """A secret or config file in a service's tasks."""

    item: docker.Secret | docker.ServiceConfig
    path: str
    mode: int = 0o400


@dataclass
class ServiceSpec:
    """What a workload's Swarm service runs; the rest (updates, spread, restarts) is shared."""

    image: str
    command: list[str]
    env: Sequence[pulumi.Input[str]]
    networks: list[tuple[docker.Network, list[str]]]
    replicas: int
    """Tasks of a replicated service; 0 makes it global: one task on every node."""
    healthcheck: docker.ServiceTaskSpecContainerSpecHealthcheckArgs | None = None
    files: list[Mounted] = field(default_factory=list)
    tmpfs: Sequence[str] = ()
    binds: list[tuple[str, str]] = field(default_factory=list)
    read_only: bool = True
    cap_add: Sequence[str] = ()
    ports: list[tuple[int, int]] = field(default_factory=list)
    grace_seconds: int = 30
    memory_mb: int = 0
    cpus: str = ""


def service(
    resource_name: str,
    *,
    place: dc.Placement,
    role: str,
    spec: ServiceSpec,
    labels: dict[str, str],
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Input[pulumi.Resource]] = (),
) -> docker.Service:
    """A service on every node (``replicas`` 0) or replicated and spread over the
    nodes, updated one task at a time and gated on health: start-first, except
    where a node's host port is bound (the new task cannot bind it beside the old).

    Endpoint mode dnsrr: the service's name and aliases answer with every task's
    address, as the shared alias does on one host, and nothing depends on IPVS
    (the routing mesh and service VIPs need it in the kernel; not every kernel,
    this CI's included, has it). Published ports are therefore host-mode ports
    on the nodes that run a task."""
    plain_env, secret_env = split_env(spec.env)
    files = list(spec.files)
    command = list(spec.command)
    if secret_env is not None:
        env_secret = content_secret(f"{resource_name}-env", place=place, role=f"{role}-env", content=secret_env,
                                    parent=parent)
        files.append(Mounted(env_secret, ENV_SECRET_PATH, 0o400))
        command = ["sh", "-c", LOAD_ENV, "sh", *command]
    update = dict(
        parallelism=1, delay="0s", order="stop-first" if spec.ports else "start-first", failure_action="rollback",
        monitor=duration(MONITOR_SECONDS),
        # As the provider reads it back (FormatFloat with one decimal): "0" would show a diff on every preview.
        max_failure_ratio="0.0",
    )
    mode = (docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=spec.replicas))
            if spec.replicas else docker.ServiceModeArgs(global_=True))
    return docker.Service(
        resource_name,
        name=place.name(role),
        labels=[docker.ServiceLabelArgs(label=k, value=v) for k, v in labels.items()],
        mode=mode,
        task_spec=docker.ServiceTaskSpecArgs(
            container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                image=spec.image,
                # Args, not Command: Command would replace the image's entrypoint (the
                # official images' set up EXTRA_PIP_PACKAGES there), as a container's command does not.
                args=command,
                env=plain_env,
                labels=[docker.ServiceTaskSpecContainerSpecLabelArgs(label=k, value=v) for k, v in labels.items()],
                read_only=spec.read_only,
                cap_drops=["ALL"],
                cap_adds=dc.capability_names(spec.cap_add) or None,
                stop_grace_period=duration(spec.grace_seconds),
                healthcheck=spec.healthcheck,
                secrets=[
                    docker.ServiceTaskSpecContainerSpecSecretArgs(
                        secret_id=f.item.id, secret_name=f.item.name, file_name=f.path, file_mode=f.mode)
                    for f in files if isinstance(f.item, docker.Secret)
                ] or None,
                configs=[
                    docker.ServiceTaskSpecContainerSpecConfigArgs(
                        config_id=f.item.id, config_name=f.item.name, file_name=f.path, file_mode=f.mode)
                    for f in files if isinstance(f.item, docker.ServiceConfig)
                ] or None,
                mounts=[
                    # No tmpfsOptions: the bridged provider's versions crash on them
                    # (kreuzwerker issue #563); the memory limit bounds a tmpfs anyway.
                    *(docker.ServiceTaskSpecContainerSpecMountArgs(target=path, type="tmpfs") for path in spec.tmpfs),
                    *(docker.ServiceTaskSpecContainerSpecMountArgs(target=target, source=source, type="bind",
                                                                   read_only=True)
                      for source, target in spec.binds),
                ] or None,
            ),
            networks_advanceds=[
                # By id: Docker keeps the id, and a name would read back as a change.
                docker.ServiceTaskSpecNetworksAdvancedArgs(id=network.id, aliases=aliases or None)
                for network, aliases in spec.networks
            ],
            # One task per node first; several on a node only when nodes run out.
            placement=docker.ServiceTaskSpecPlacementArgs(
                prefs=["spread=node.id"],
            ),
            resources=docker.ServiceTaskSpecResourcesArgs(limits=docker.ServiceTaskSpecResourcesLimitsArgs(
                memory_bytes=spec.memory_mb * 1024 * 1024 or None,
                nano_cpus=round(float(spec.cpus) * 1e9) if spec.cpus else None,
            )),
            # Every field: one left out is sent as 0 (no window, no delay).
            restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(
                condition="any", delay=duration(RESTART_DELAY_SECONDS), max_attempts=0, window=duration(0)),
            log_driver=docker.ServiceTaskSpecLogDriverArgs(name="json-file", options=place.log_args()["log_opts"]),
        ),
        update_config=docker.ServiceUpdateConfigArgs(**update),
        # A rollback that fails too stops where it is: nothing left to fall back to.
        rollback_config=docker.ServiceRollbackConfigArgs(**{**update, "failure_action": "pause"}),
        endpoint_spec=docker.ServiceEndpointSpecArgs(
            mode="dnsrr",
            ports=[docker.ServiceEndpointSpecPortArgs(target_port=target, published_port=published,
                                                      publish_mode="host", protocol="tcp")
                   for target, published in spec.ports] or None,
        ),
        # `pulumi up` waits until every task runs (healthy, where there is a check). Tasks
        # roll one at a time, so the wait covers each of them. The provider has no
        # convergence check for global services (it refuses one).
        converge_config=docker.ServiceConvergeConfigArgs(
            delay="1s", timeout=duration(spec.replicas * (place.wait_timeout + MONITOR_SECONDS)))
        if spec.replicas else None,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )
