"""The pack's resource policies over the program's containers: images pinned, no
privileged containers, no data ports published in prod."""

from __future__ import annotations

import re

import pytest

from policy_support import evaluate, of, ok_run, one, pack, regs_of
from support import CONTAINER


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
    assert (pack.pin_problem(image) is None) is pinned


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
