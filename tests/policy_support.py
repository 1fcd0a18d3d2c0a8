"""The policy pack (policy/) judging the real program's resources, for the policy tests.

There is no Pulumi CLI here, so the program runs under the harness's mocks and
each recorded registration is turned into what pulumi_policy hands a policy:
``ResourceValidationArgs`` for resource policies, ``PolicyResource``s with
parents and dependencies linked for stack policies. Props go through
pulumi_policy's own unknown-checking proxy, as in a real preview, and options
carry only what the engine sends a policy pack (protect, deleteBeforeReplace,
parent; never retainOnDelete). Broken stacks come from config overrides where
the config model allows them, otherwise from mutated registrations.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from inspect import isawaitable

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy

from harness import REPO, Registration, run_program
from support import containers

POLICY_DIR = REPO / "policy"
if str(POLICY_DIR) not in sys.path:
    sys.path.insert(0, str(POLICY_DIR))

import prefect_ha_policies as pack  # noqa: E402

POLICY_NAMES = [p.name for p in pack.POLICIES]
PROD_HTTP = {"tls.enabled": False, "tls.httpPort": 0, "proxy.publicUrl": "http://prefect.example.internal:4200"}


# --- registrations -> pulumi_policy's arguments -------------------------------------


@dataclass(frozen=True)
class Violation:
    policy: str
    message: str
    urn: str


def policy_options(reg: Registration) -> PolicyResourceOptions:
    """What the engine's AnalyzerResourceOptions carries: no retainOnDelete."""
    return PolicyResourceOptions(
        protect=reg.protect,
        ignore_changes=list(getattr(reg, "ignore_changes", []) or []),
        delete_before_replace=reg.delete_before_replace,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
        parent=reg.parent or None,
    )


def policy_props(reg: Registration):
    return unknown_checking_proxy(copy.deepcopy(reg.inputs))


def unique(registrations: list[Registration]) -> list[Registration]:
    """One registration per URN (the harness sees the root stack twice), in order."""
    by_urn = {r.urn: r for r in registrations}
    return [r for r in registrations if by_urn[r.urn] is r]


def resource_args(reg: Registration) -> ResourceValidationArgs:
    return ResourceValidationArgs(reg.type, policy_props(reg), reg.urn, reg.name, policy_options(reg), None)


def stack_args(registrations: list[Registration]) -> StackValidationArgs:
    """Linked as pulumi_policy's AnalyzeStack links them: parents and dependencies
    become PolicyResource objects; URNs outside the stack are dropped."""
    regs = unique(registrations)
    resources = {
        r.urn: PolicyResource(r.type, policy_props(r), r.urn, r.name, policy_options(r), None, None, [], {})
        for r in regs
    }
    for r in regs:
        resource = resources[r.urn]
        resource.parent = resources.get(r.parent)
        resource.dependencies = [resources[u] for u in r.dependencies if u in resources]
        resource.property_dependencies = {
            key: [resources[u] for u in urns if u in resources] for key, urns in r.property_dependencies.items()
        }
    return StackValidationArgs(list(resources.values()))


def _settle(result) -> None:
    if isawaitable(result):
        import asyncio

        asyncio.run(result)


def evaluate(registrations: list[Registration], only: str | None = None) -> list[Violation]:
    """Every policy (or the one named) over the stack, collecting violations."""
    found: list[Violation] = []
    for policy in pack.POLICIES:
        if only is not None and policy.name != only:
            continue
        if isinstance(policy, ResourceValidationPolicy):
            for reg in unique(registrations):
                def report(message, urn=None, _policy=policy.name, _urn=reg.urn):
                    found.append(Violation(_policy, message, _urn))
                _settle(policy.validate(resource_args(reg), report))
        else:
            assert isinstance(policy, StackValidationPolicy)

            def report(message, urn=None, _policy=policy.name):
                found.append(Violation(_policy, message, urn or ""))
            _settle(policy.validate(stack_args(registrations), report))
    return found


def ok_run(stack: str, overrides: dict | None = None):
    run = run_program(stack, overrides)
    assert run.error is None, f"{stack} {overrides}: program failed: {run.error!r}"
    return run


def regs_of(run) -> list[Registration]:
    """A private copy to mutate."""
    return copy.deepcopy(run.registrations)


def by_component(registrations: list[Registration], component: str) -> list[Registration]:
    return containers(unique(registrations), component)


def one(registrations, component: str) -> Registration:
    found = by_component(registrations, component)
    assert len(found) == 1, f"expected one {component} container, got {[r.name for r in found]}"
    return found[0]


def set_label(reg: Registration, key: str, value) -> None:
    labels = [l for l in reg.inputs.get("labels", []) if l["label"] != key]
    if value is not None:
        labels.append({"label": key, "value": value})
    reg.inputs["labels"] = labels


def of(violations: list[Violation], policy: str) -> list[Violation]:
    return [v for v in violations if v.policy == policy]


def drop_dependency(reg: Registration, urn: str, *, explicit: bool = True, through_props: bool = True) -> None:
    if explicit:
        reg.dependencies = [u for u in reg.dependencies if u != urn]
    if through_props:
        reg.property_dependencies = {k: [u for u in v if u != urn] for k, v in reg.property_dependencies.items()}
