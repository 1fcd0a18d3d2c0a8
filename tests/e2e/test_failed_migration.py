"""A migration that fails stops `pulumi up`: the engine reports it and no API container exists.

The failure is a real one users meet: the Postgres volume outlived a destroyed
stack (it is retained on purpose), so Postgres keeps the role password it was
initialised with and ignores the new generated one. The migration cannot log
in, exits non-zero, and the gate holds back every replica.
"""

import pytest

from testbed import COMPONENT_LABEL, IMAGES, deploy, new_run_id, run_labels, sweep, wait_for

pytestmark = pytest.mark.timeout(600)
NAME = "e2efail"
PREFIX = f"prefect-ha-{NAME}"


def initialise_volume_with_another_password(client, volume_name: str, run_id: str) -> None:
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
    finally:
        old.remove(force=True)


def test_failed_migration_stops_the_deployment_before_any_api_container(docker_client):
    run_id = new_run_id(NAME)
    initialise_volume_with_another_password(docker_client, f"{PREFIX}-postgres-data", run_id)
    deployment, error = deploy(docker_client, NAME, run_id=run_id)
    prefix = deployment.prefix
    try:
        assert error is not None, "pulumi up succeeded over a volume with another password"
        assert f"{prefix}-migrate exited with code 1" in str(error), str(error)[-3000:]
        assert "Traceback" not in str(error), str(error)[-3000:]
        logs = deployment.container("migration").logs().decode(errors="replace")
        assert "password authentication failed" in logs, logs[-2000:]
        # Everything of this run, by the component each container says it is.
        ours = {c.name: c.labels.get(COMPONENT_LABEL) for c in deployment.containers()}
        assert sorted(ours.values()) == ["migration", "postgres", "redis"], ours
        assert deployment.container("migration").attrs["State"]["ExitCode"] == 1
        assert not any(deployment.containers(c) for c in ("api", "services", "proxy")), ours
    finally:
        deployment.stack.destroy()
        left = sweep(docker_client, run_id)
        assert left["containers"] == [] and left["networks"] == []
        assert left["volumes"] == [f"{prefix}-postgres-data"]  # retained by the program, removed here
