"""The policy pack (policy/) against the real program's resources.

There is no Pulumi CLI here, so the program runs under the harness's mocks and
each recorded registration is turned into what pulumi_policy hands a policy:
``ResourceValidationArgs`` for resource policies, ``PolicyResource``s with
parents and dependencies linked for stack policies. Props go through
pulumi_policy's own unknown-checking proxy, as in a real preview, and options
carry only what the engine sends a policy pack (protect, deleteBeforeReplace,
parent; never retainOnDelete). Broken stacks come from config overrides where
the config model allows them, otherwise from mutated registrations.

One test also starts the pack the way the CLI does (``python -m pulumi.policy``
in policy/) and talks to it over gRPC.
"""

from __future__ import annotations

import ast
import re
import copy
import os
import runpy
import select
import shutil
import subprocess
import sys
from dataclasses import dataclass
from inspect import isawaitable

import grpc
import pulumi_policy
import pytest
import yaml
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_ARRAY_VALUE, UNKNOWN_STRING_VALUE, unknown_checking_proxy

from components.prefect_settings import SERVER_AUTH_STRING
from harness import REPO, Registration, run_program
from support import CONTAINER, VOLUME, containers, labels_of

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


@pytest.fixture(scope="module")
def prod_run():
    return ok_run("prod")


@pytest.fixture(scope="module")
def dev_run():
    return ok_run("dev")


# --- the pack itself -------------------------------------------------------------------


def test_policies_are_mandatory_named_once_and_described():
    assert len(POLICY_NAMES) == len(set(POLICY_NAMES)) == 6
    for policy in pack.POLICIES:
        assert isinstance(policy, (ResourceValidationPolicy, StackValidationPolicy)), policy.name
        assert policy.enforcement_level is EnforcementLevel.MANDATORY, policy.name
        assert policy.description and policy.description.endswith("."), policy.name
    kinds = {p.name: type(p).__name__ for p in pack.POLICIES}
    assert kinds == {
        "images-pinned": "ResourceValidationPolicy",
        "no-privileged-containers": "ResourceValidationPolicy",
        "postgres-volume-retained": "StackValidationPolicy",
        "prod-tls-and-auth": "StackValidationPolicy",
        "no-data-ports-in-prod": "ResourceValidationPolicy",
        "replicas-wait-for-migration": "StackValidationPolicy",
    }


def test_main_builds_the_pack_from_the_policy_list(monkeypatch):
    """PolicyPack's constructor serves forever, so a stand-in records what __main__ passes."""
    built = []

    class Recorder:
        def __init__(self, **kwargs):
            built.append(kwargs)

    monkeypatch.setattr(pulumi_policy, "PolicyPack", Recorder)
    runpy.run_path(str(POLICY_DIR / "__main__.py"), run_name="__main__")
    assert len(built) == 1
    assert built[0]["policies"] is pack.POLICIES
    assert built[0]["enforcement_level"] is EnforcementLevel.MANDATORY
    manifest = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert built[0]["name"] == manifest["name"] == pack.PACK_NAME
    assert manifest["runtime"] == "python" or manifest["runtime"]["name"] == "python"
    # __main__ stays thin: no policy is defined there.
    tree = ast.parse((POLICY_DIR / "__main__.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.Lambda))]
    requirements = (POLICY_DIR / "requirements.txt").read_text()
    # Self-contained: nothing from outside policy/ is installed or imported.
    assert "pulumi-policy" in requirements and "../" not in requirements


def test_the_pack_spells_no_prefect_setting_name():
    """Only the generated program_facts.py carries the program's spellings."""
    for path in POLICY_DIR.rglob("*"):
        if "venv" in path.relative_to(POLICY_DIR).parts or path.name == "program_facts.py":
            continue
        if path.is_file() and path.suffix in (".py", ".md", ".yaml", ".txt"):
            assert not re.search(r"\bPREFECT_[A-Z0-9_]+", path.read_text()), path


# --- the shipped stacks pass ------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_shipped_stack_passes(stack_run, policy):
    stack, run = stack_run
    violations = evaluate(run.registrations, only=policy)
    assert violations == [], "\n".join(v.message for v in violations)


def test_preview_run_passes_too():
    run = run_program("prod", preview=True)
    assert run.error is None, repr(run.error)
    assert evaluate(run.registrations) == []


# --- 1. images pinned --------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("image, pinned", [
    ("nginx:1.27.3", True),
    ("prefecthq/prefect:3.8.8-python3.12", True),
    ("registry.local:5000/prefect:3.8.8", True),
    (f"nginx@{DIGEST}", True),
    (f"nginx:latest@{DIGEST}", True),
    (f"registry.local:5000/prefect@{DIGEST}", True),
    (DIGEST, True),  # an image ID
    ("nginx", False),
    ("nginx:latest", False),
    ("prefecthq/prefect:3-latest", False),
    ("registry.local:5000/prefect", False),
    ("registry.local:5000/prefect:latest", False),
    ("nginx@sha256:short", False),
])
def test_image_pinning_rule(image, pinned):
    assert (pack.image_problem(image) is None) is pinned


