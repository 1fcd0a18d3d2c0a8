"""prefect-ha's policies, as importable code: ``POLICIES`` is what ``__main__.py`` serves.

Every policy is mandatory. Resource policies see one resource's inputs; stack
policies see every resource's outputs with its dependencies, which is what the
checks that relate two resources (a container and its volume, a replica and the
migration it must wait for, nginx and the API replicas behind it) need.

During ``pulumi preview`` values that depend on resources not created yet are
unknown, and secret values (the containers' env lists) may be among them. No
check here reads an unknown value: it skips what it cannot see and judges the
rest, so a preview never fails on a policy error instead of a real violation.

Names the program defines (label prefix, Postgres data directory, the server's
auth-string setting) come from program_facts.py, generated from ``components``
(the pack ships alone, so it cannot import the program; the suite fails when
the copy is stale).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from pulumi_policy import (
    EnforcementLevel,
    Secret,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from program_facts import LABEL_PREFIX, POSTGRES_DATA_DIR, SERVER_AUTH_STRING

PACK_NAME = "prefect-ha-policies"

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"

COMPONENT_LABEL = f"{LABEL_PREFIX}.component"
TLS_LABEL = f"{LABEL_PREFIX}.tls"
AUTH_LABEL = f"{LABEL_PREFIX}.auth"
# Declared on the Postgres container: what happens to its data volume when the
# stack deletes it. The engine does not hand retainOnDelete to policy packs
# (see postgres_volume_retained), so the program declares it here.
DATA_VOLUME_LABEL = f"{LABEL_PREFIX}.data-volume"
DATA_VOLUME_RETAINED = "retained"

TLS_VALUES = ("generated", "provided", "off")
AUTH_VALUES = ("prefect", "nginx", "none")
# nginx's HTTPS listener inside the container.
TLS_INTERNAL_PORT = 8443
DANGEROUS_CAPABILITIES = frozenset({"ALL", "SYS_ADMIN"})

# Values that are unknown during preview arrive as these sentinels; the
# pulumi_policy proxies raise UnknownValueError when one is read.
_UNKNOWN_SENTINELS = frozenset({
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # boolean
    "3eeb2bf0-c639-47a8-9e75-3b44932eb421",  # number
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # string
    "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",  # array
    "030794c1-ac77-496b-92df-f27374a8bd58",  # asset
    "e48ece36-62e2-4504-bad9-02848725956a",  # archive
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",  # object
})


class _Marker:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNKNOWN = _Marker("UNKNOWN")
"""A value that cannot be seen (yet): skip the evidence that needs it."""
MISSING = _Marker("MISSING")
"""A key that is not there at all."""


# --- reading props without tripping over unknowns ---------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        value = value.value
    if isinstance(value, str) and value in _UNKNOWN_SENTINELS:
        return UNKNOWN
    return value


def get(mapping: Any, key: str) -> Any:
    """``mapping[key]``, or MISSING, or UNKNOWN; never raises."""
    mapping = _plain(mapping)
    if mapping is UNKNOWN:
        return UNKNOWN
    if not isinstance(mapping, Mapping):
        return MISSING
    try:
        return _plain(mapping[key])
    except KeyError:
        return MISSING
    except UnknownValueError:
        return UNKNOWN


def items(sequence: Any) -> Iterator[Any]:
    """The elements of a list, each possibly UNKNOWN; nothing for a missing list.

    The caller checks ``sequence`` itself for UNKNOWN first when that matters.
    """
    sequence = _plain(sequence)
    if not isinstance(sequence, Sequence) or isinstance(sequence, (str, bytes)):
        return
    for index in range(len(sequence)):
        try:
            yield _plain(sequence[index])
        except UnknownValueError:
            yield UNKNOWN


def labels_of(props: Any) -> dict[str, Any]:
    """A container's labels (a list of {label, value}) as a dict; values may be UNKNOWN."""
    found: dict[str, Any] = {}
    for entry in items(get(props, "labels")):
        key = get(entry, "label")
        if isinstance(key, str):
            value = get(entry, "value")
            found[key] = None if value is MISSING else value
    return found


