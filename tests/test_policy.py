"""The policy pack (policy/) as a whole: its policies and how __main__ builds it,
the shipped stacks (and a preview) pass, unknown values during preview are
never fatal, the program facts it copies are current, and the pack loads alone.

One test also starts the pack the way the CLI does (``python -m pulumi.policy``
in policy/) and talks to it over gRPC. The policies one by one:
tests/test_policy_resources.py and tests/test_policy_stack.py; how registrations
become pulumi_policy's arguments: tests/policy_support.py.
"""

from __future__ import annotations

import ast
import os
import re
import runpy
import select
import shutil
import subprocess
import sys

import grpc
import pulumi_policy
import pytest
import yaml
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy
from pulumi_policy.proxy import UNKNOWN_ARRAY_VALUE, UNKNOWN_STRING_VALUE

from components.prefect_settings import SERVER_AUTH_STRING
from harness import Registration, run_program
from policy_support import (  # evaluate and of: tests/e2e/test_engine.py imports them from here
    POLICY_DIR,
    POLICY_NAMES,
    by_component,
    drop_dependency,
    evaluate,
    of,
    one,
    pack,
    regs_of,
    set_label,
    unique,
)
from support import CONTAINER


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


# --- unknowns and secrets during preview ----------------------------------------------------------


def test_unknown_values_are_skipped_never_fatal(prod_run):
    """During preview images, env lists (secret), ports and label values can be
    unknown; the pulumi_policy proxy raises on reading one. No policy may."""
    regs = regs_of(prod_run)
    set_label(one(regs, "proxy"), pack.TLS_LABEL, UNKNOWN_STRING_VALUE)
    set_label(one(regs, pack.EDGE_CONFIG_COMPONENT), pack.AUTH_LABEL, UNKNOWN_STRING_VALUE)
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
    set_label(one(regs, pack.EDGE_CONFIG_COMPONENT), pack.AUTH_LABEL, "prefect")
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