@pytest.mark.parametrize("image", ["nginx", "nginx:latest", "prefecthq/prefect:3-latest", "localhost:5000/nginx"])
def test_unpinned_image_is_reported(dev_run, image):
    regs = regs_of(dev_run)
    proxy = one(regs, "proxy")
    proxy.inputs["image"] = image
    found = of(evaluate(regs), "images-pinned")
    assert len(found) == 1
    assert found[0].urn == proxy.urn
    assert proxy.name in found[0].message and proxy.inputs["name"] in found[0].message
    assert repr(image) in found[0].message


# --- 2. no privileged containers -----------------------------------------------------------


def test_privileged_container_is_reported(dev_run):
    regs = regs_of(dev_run)
    api = one(regs, "api")
    api.inputs["privileged"] = True
    found = of(evaluate(regs), "no-privileged-containers")
    assert [v.urn for v in found] == [api.urn]
    assert api.name in found[0].message and "privileged" in found[0].message


@pytest.mark.parametrize("adds", [["ALL"], ["SYS_ADMIN"], ["NET_BIND_SERVICE", "cap_sys_admin"]])
def test_privileged_capabilities_are_reported(dev_run, adds):
    regs = regs_of(dev_run)
    redis = one(regs, "redis")
    redis.inputs["capabilities"] = {"adds": adds, "drops": ["ALL"]}
    found = of(evaluate(regs), "no-privileged-containers")
    assert [v.urn for v in found] == [redis.urn]
    assert redis.name in found[0].message


def test_harmless_capabilities_pass(dev_run):
    regs = regs_of(dev_run)
    one(regs, "redis").inputs["capabilities"] = {"adds": ["NET_BIND_SERVICE", "CHOWN"], "drops": ["ALL"]}
    assert of(evaluate(regs), "no-privileged-containers") == []


# --- 3. the Postgres volume is retained -----------------------------------------------------


def postgres_volume(regs) -> Registration:
    postgres = one(regs, "postgres")
    mount = next(m for m in postgres.inputs["volumes"] if m["containerPath"] == pack.POSTGRES_DATA_DIR)
    return next(r for r in unique(regs) if r.type == VOLUME and r.inputs["name"] == mount["volumeName"])


@pytest.mark.parametrize("stack, overrides", [("dev", {}), ("prod", {}), ("dev", {"postgres.retainVolume": False})])
def test_declared_data_volume_matches_retain_on_delete(stack, overrides):
    """Policy packs cannot see retain_on_delete: the program declares it on the
    Postgres container. Here, where both are visible, they must agree."""
    regs = ok_run(stack, overrides).registrations
    volume, postgres = postgres_volume(regs), one(regs, "postgres")
    declared = labels_of(postgres).get(pack.DATA_VOLUME_LABEL)
    assert declared in (pack.DATA_VOLUME_RETAINED, "disposable"), f"{pack.DATA_VOLUME_LABEL}={declared!r}"
    assert (declared == pack.DATA_VOLUME_RETAINED) is volume.retain_on_delete


