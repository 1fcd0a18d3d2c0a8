"""The migration job gates everything after it on its exit code."""

import re

import pulumi
import pytest

from components.migration import MigrationFailed, check_exit_code
from harness import StackMocks, run_program
from support import RANDOM_ID, component_of, container, containers, env_of, without_digest


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_failed_migration_stops_the_deployment_before_any_replica(stack):
    run = run_program(stack, mocks=StackMocks(exit_codes={f"prefect-ha-{stack}-migrate": 3}))
    assert isinstance(run.error, MigrationFailed), repr(run.error)
    assert isinstance(run.error, pulumi.RunError)
    assert re.search(rf"prefect-ha-{stack}-migrate-[0-9a-f]{{8}} exited with code 3", str(run.error)), run.error
    created = {without_digest(r.inputs["name"]): component_of(r) for r in containers(run)}
    assert created[f"prefect-ha-{stack}-migrate"] == "migration"
    assert not [n for n, c in created.items() if c in ("api", "services", "proxy")], created
    # nor their generations: a new one now would roll them when the change is undone
    generations = sorted(r.name for r in run.of_type(RANDOM_ID))
    assert generations and all("api" not in g and "services" not in g for g in generations), generations


def test_successful_migration_lets_replicas_through():
    run = run_program("prod", mocks=StackMocks(exit_codes={"prefect-ha-prod-migrate": 0}))
    assert run.error is None
    assert len(containers(run, "api")) == 3


def test_preview_does_not_run_the_gate():
    """Before the job has run its exit code is unknown: a code that stops `up`
    does not stop the preview, which still plans every replica."""
    failing = StackMocks(exit_codes={"prefect-ha-prod-migrate": 3})
    preview = run_program("prod", mocks=failing, preview=True)
    assert preview.error is None, repr(preview.error)
    assert len(containers(preview, "api")) == 3
    up = run_program("prod", mocks=failing)
    assert isinstance(up.error, MigrationFailed), repr(up.error)


@pytest.mark.parametrize("code, shown", [(1, "1"), (2.0, "2"), (137, "137"), (None, "unknown")])
def test_check_exit_code_rejects_anything_but_zero(code, shown):
    with pytest.raises(MigrationFailed, match=f"exited with code {shown};"):
        check_exit_code("m", code)
    assert check_exit_code("m", 0) == 0


def test_migration_registers_blocks_once_and_replicas_do_not(stack_run):
    _, run = stack_run
    migrate = container(run, "migration")
    assert "register_blocks.py" in migrate.inputs["command"][-1]
    upload = migrate.inputs["uploads"][0]
    assert "run_block_auto_registration" in upload["content"]
    assert migrate.inputs["command"][-1].index("database upgrade") < migrate.inputs["command"][-1].index("register_blocks")
    env = env_of(migrate)
    assert env["PREFECT_SERVER_DATABASE_TIMEOUT"] == "600"
    for r in containers(run, "api") + containers(run, "services"):
        env, name = env_of(r), r.inputs["name"]
        assert env["PREFECT_SERVER_REGISTER_BLOCKS_ON_START"] == "false", name
        assert env["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] == "false", name


def test_database_timeout_is_configurable():
    run = run_program("dev", {"migration.databaseTimeout": 1200})
    migrate = container(run, "migration")
    assert env_of(migrate)["PREFECT_SERVER_DATABASE_TIMEOUT"] == "1200"
