"""Changes that replace Postgres, Redis or nginx (fixed names: a stop, then a start)
are said in the preview; rolling and reloading changes are not."""

import logging

import pytest

from components import downtime
from harness import StackMocks, run_program


def test_a_first_deployment_or_an_unchanged_one_warns_about_nothing():
    current = {"postgres": {"image": "a", "envs": "b"}, "nginx": {"ports": "c"}}
    assert downtime.warnings(None, current) == []
    assert downtime.warnings({}, current) == []
    assert downtime.warnings(current, current) == []


def test_each_replaced_container_gets_one_sentence_naming_what_changed():
    before = {"postgres": {"image": "a", "envs": "b"}, "redis": {"image": "r"}, "nginx": {"ports": "c"}}
    now = {"postgres": {"image": "A", "envs": "B"}, "redis": {"image": "r"}, "nginx": {"ports": "c", "labels": "l"}}
    found = downtime.warnings(before, now)
    assert found == [
        f"{downtime.CONSEQUENCES['postgres']}; changed: envs, image.",
        f"{downtime.CONSEQUENCES['nginx']}; changed: labels.",
    ]


def preview_warnings(stack: str, change: dict, caplog) -> list[str]:
    """The program's warnings in a preview of ``change`` over a deployment of ``stack``."""
    deployed = run_program(stack)
    assert deployed.error is None, deployed.error
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run = run_program(stack, change, preview=True,
                          mocks=StackMocks(previous_outputs={downtime.OUTPUT: deployed.outputs[downtime.OUTPUT]}))
    assert run.error is None, run.error
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("stack, change, replaced", [
    ("dev", {"postgres.image": "postgres:17.2"}, {"postgres": "image"}),
    # 3 -> 6 replicas: 7 Prefect processes need more than 100 connections
    ("prod", {"api.replicas": 6}, {"postgres": "command"}),
    ("dev", {"redis.image": "redis:7.4.2"}, {"redis": "image"}),
    ("prod", {"proxy.port": 8443}, {"nginx": "ports"}),
    ("prod", {"tls.httpPort": 0}, {"nginx": "ports"}),
])
def test_a_preview_says_which_fixed_container_it_replaces_and_why(stack, change, replaced, caplog):
    found = preview_warnings(stack, change, caplog)
    assert found == [f"{downtime.CONSEQUENCES[c]}; changed: {keys}." for c, keys in replaced.items()], found


@pytest.mark.parametrize("stack, change", [
    ("dev", {"api.replicas": 3}),
    ("dev", {"prefect.logLevel": "WARNING", "prefect.image": "prefecthq/prefect:3.9.1-python3.12"}),
    ("prod", {"proxy.rateLimit": 20, "proxy.allowCidrs": '["10.0.0.0/8"]', "auth.mode": "nginx"}),
    ("dev", {"worker.limit": 4, "api.memoryLimit": "2g"}),
])
def test_changes_that_roll_or_reload_warn_about_nothing(stack, change, caplog):
    assert preview_warnings(stack, change, caplog) == []


def test_the_fingerprints_are_exported_and_hold_no_secret():
    run = run_program("prod")
    assert run.error is None, run.error
    exported = run.outputs[downtime.OUTPUT]
    assert set(exported) == {"postgres", "redis", "nginx"}
    assert {"image", "envs", "command"} <= set(exported["postgres"])
    assert not run.output_is_secret(downtime.OUTPUT)
    password = StackMocks().password
    assert password not in str(exported)
