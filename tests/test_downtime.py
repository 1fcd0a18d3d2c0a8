"""Changes that replace Postgres, Redis or nginx (fixed names: a stop, then a start)
move their fingerprint in the stack output a preview diffs; rolling and reloading
changes move none."""

import pytest

from components import downtime
from harness import StackMocks, run_program


def replaced(stack: str, change: dict) -> dict[str, list[str]]:
    """Per fixed container, the inputs whose fingerprint ``change`` moves (what the
    preview's output diff shows)."""
    before, after = run_program(stack), run_program(stack, change)
    assert before.error is None and after.error is None, (before.error, after.error)
    old, new = before.outputs[downtime.OUTPUT], after.outputs[downtime.OUTPUT]
    return {c: sorted(k for k in {*old[c], *new[c]} if old[c].get(k) != new[c].get(k))
            for c in new if old[c] != new[c]}


@pytest.mark.parametrize("stack, change, expected", [
    ("dev", {"postgres.image": "postgres:17.2"}, {"postgres": ["image"]}),
    # 3 -> 6 replicas: 7 Prefect processes need more than 100 connections
    ("prod", {"api.replicas": 6}, {"postgres": ["command"]}),
    ("dev", {"redis.image": "redis:7.4.2"}, {"redis": ["image"]}),
    ("prod", {"proxy.port": 8443}, {"nginx": ["ports"]}),
    ("prod", {"tls.httpPort": 0}, {"nginx": ["ports"]}),
])
def test_a_change_that_replaces_a_fixed_container_moves_its_fingerprint(stack, change, expected):
    assert replaced(stack, change) == expected


@pytest.mark.parametrize("stack, change", [
    ("dev", {"api.replicas": 3}),
    ("dev", {"prefect.logLevel": "WARNING", "prefect.image": "prefecthq/prefect:3.9.1-python3.12"}),
    ("prod", {"proxy.rateLimit": 20, "proxy.allowCidrs": '["10.0.0.0/8"]', "auth.mode": "nginx"}),
    ("dev", {"worker.limit": 4, "api.memoryLimit": "2g"}),
    ("prod", {"secrets.rotation": 1}),  # mocks keep the password: Postgres's init password never rotates
])
def test_changes_that_roll_or_reload_move_no_fingerprint(stack, change):
    assert replaced(stack, change) == {}


def test_the_fingerprints_are_exported_and_hold_no_secret():
    run = run_program("prod")
    assert run.error is None, run.error
    exported = run.outputs[downtime.OUTPUT]
    assert set(exported) == {"postgres", "redis", "nginx"}
    assert {"image", "envs", "command"} <= set(exported["postgres"])
    assert not run.output_is_secret(downtime.OUTPUT)
    password = StackMocks().password
    assert password not in str(exported)
