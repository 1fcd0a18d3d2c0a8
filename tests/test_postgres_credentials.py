"""The Postgres credentials job: its script run for real against a throwaway Postgres
(trusted socket, passwords over TCP, as in the official image), and its place in
the stack under mocks."""

from __future__ import annotations

import os
import subprocess

import pytest

from components.postgres import (CREDENTIALS_COMPONENT, CREDENTIALS_SCRIPT, OWNER_ENV, REFUSED, ROLE_PASSWORD_ENV,
                                 CredentialsRefused, check_credentials)
from harness import StackMocks, run_program
from postgres_support import throwaway_postgres
from support import component_of, container, containers, env_of
from test_postgres_url_live import HOSTILE_PASSWORDS, connect
from components.urls import postgres_url

OWNER = "prefect-ha/dev/prefect-ha-dev"


@pytest.fixture
def server():
    with throwaway_postgres() as pg:
        yield pg


def volume_of_a_stack(server, *, user="prefect", database="prefect", password="the-old-password", owner=None):
    """What a Postgres volume of an earlier deployment holds: its role, database and owner."""
    server.psql(f"CREATE ROLE \"{user}\" LOGIN SUPERUSER PASSWORD :'pw';\nCREATE DATABASE \"{database}\" OWNER \"{user}\";\n",
                f"pw={password}")
    if owner is not None:
        server.psql(f"COMMENT ON DATABASE \"{database}\" IS '{owner}';")


def run_job(server, password: str, *, owner: str = OWNER, user="prefect", database="prefect"):
    """CREDENTIALS_SCRIPT as the job runs it: the server's socket in PGHOST, the role's password in
    the environment only."""
    env = {"PATH": f"{server.bin_dir}:{os.environ['PATH']}", "PGHOST": str(server.socket_dir),
           "PGPORT": str(server.port), "PGUSER": user, "PGDATABASE": database,
           OWNER_ENV: owner, ROLE_PASSWORD_ENV: password}
    return subprocess.run(["sh", "-c", CREDENTIALS_SCRIPT], capture_output=True, text=True, env=env, timeout=60)


def owner_of(server, database="prefect") -> str:
    return server.psql(f"select shobj_description(oid, 'pg_database') from pg_database where datname = '{database}'")


def logs_in(server, password, user="prefect", database="prefect") -> bool:
    try:
        return connect(postgres_url(user, password, "127.0.0.1", server.port, database)) == 1
    except Exception:  # noqa: BLE001 a refused login is the answer
        return False


@pytest.mark.parametrize("password", [*HOSTILE_PASSWORDS, "it's \"quoted\"; DROP ROLE x; --"])
def test_a_kept_volume_takes_the_stacks_current_password(server, password):
    volume_of_a_stack(server)
    assert logs_in(server, "the-old-password") and not logs_in(server, password)
    done = run_job(server, password)
    assert done.returncode == 0, done.stderr
    assert logs_in(server, password) and not logs_in(server, "the-old-password")
    # the password is in no output
    assert password not in done.stdout + done.stderr
    assert "claimed this Postgres volume" in done.stdout  # a volume without an owner is claimed
    assert owner_of(server) == OWNER


def test_the_owning_stack_runs_it_again_and_again(server):
    volume_of_a_stack(server, owner=OWNER)
    for password in ("first-password", "second-password"):
        done = run_job(server, password)
        assert done.returncode == 0, done.stderr
        assert logs_in(server, password)
        assert "claimed" not in done.stdout
    assert owner_of(server) == OWNER


@pytest.mark.parametrize("volume, message", [
    ({"owner": "prefect-ha/prod/prefect-ha-dev"}, "belongs to 'prefect-ha/prod/prefect-ha-dev'"),
    ({"user": "someone"}, "has no role prefect"),
    ({"database": "other"}, "has no database prefect"),
])
def test_a_volume_of_another_stack_is_refused_and_left_as_it_was(server, volume, message):
    volume_of_a_stack(server, **volume)
    done = run_job(server, "the-new-password")
    assert done.returncode == REFUSED, (done.stdout, done.stderr)
    assert message in done.stderr and "refused" in done.stderr
    user, database = volume.get("user", "prefect"), volume.get("database", "prefect")
    assert logs_in(server, "the-old-password", user, database), "the refused volume's password changed"
    assert owner_of(server, database) == volume.get("owner", "")


def test_the_exit_code_gate_names_the_job_and_the_cause():
    assert check_credentials("c", 0) == 0
    with pytest.raises(CredentialsRefused, match="belongs to another stack"):
        check_credentials("prefect-ha-dev-postgres-credentials-1a2b3c4d", REFUSED)
    with pytest.raises(CredentialsRefused, match="could not be set.*docker logs prefect-ha-dev-postgres-credentials"):
        check_credentials("prefect-ha-dev-postgres-credentials", 2)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_job_runs_after_postgres_and_gates_the_migration_with_the_password_secret(stack):
    run = run_program(stack)
    assert run.error is None, run.error
    job, pg, migration = container(run, CREDENTIALS_COMPONENT), container(run, "postgres"), container(run, "migration")
    assert pg.urn in job.all_dependencies()
    assert job.urn in migration.dependencies
    env = env_of(job)
    assert env[ROLE_PASSWORD_ENV] == StackMocks().password and job.input_is_secret("envs")
    assert env[OWNER_ENV] == f"prefect-ha/{stack}/prefect-ha-{stack}"
    assert env["PGHOST"] == "/var/run/postgresql"
    assert StackMocks().password not in " ".join(job.inputs["command"])
    # the job and Postgres share the socket's volume, and nothing else
    socket_volume = {v["volumeName"] for v in job.inputs["volumes"]}
    assert socket_volume == {f"prefect-ha-{stack}-postgres-socket"}
    assert socket_volume < {v["volumeName"] for v in pg.inputs["volumes"]}


def test_a_refused_volume_stops_the_deployment_before_the_migration():
    run = run_program("dev", mocks=StackMocks(exit_codes={"prefect-ha-dev-postgres-credentials": REFUSED}))
    assert isinstance(run.error, CredentialsRefused), repr(run.error)
    made = {component_of(r) for r in containers(run)}
    assert not made & {"migration", "api", "services", "proxy"}, made