def test_volume_deleted_with_the_stack_is_reported():
    regs = ok_run("dev", {"postgres.retainVolume": False}).registrations
    volume = postgres_volume(regs)
    assert not volume.retain_on_delete
    found = of(evaluate(regs), "postgres-volume-retained")
    assert [v.urn for v in found] == [volume.urn]
    assert volume.name in found[0].message and volume.inputs["name"] in found[0].message


@pytest.mark.parametrize("declared", ["disposable", None])
def test_cleared_declaration_is_reported(dev_run, declared):
    regs = regs_of(dev_run)
    volume = postgres_volume(regs)
    volume.retain_on_delete = False
    set_label(one(regs, "postgres"), pack.DATA_VOLUME_LABEL, declared)
    found = of(evaluate(regs), "postgres-volume-retained")
    assert [v.urn for v in found] == [volume.urn]
    assert volume.name in found[0].message


def test_protect_counts_as_retained(dev_run):
    regs = regs_of(dev_run)
    set_label(one(regs, "postgres"), pack.DATA_VOLUME_LABEL, None)
    postgres_volume(regs).protect = True
    assert of(evaluate(regs), "postgres-volume-retained") == []


def test_retain_on_delete_option_is_read_when_pulumi_policy_exposes_it(dev_run):
    regs = regs_of(dev_run)
    volume = postgres_volume(regs)
    args = stack_args(regs)
    resource = next(r for r in args.resources if r.urn == volume.urn)
    resource.opts.retain_on_delete = False  # a later pulumi_policy; the declaration says retained
    found = []
    pack.postgres_volume_retained(args, lambda message, urn=None: found.append(urn))
    assert found == [volume.urn]


def test_data_directory_off_the_volume_is_reported(dev_run):
    regs = regs_of(dev_run)
    postgres = one(regs, "postgres")
    for mount in postgres.inputs["volumes"]:
        mount["containerPath"] = "/srv/elsewhere"
    found = of(evaluate(regs), "postgres-volume-retained")
    assert [v.urn for v in found] == [postgres.urn]
    assert postgres.name in found[0].message and pack.POSTGRES_DATA_DIR in found[0].message


# --- 4. prod has TLS and auth --------------------------------------------------------------------


def test_prod_without_tls_is_reported():
    regs = ok_run("prod", PROD_HTTP).registrations
    proxy = one(regs, "proxy")
    found = of(evaluate(regs), "prod-tls-and-auth")
    assert [v.urn for v in found] == [proxy.urn]
    assert proxy.name in found[0].message and f"{pack.TLS_LABEL}=off" in found[0].message


def test_prod_without_auth_is_reported():
    regs = ok_run("prod", {"auth.mode": "none"}).registrations
    proxy = one(regs, "proxy")
    found = of(evaluate(regs), "prod-tls-and-auth")
    assert [v.urn for v in found] == [proxy.urn]
    assert proxy.name in found[0].message and f"{pack.AUTH_LABEL}=none" in found[0].message


def test_prod_with_nginx_auth_passes():
    regs = ok_run("prod", {"auth.mode": "nginx"}).registrations
    assert of(evaluate(regs), "prod-tls-and-auth") == []


def test_tls_and_auth_are_not_required_outside_prod():
    regs = ok_run("dev", {"auth.mode": "none", "tls.enabled": False}).registrations
    assert of(evaluate(regs), "prod-tls-and-auth") == []


