"""The gates before the first Prefect server, on the engine and a real Docker engine.

- A migration that fails stops `pulumi up`: the engine reports it and no API container exists.
- A Postgres volume kept from an earlier deployment is used again: destroyed and brought back,
  the stack comes up with new generated passwords and the flow runs made before are there; a
  volume initialised with some other password (made before the credentials job existed) too.
- A volume of another stack (the same names, another stack) is refused and left as it was.
"""

import json
import re

import pytest

from testbed import COMPONENT_LABEL, IMAGES, deploy, new_run_id, run_labels, tear_down, wait_for

pytestmark = pytest.mark.timeout(900)

def components_of(deployment) -> list[str]:
    return sorted(c.labels.get(COMPONENT_LABEL) for c in deployment.containers())


def runs(deployment, *make: str) -> list:
    """Every flow run's [id, name, state], after making ``make`` more (see scripts/kept_runs.py)."""
    args = ["make", *make] if make else ["list"]
    return json.loads(deployment.prefect("kept_runs.py", *args).strip().splitlines()[-1])


def initialise_volume(client, volume_name: str, run_id: str, *, owner: str | None = None) -> None:
    """A Postgres volume as an earlier deployment left it: role and database prefect, some
    other password, and (when given) the owning stack in the database's comment."""
    client.volumes.create(volume_name, labels=run_labels(run_id))
    old = client.containers.run(
        IMAGES["postgres.image"], ["postgres"], detach=True, labels=run_labels(run_id),
        environment={"POSTGRES_USER": "prefect", "POSTGRES_PASSWORD": "an-older-password",
                     "POSTGRES_DB": "prefect", "PGDATA": "/var/lib/postgresql/data/pgdata"},
        volumes={volume_name: {"bind": "/var/lib/postgresql/data", "mode": "rw"}},
    )
    try:
        # Ready over TCP means the init-time server is gone and the real one is up.
        wait_for(lambda: old.exec_run(["pg_isready", "-h", "127.0.0.1", "-U", "prefect"]).exit_code == 0,
                 timeout=120, what="the earlier Postgres to initialise its volume")
        if owner is not None:
            done = old.exec_run(["psql", "-U", "prefect", "-d", "prefect", "-c",
                                 f"COMMENT ON DATABASE prefect IS '{owner}'"])
            assert done.exit_code == 0, done.output
    finally:
        old.remove(force=True)


def volume_state(client, volume_name: str) -> tuple[str, bool]:
    """(the database's owner comment, whether the older password still logs in) of a volume."""
    probe = client.containers.run(
        IMAGES["postgres.image"], ["postgres"], detach=True, labels=run_labels("probe"),
        environment={"POSTGRES_PASSWORD": "unused", "PGDATA": "/var/lib/postgresql/data/pgdata"},
        volumes={volume_name: {"bind": "/var/lib/postgresql/data", "mode": "rw"}},
    )
    try:
        wait_for(lambda: probe.exec_run(["pg_isready", "-h", "127.0.0.1", "-U", "prefect"]).exit_code == 0,
                 timeout=120, what="a probe Postgres on the volume")
        owner = probe.exec_run(["psql", "-XAtq", "-U", "prefect", "-d", "prefect", "-c",
                                "select shobj_description(oid, 'pg_database') from pg_database "
                                "where datname = 'prefect'"]).output.decode().strip()
        old_login = probe.exec_run(["psql", "-h", "127.0.0.1", "-U", "prefect", "-d", "prefect", "-c", "select 1"],
                                   environment={"PGPASSWORD": "an-older-password"}).exit_code == 0
        return owner, old_login
    finally:
        probe.remove(force=True)


def test_failed_migration_stops_the_deployment_before_any_api_container(docker_client):
    # An image whose migration cannot even start: no prefect in it.
    deployment, error = deploy(docker_client, "e2efail", {"prefect.image": IMAGES["redis.image"]})
    prefix = deployment.prefix
    try:
        assert error is not None, "pulumi up succeeded with a failing migration"
        assert re.search(rf"{prefix}-migrate-[0-9a-f]{{8}} exited with code 127", str(error)), str(error)[-3000:]
        assert "no API replica or services container was created" in str(error)
        assert "Traceback" not in str(error), str(error)[-3000:]
        assert deployment.container("migration").attrs["State"]["ExitCode"] == 127
        # Everything of this run, by the component each container says it is.
        assert components_of(deployment) == ["edge-config", "migration", "postgres", "postgres-credentials",
                                             "redis"]
        assert not any(deployment.containers(c) for c in ("api", "services", "proxy"))
    finally:
        tear_down(deployment)


def test_destroy_then_up_over_the_kept_volume_brings_the_runs_back(docker_client):
    run_id = new_run_id("e2ekeep")
    first, error = deploy(docker_client, "e2ekeep", run_id=run_id)
    try:
        assert error is None, str(error)[-3000:]
        before = runs(first, "4")
        assert len(before) == 4, before
        first.stack.destroy()  # the Postgres volume is retained; the passwords go with the state
        assert docker_client.volumes.get(f"{first.prefix}-postgres-data")
    except BaseException:
        tear_down(first)
        raise
    again, error = deploy(docker_client, "e2ekeep", run_id=run_id)  # a new state: new passwords
    try:
        assert error is None, f"pulumi up over the kept volume failed:\n{str(error)[-3000:]}"
        logs = again.container("postgres-credentials").logs().decode()
        assert "has the stack's current password" in logs and "claimed" not in logs, logs
        assert runs(again) == before
    finally:
        tear_down(again)


def test_a_volume_initialised_with_another_password_is_claimed_and_used(docker_client):
    run_id = new_run_id("e2eold")
    initialise_volume(docker_client, "prefect-ha-e2eold-postgres-data", run_id)
    deployment, error = deploy(docker_client, "e2eold", run_id=run_id)
    try:
        assert error is None, f"pulumi up over a volume with another password failed:\n{str(error)[-3000:]}"
        logs = deployment.container("postgres-credentials").logs().decode()
        assert "claimed this Postgres volume for 'prefect-ha/prod/prefect-ha-e2eold'" in logs, logs
        assert runs(deployment) == []
    finally:
        tear_down(deployment)


def test_a_volume_of_another_stack_is_refused_and_left_as_it_was(docker_client):
    run_id = new_run_id("e2eother")
    volume = "prefect-ha-e2eother-postgres-data"
    other = "prefect-ha/staging/prefect-ha-e2eother"
    initialise_volume(docker_client, volume, run_id, owner=other)
    deployment, error = deploy(docker_client, "e2eother", run_id=run_id)
    try:
        assert error is not None, "pulumi up took over another stack's volume"
        assert "the Postgres volume belongs to another stack" in str(error), str(error)[-3000:]
        logs = deployment.container("postgres-credentials").logs().decode()
        assert f"belongs to '{other}', not to 'prefect-ha/prod/prefect-ha-e2eother'" in logs, logs
        assert not any(deployment.containers(c) for c in ("migration", "api", "services", "proxy"))
        deployment.stack.destroy()
        assert volume_state(docker_client, volume) == (other, True)
    finally:
        tear_down(deployment)