def component_of(props: Any) -> Any:
    return labels_of(props).get(COMPONENT_LABEL)


def stack_of(urn: str) -> str:
    """The stack name from ``urn:pulumi:<stack>::<project>::<type>::<name>``."""
    head = urn.split("::", 1)[0]
    return head[len("urn:pulumi:"):] if head.startswith("urn:pulumi:") else ""


def is_prod_stack(urn: str) -> bool:
    return stack_of(urn).startswith("prod")


def describe(name: str, props: Any) -> str:
    """How messages name a container: the Pulumi resource and the Docker name."""
    docker_name = get(props, "name")
    if isinstance(docker_name, str) and docker_name != name:
        return f"{name} (container {docker_name})"
    return name


# --- 1. images pinned --------------------------------------------------------------

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_IMAGE_ID = re.compile(r"^(sha256:)?[0-9a-f]{64}$")


def image_tag(image: str) -> str | None:
    """The tag of an image reference, or None. The tag is after the last ':' of
    the last path component, so a registry port (``host:5000/img``) is no tag."""
    reference = image.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def image_problem(image: str) -> str | None:
    """Why an image reference is not pinned, or None when it is."""
    if _DIGEST.search(image) or _IMAGE_ID.match(image):
        return None
    tag = image_tag(image)
    if not tag:
        return "has no tag, so it resolves to latest"
    if tag == "latest" or tag.endswith("-latest"):
        return f"uses the moving tag {tag!r}"
    return None