def test_prod_proxy_without_declarations_is_reported(prod_run):
    regs = regs_of(prod_run)
    proxy = one(regs, "proxy")
    set_label(proxy, pack.TLS_LABEL, None)
    set_label(proxy, pack.AUTH_LABEL, None)
    found = of(evaluate(regs), "prod-tls-and-auth")
    assert len(found) == 2 and {v.urn for v in found} == {proxy.urn}
    assert any(pack.TLS_LABEL in v.message for v in found) and any(pack.AUTH_LABEL in v.message for v in found)


def test_declared_tls_without_the_https_port_is_reported(prod_run):
    regs = regs_of(prod_run)
    proxy = one(regs, "proxy")
    set_label(proxy, pack.TLS_LABEL, "generated")
    set_label(proxy, pack.AUTH_LABEL, "nginx")
    proxy.inputs["ports"] = [p for p in proxy.inputs.get("ports", []) if p.get("internal") != pack.TLS_INTERNAL_PORT]
    found = of(evaluate(regs), "prod-tls-and-auth")
    assert [v.urn for v in found] == [proxy.urn]
    assert str(pack.TLS_INTERNAL_PORT) in found[0].message


def test_prefect_auth_missing_on_a_replica_is_reported(prod_run):
    regs = regs_of(prod_run)
    proxy = one(regs, "proxy")
    set_label(proxy, pack.TLS_LABEL, "generated")
    set_label(proxy, pack.AUTH_LABEL, "prefect")
    proxy.inputs["ports"] = [{"internal": pack.TLS_INTERNAL_PORT, "external": 443}]
    replicas = by_component(regs, "api")
    assert len(replicas) == 3
    for replica in replicas:
        envs = [e for e in replica.inputs["envs"] if not e.startswith(f"{SERVER_AUTH_STRING}=")]
        replica.inputs["envs"] = envs + [f"{SERVER_AUTH_STRING}=prefect:pw"]
    assert of(evaluate(regs), "prod-tls-and-auth") == []
    bad = replicas[1]
    bad.inputs["envs"] = [e for e in bad.inputs["envs"] if not e.startswith(f"{SERVER_AUTH_STRING}=")]
    found = of(evaluate(regs), "prod-tls-and-auth")
    assert [v.urn for v in found] == [bad.urn]
    assert bad.name in found[0].message and SERVER_AUTH_STRING in found[0].message


# --- 5. no data ports in prod --------------------------------------------------------------------


@pytest.mark.parametrize("key, port, component", [("postgres.hostPort", 15432, "postgres"),
                                                  ("redis.hostPort", 16379, "redis")])
def test_published_data_port_in_prod_is_reported(key, port, component):
    regs = ok_run("prod", {key: port}).registrations
    target = one(regs, component)
    found = of(evaluate(regs), "no-data-ports-in-prod")
    assert [v.urn for v in found] == [target.urn]
    assert target.name in found[0].message and f"{port}->" in found[0].message and not re.search(r"\d\.0\b", found[0].message)


def test_published_data_ports_are_fine_outside_prod(dev_run):
    assert [p["external"] for p in one(dev_run.registrations, "postgres").inputs["ports"]] == [15432]
    assert of(evaluate(dev_run.registrations), "no-data-ports-in-prod") == []


def test_prod_is_any_stack_named_prod_something():
    assert pack.is_prod_stack(f"urn:pulumi:prod::prefect-ha::{CONTAINER}::x")
    assert pack.is_prod_stack(f"urn:pulumi:prod-eu::prefect-ha::{CONTAINER}::x")
    assert not pack.is_prod_stack(f"urn:pulumi:dev::prefect-ha::{CONTAINER}::prod")
    assert not pack.is_prod_stack("urn:pulumi:staging::prefect-ha::prod::x")


# --- 6. replicas wait for the migration ------------------------------------------------------------


def drop_dependency(reg: Registration, urn: str, *, explicit: bool = True, through_props: bool = True) -> None:
    if explicit:
        reg.dependencies = [u for u in reg.dependencies if u != urn]
    if through_props:
        reg.property_dependencies = {k: [u for u in v if u != urn] for k, v in reg.property_dependencies.items()}


