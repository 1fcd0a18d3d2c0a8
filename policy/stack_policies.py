"""Policies that judge the stack as a whole: resources with their dependencies."""

from __future__ import annotations

from typing import Any

from pulumi_policy import PolicyResource, ReportViolation, StackValidationArgs

from program_facts import (
    API_COMPONENT,
    AUTH_LABEL,
    AUTH_MODES,
    AUTH_NGINX,
    AUTH_NONE,
    AUTH_PREFECT,
    DATA_VOLUME_LABEL,
    DATA_VOLUME_RETAINED,
    EDGE_CONFIG_COMPONENT,
    MIGRATION_COMPONENT,
    TLS_INTERNAL_PORT,
    POSTGRES_COMPONENT,
    POSTGRES_DATA_DIR,
    PROXY_COMPONENT,
    SERVER_AUTH_STRING,
    SERVICES_COMPONENT,
    TLS_LABEL,
    TLS_MODES,
    TLS_OFF,
)
from reading import (
    COMPONENT_LABEL, MISSING, UNKNOWN, VOLUME, containers, describe, get, is_prod_stack, items, labels_of, stack_of,
)


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
    for postgres in containers(args.resources, POSTGRES_COMPONENT):
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
    ports, key = get(props, "ports"), "internal"
    if ports is MISSING:  # a service: endpointSpec.ports[].targetPort
        ports, key = get(get(props, "endpointSpec"), "ports"), "targetPort"
    if ports is UNKNOWN:
        return None
    unknown = False
    for entry in items(ports):
        internal = get(entry, key)
        if internal is UNKNOWN or entry is UNKNOWN:
            unknown = True
        elif internal == port or str(internal) == str(port):
            return True
    return None if unknown else False


def _has_env(props: Any, name: str) -> bool | None:
    envs = get(props, "envs")
    if envs is UNKNOWN or get(props, "taskSpec") is not MISSING:
        return None  # a service's secret settings are in a Swarm secret the pack cannot read
    unknown = False
    for entry in items(envs):
        if entry is UNKNOWN:
            unknown = True
        elif isinstance(entry, str) and entry.startswith(f"{name}="):
            return True
    return None if unknown else False


def prod_tls_and_auth(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    proxies = containers(args.resources, PROXY_COMPONENT)
    configs = containers(args.resources, EDGE_CONFIG_COMPONENT)
    api = containers(args.resources, API_COMPONENT)
    for proxy in proxies:
        if not is_prod_stack(proxy.urn):
            continue
        stack = stack_of(proxy.urn)
        who = describe(proxy.name, proxy.props)
        tls = labels_of(proxy.props).get(TLS_LABEL, MISSING)
        # nginx's TLS goes with the ports it publishes; who checks credentials with
        # the config its edge-config job writes.
        config = next((c for c in configs if stack_of(c.urn) == stack), None)
        auth = MISSING if config is None else labels_of(config.props).get(AUTH_LABEL, MISSING)
        auth_urn = proxy.urn if config is None else config.urn

        if tls is MISSING or tls is None:
            report_violation(
                f"{who} in prod stack {stack!r} does not declare TLS (label {TLS_LABEL}); "
                f"turn tls.enabled on.", proxy.urn)
        elif tls is not UNKNOWN and tls not in TLS_MODES:
            report_violation(
                f"{who} declares {TLS_LABEL}={tls!r}, not one of {', '.join(TLS_MODES)}.", proxy.urn)
        elif tls == TLS_OFF:
            report_violation(
                f"{who} in prod stack {stack!r} serves plain HTTP ({TLS_LABEL}={TLS_OFF}); "
                f"set tls.enabled true and an https proxy.publicUrl.", proxy.urn)
        elif tls in TLS_MODES and _publishes_internal(proxy.props, TLS_INTERNAL_PORT) is False:
            report_violation(
                f"{who} declares {TLS_LABEL}={tls} but publishes no port to its HTTPS "
                f"listener ({TLS_INTERNAL_PORT}).", proxy.urn)

        auth_who = who if config is None else describe(config.name, config.props)
        if auth is MISSING or auth is None:
            report_violation(
                f"{auth_who} in prod stack {stack!r} does not declare authentication (label {AUTH_LABEL}); "
                f"set auth.mode to {AUTH_PREFECT} or {AUTH_NGINX}.", auth_urn)
        elif auth is not UNKNOWN and auth not in AUTH_MODES:
            report_violation(
                f"{auth_who} declares {AUTH_LABEL}={auth!r}, not one of {', '.join(AUTH_MODES)}.", auth_urn)
        elif auth == AUTH_NONE:
            report_violation(
                f"{auth_who} in prod stack {stack!r} lets anyone reach the API ({AUTH_LABEL}=none); "
                f"set auth.mode to {AUTH_PREFECT} or {AUTH_NGINX}.", auth_urn)
        elif auth == AUTH_PREFECT:
            for replica in api:
                if _has_env(replica.props, SERVER_AUTH_STRING) is False:
                    report_violation(
                        f"{describe(replica.name, replica.props)} has no {SERVER_AUTH_STRING} although "
                        f"{auth_who} declares {AUTH_LABEL}={AUTH_PREFECT}: that replica answers without credentials.",
                        replica.urn)


# --- 6. Prefect server processes wait for the migration ---------------------------

GATED_COMPONENTS = (API_COMPONENT, SERVICES_COMPONENT)


def _dependency_urns(resource: PolicyResource) -> set[str]:
    urns = {d.urn for d in resource.dependencies or []}
    for deps in (resource.property_dependencies or {}).values():
        urns.update(d.urn for d in deps)
    return urns


def replicas_wait_for_migration(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    migrations = {m.urn for m in containers(args.resources, MIGRATION_COMPONENT)}
    for component in GATED_COMPONENTS:
        for replica in containers(args.resources, component):
            if _dependency_urns(replica) & migrations:
                continue
            why = ("the stack has no migration container (label "
                   f"{COMPONENT_LABEL}={MIGRATION_COMPONENT})") if not migrations else "it does not depend on the migration container"
            report_violation(
                f"{describe(replica.name, replica.props)} ({component}) can start before the database "
                f"is migrated: {why}; give it depends_on the migration container or consume its exit code.",
                replica.urn,
            )