def images_pinned(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != CONTAINER:
        return
    image = get(args.props, "image")
    if not isinstance(image, str):
        return  # unknown during preview
    problem = image_problem(image)
    if problem:
        report_violation(
            f"{describe(args.name, args.props)}: image {image!r} {problem}; "
            f"pin a version tag (not latest or *-latest) or an @sha256: digest.",
            None,
        )


# --- 2. no privileged containers ---------------------------------------------------


def no_privileged_containers(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != CONTAINER:
        return
    who = describe(args.name, args.props)
    if get(args.props, "privileged") is True:
        report_violation(f"{who} is privileged: it gets every capability and the host's devices.", None)
    adds = get(get(args.props, "capabilities"), "adds")
    granted = sorted({
        cap.upper().removeprefix("CAP_") for cap in items(adds) if isinstance(cap, str)
    } & DANGEROUS_CAPABILITIES)
    if granted:
        report_violation(
            f"{who} adds the capabilities {', '.join(granted)}, which amount to a privileged container.", None
        )


# --- 5. no published Postgres/Redis ports in prod ----------------------------------


def _port(value: Any) -> str:
    """A port number as people write it (props carry numbers as floats)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, (int, str)) else "?"


def no_data_ports_in_prod(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != CONTAINER or not is_prod_stack(args.urn):
        return
    component = component_of(args.props)
    if component not in ("postgres", "redis"):
        return
    ports = get(args.props, "ports")
    published = [p for p in items(ports) if p is not MISSING and p is not None]
    if ports is UNKNOWN or not published:
        return
    shown = [f"{_port(get(port, 'external'))}->{_port(get(port, 'internal'))}" for port in published]
    report_violation(
        f"{describe(args.name, args.props)} ({component}) publishes host ports {', '.join(shown)} "
        f"in prod stack {stack_of(args.urn)!r}; keep it on the stack network "
        f"({component}.hostPort 0).",
        None,
    )


# --- stack policies -----------------------------------------------------------------


def containers(resources: Iterable[PolicyResource], component: str | None = None) -> list[PolicyResource]:
    found = [r for r in resources if r.resource_type == CONTAINER]
    if component is not None:
        found = [r for r in found if component_of(r.props) == component]
    return found


# --- 3. the Postgres data volume survives a delete --------------------------------


def volume_retained(volume: PolicyResource, postgres: PolicyResource) -> bool | None:
    """True/False when the evidence says so, None when it cannot be seen.

    ``protect`` is the only option the engine hands to policy packs
    (AnalyzerResourceOptions has no retainOnDelete, and pulumi_policy's
    PolicyResourceOptions has no field for it), so retain_on_delete is read
    from the option should a later pulumi_policy expose it, and otherwise
    from the Postgres container's declaration label.
    """
    if getattr(volume.opts, "protect", False):
        return True
    option = getattr(volume.opts, "retain_on_delete", None)
    if option is not None:
        return bool(option)
    declared = labels_of(postgres.props).get(DATA_VOLUME_LABEL, MISSING)
    if declared is UNKNOWN:
        return None
    return declared == DATA_VOLUME_RETAINED


def postgres_volume_retained(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    volumes: dict[str, list[PolicyResource]] = {}
    for resource in args.resources:
        if resource.resource_type == VOLUME:
            name = get(resource.props, "name")
            if isinstance(name, str):
                volumes.setdefault(name, []).append(resource)
    for postgres in containers(args.resources, "postgres"):
        who = describe(postgres.name, postgres.props)
        mounts = get(postgres.props, "volumes")
        if mounts is UNKNOWN:
            continue
        data_mounts = [
            m for m in items(mounts)
            if m is UNKNOWN or get(m, "containerPath") in (POSTGRES_DATA_DIR, UNKNOWN)
        ]
        if not data_mounts:
            report_violation(
                f"{who} keeps its data directory {POSTGRES_DATA_DIR} on no named volume: "
                f"the data goes when the container is replaced.",
                postgres.urn,
            )
            continue
        for mount in data_mounts:
            if mount is UNKNOWN or get(mount, "containerPath") is UNKNOWN:
                continue
            host_path = get(mount, "hostPath")
            # The engine sends "" for a named-volume mount: only a real path is a bind mount.
            if isinstance(host_path, str) and host_path:
                continue  # a bind mount: Pulumi never deletes a host directory
            volume_name = get(mount, "volumeName")
            if not isinstance(volume_name, str):
                continue  # unknown during preview
            for volume in volumes.get(volume_name, []):  # none: not this stack's to delete
                retained = volume_retained(volume, postgres)
                if retained is False:
                    report_violation(
                        f"{volume.name} (volume {volume_name}), the data directory of {who}, "
                        f"is deleted with the stack: set retain_on_delete (postgres.retainVolume true) "
                        f"or protect on it, and declare it with the label "
                        f"{DATA_VOLUME_LABEL}={DATA_VOLUME_RETAINED} on the Postgres container "
                        f"(policy packs cannot see retain_on_delete).",
                        volume.urn,
                    )


# --- 4. prod stacks have TLS and auth ---------------------------------------------


def _publishes_internal(props: Any, port: int) -> bool | None:
    ports = get(props, "ports")
    if ports is UNKNOWN:
        return None
    unknown = False
    for entry in items(ports):
        internal = get(entry, "internal")
        if internal is UNKNOWN or entry is UNKNOWN:
            unknown = True
        elif internal == port or str(internal) == str(port):
            return True
    return None if unknown else False


def _has_env(props: Any, name: str) -> bool | None:
    envs = get(props, "envs")
    if envs is UNKNOWN:
        return None
    unknown = False
    for entry in items(envs):
        if entry is UNKNOWN:
            unknown = True
        elif isinstance(entry, str) and entry.startswith(f"{name}="):
            return True
    return None if unknown else False


def prod_tls_and_auth(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    proxies = containers(args.resources, "proxy")
    api = containers(args.resources, "api")
    for proxy in proxies:
        if not is_prod_stack(proxy.urn):
            continue
        stack = stack_of(proxy.urn)
        who = describe(proxy.name, proxy.props)
        labels = labels_of(proxy.props)
        tls, auth = labels.get(TLS_LABEL, MISSING), labels.get(AUTH_LABEL, MISSING)

        if tls is MISSING or tls is None:
            report_violation(
                f"{who} in prod stack {stack!r} does not declare TLS (label {TLS_LABEL}); "
                f"turn tls.enabled on.", proxy.urn)
        elif tls is not UNKNOWN and tls not in TLS_VALUES:
            report_violation(
                f"{who} declares {TLS_LABEL}={tls!r}, not one of {', '.join(TLS_VALUES)}.", proxy.urn)
        elif tls == "off":
            report_violation(
                f"{who} in prod stack {stack!r} serves plain HTTP ({TLS_LABEL}=off); "
                f"set tls.enabled true and an https proxy.publicUrl.", proxy.urn)
        elif tls in ("generated", "provided") and _publishes_internal(proxy.props, TLS_INTERNAL_PORT) is False:
            report_violation(
                f"{who} declares {TLS_LABEL}={tls} but publishes no port to its HTTPS "
                f"listener ({TLS_INTERNAL_PORT}).", proxy.urn)

        if auth is MISSING or auth is None:
            report_violation(
                f"{who} in prod stack {stack!r} does not declare authentication (label {AUTH_LABEL}); "
                f"set auth.mode to prefect or nginx.", proxy.urn)
        elif auth is not UNKNOWN and auth not in AUTH_VALUES:
            report_violation(
                f"{who} declares {AUTH_LABEL}={auth!r}, not one of {', '.join(AUTH_VALUES)}.", proxy.urn)
        elif auth == "none":
            report_violation(
                f"{who} in prod stack {stack!r} lets anyone reach the API ({AUTH_LABEL}=none); "
                f"set auth.mode to prefect or nginx.", proxy.urn)
        elif auth == "prefect":
            for replica in api:
                if _has_env(replica.props, SERVER_AUTH_STRING) is False:
                    report_violation(
                        f"{describe(replica.name, replica.props)} has no {SERVER_AUTH_STRING} although "
                        f"{who} declares {AUTH_LABEL}=prefect: that replica answers without credentials.",
                        replica.urn)


# --- 6. Prefect server processes wait for the migration ---------------------------

GATED_COMPONENTS = ("api", "services")


def _dependency_urns(resource: PolicyResource) -> set[str]:
    urns = {d.urn for d in resource.dependencies or []}
    for deps in (resource.property_dependencies or {}).values():
        urns.update(d.urn for d in deps)
    return urns


def replicas_wait_for_migration(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    migrations = {m.urn for m in containers(args.resources, "migration")}
    for component in GATED_COMPONENTS:
        for replica in containers(args.resources, component):
            if _dependency_urns(replica) & migrations:
                continue
            why = ("the stack has no migration container (label "
                   f"{COMPONENT_LABEL}=migration)") if not migrations else "it does not depend on the migration container"
            report_violation(
                f"{describe(replica.name, replica.props)} ({component}) can start before the database "
                f"is migrated: {why}; give it depends_on the migration container or consume its exit code.",
                replica.urn,
            )


# --- the pack -----------------------------------------------------------------------

MANDATORY = EnforcementLevel.MANDATORY


@dataclass(frozen=True)
class _Spec:
    name: str
    description: str
    validate: Callable[..., None]
    stack: bool = False


_SPECS = (
    _Spec("images-pinned",
          "Every container image is pinned to a version tag (not latest or *-latest) or an @sha256: digest.",
          images_pinned),
    _Spec("no-privileged-containers",
          "No container is privileged or adds the ALL or SYS_ADMIN capabilities.",
          no_privileged_containers),
    _Spec("postgres-volume-retained",
          "The volume holding the Postgres data directory survives a delete (retain_on_delete or protect).",
          postgres_volume_retained, stack=True),
    _Spec("prod-tls-and-auth",
          "In prod stacks nginx serves TLS and the API requires credentials.",
          prod_tls_and_auth, stack=True),
    _Spec("no-data-ports-in-prod",
          "In prod stacks Postgres and Redis publish no host ports.",
          no_data_ports_in_prod),
    _Spec("replicas-wait-for-migration",
          "Every API replica and background-services container depends on the migration container.",
          replicas_wait_for_migration, stack=True),
)


def _policy(spec: _Spec) -> ResourceValidationPolicy | StackValidationPolicy:
    if spec.stack:
        return StackValidationPolicy(
            name=spec.name, description=spec.description, validate=spec.validate, enforcement_level=MANDATORY)
    return ResourceValidationPolicy(
        name=spec.name, description=spec.description, validate=spec.validate, enforcement_level=MANDATORY)


POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [_policy(spec) for spec in _SPECS]