def test_replica_not_waiting_for_the_migration_is_reported(prod_run):
    regs = regs_of(prod_run)
    migration = one(regs, "migration")
    replica = by_component(regs, "api")[0]
    drop_dependency(replica, migration.urn)
    found = of(evaluate(regs), "replicas-wait-for-migration")
    assert [v.urn for v in found] == [replica.urn]
    assert replica.name in found[0].message


@pytest.mark.parametrize("keep", ["explicit", "through_props"])
def test_either_kind_of_dependency_counts(prod_run, keep):
    regs = regs_of(prod_run)
    migration = one(regs, "migration")
    for replica in by_component(regs, "api") + by_component(regs, "services"):
        drop_dependency(replica, migration.urn, explicit=keep != "explicit", through_props=keep != "through_props")
    if keep == "through_props":
        assert all(migration.urn in r.property_dependencies.get("labels", []) for r in by_component(regs, "api"))
    assert of(evaluate(regs), "replicas-wait-for-migration") == []


def test_services_container_must_wait_too(dev_run):
    regs = regs_of(dev_run)
    services = by_component(regs, "services")[0]
    drop_dependency(services, one(regs, "migration").urn)
    found = of(evaluate(regs), "replicas-wait-for-migration")
    assert [v.urn for v in found] == [services.urn]


def test_no_migration_container_at_all_is_reported(dev_run):
    regs = regs_of(dev_run)
    set_label(one(regs, "migration"), pack.COMPONENT_LABEL, "something-else")
    gated = by_component(regs, "api") + by_component(regs, "services")
    found = of(evaluate(regs), "replicas-wait-for-migration")
    assert sorted(v.urn for v in found) == sorted(r.urn for r in gated)
    assert all("no migration container" in v.message for v in found)


# --- unknowns and secrets during preview ----------------------------------------------------------


def test_unknown_values_are_skipped_never_fatal(prod_run):
    """During preview images, env lists (secret), ports and label values can be
    unknown; the pulumi_policy proxy raises on reading one. No policy may."""
    regs = regs_of(prod_run)
    set_label(one(regs, "proxy"), pack.TLS_LABEL, UNKNOWN_STRING_VALUE)
    set_label(one(regs, "proxy"), pack.AUTH_LABEL, UNKNOWN_STRING_VALUE)
    set_label(one(regs, "postgres"), pack.DATA_VOLUME_LABEL, UNKNOWN_STRING_VALUE)
    for reg in unique(regs):
        if reg.type != CONTAINER:
            continue
        reg.inputs["image"] = UNKNOWN_STRING_VALUE
        reg.inputs["envs"] = UNKNOWN_ARRAY_VALUE
        reg.inputs["ports"] = UNKNOWN_ARRAY_VALUE
        reg.inputs["privileged"] = "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7"
        reg.inputs["capabilities"] = {"adds": UNKNOWN_ARRAY_VALUE}
        for label in reg.inputs.get("labels", []):
            if label["label"] not in (pack.COMPONENT_LABEL,):
                label["value"] = UNKNOWN_STRING_VALUE
        for mount in reg.inputs.get("volumes", []):
            mount["volumeName"] = UNKNOWN_STRING_VALUE
    assert evaluate(regs) == []


def test_unknown_entries_inside_lists_are_skipped(prod_run):
    regs = regs_of(prod_run)
    proxy = one(regs, "proxy")
    set_label(proxy, pack.TLS_LABEL, "generated")
    set_label(proxy, pack.AUTH_LABEL, "prefect")
    proxy.inputs["ports"] = [UNKNOWN_STRING_VALUE]
    for replica in by_component(regs, "api"):
        replica.inputs["envs"] = [e for e in replica.inputs["envs"] if not e.startswith(f"{SERVER_AUTH_STRING}=")]
        replica.inputs["envs"].append(UNKNOWN_STRING_VALUE)
    assert of(evaluate(regs), "prod-tls-and-auth") == []
    one(regs, "redis").inputs["ports"] = [UNKNOWN_STRING_VALUE]
    # A port whose numbers are unknown is still a published port.
    assert [v.urn for v in of(evaluate(regs), "no-data-ports-in-prod")] == [one(regs, "redis").urn]


