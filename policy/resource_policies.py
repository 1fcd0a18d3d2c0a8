"""Policies that judge one resource by its inputs."""

from __future__ import annotations

from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs

from program_facts import POSTGRES_COMPONENT, REDIS_COMPONENT, pin_problem
from reading import (CONTAINER, MISSING, SERVICE, UNKNOWN, component_of, describe, get, image_of, is_prod_stack,
                     items, stack_of)

DANGEROUS_CAPABILITIES = frozenset({"ALL", "SYS_ADMIN"})


# --- 1. images pinned --------------------------------------------------------------


def images_pinned(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in (CONTAINER, SERVICE):
        return
    image = image_of(args.props)
    if not isinstance(image, str):
        return  # unknown during preview
    problem = pin_problem(image)
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
    if component not in (POSTGRES_COMPONENT, REDIS_COMPONENT):
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