# --- the pack served as the CLI runs it -----------------------------------------------------------


def _struct(raw: dict) -> struct_pb2.Struct:
    return json_format.ParseDict(raw, struct_pb2.Struct())


def _analyzer_resource(reg: Registration) -> proto.AnalyzerResource:
    return proto.AnalyzerResource(
        urn=reg.urn, type=reg.type, name=reg.name,
        properties=_struct(reg.raw_inputs),
        options=proto.AnalyzerResourceOptions(
            protect=reg.protect, deleteBeforeReplace=reg.delete_before_replace,
            deleteBeforeReplaceDefined=True, parent=reg.parent),
        parent=reg.parent, dependencies=reg.dependencies,
        propertyDependencies={k: proto.AnalyzerPropertyDependencies(urns=v)
                              for k, v in reg.property_dependencies.items() if v},
    )


def test_program_facts_copy_is_current():
    from components.policy_facts import render

    assert (POLICY_DIR / "program_facts.py").read_text() == render(), (
        "policy/program_facts.py is stale: python -m components.policy_facts > policy/program_facts.py")


@pytest.fixture(scope="module")
def lone_pack(tmp_path_factory):
    """policy/ copied alone, as `pulumi policy publish` ships it: no components/ beside it."""
    target = tmp_path_factory.mktemp("pack") / "policy"
    shutil.copytree(POLICY_DIR, target, ignore=shutil.ignore_patterns("venv", "__pycache__"))
    return target


def test_the_pack_loads_without_the_program(lone_pack):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_") and k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", "import sys, prefect_ha_policies; print('components' in sys.modules)"],
        cwd=lone_pack, capture_output=True, text=True, env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


@pytest.fixture(scope="module")
def served_pack(lone_pack):
    """``python -m pulumi.policy <engine> .`` in a lone copy of policy/, as
    pulumi-analyzer-policy-python starts it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_") and k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."],
        cwd=lone_pack, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline().decode().strip() if ready else ""
        if not line.isdigit():
            proc.kill()
            raise AssertionError(f"the pack did not start: {line!r} {proc.stderr.read().decode()[-2000:]}")
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_served_pack_lists_its_mandatory_policies(served_pack):
    from google.protobuf import empty_pb2

    info = served_pack.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == pack.PACK_NAME
    assert [p.name for p in info.policies] == POLICY_NAMES
    assert {p.enforcementLevel for p in info.policies} == {proto.MANDATORY}


def test_served_pack_reports_over_grpc(served_pack, dev_run):
    regs = regs_of(dev_run)
    proxy = one(regs, "proxy")
    proxy.inputs["image"] = proxy.raw_inputs["image"] = "nginx:latest"
    response = served_pack.Analyze(proto.AnalyzeRequest(
        urn=proxy.urn, type=proxy.type, name=proxy.name, properties=_struct(proxy.raw_inputs),
        options=proto.AnalyzerResourceOptions(protect=False)), timeout=30)
    assert [(d.policyName, d.enforcementLevel) for d in response.diagnostics] == [("images-pinned", proto.MANDATORY)]
    assert proxy.name in response.diagnostics[0].message

    replica = one(regs, "api")
    drop_dependency(replica, one(regs, "migration").urn)
    response = served_pack.AnalyzeStack(
        proto.AnalyzeStackRequest(resources=[_analyzer_resource(r) for r in unique(regs)]), timeout=60)
    waits = [(d.urn, d.enforcementLevel) for d in response.diagnostics if d.policyName == "replicas-wait-for-migration"]
    assert waits == [(replica.urn, proto.MANDATORY)]
    assert replica.name in next(d.message for d in response.diagnostics if d.urn == replica.urn)
