"""postgres.externalUrl and redis.externalUrl, deployed by the engine on one host: the stack
runs no Postgres or Redis of its own and Prefect works against the ones given by URL.

The "external" servers are the stand-in images started here, outside the stack, reached
through their published ports on the Docker host's bridge gateway (as a managed database
is reached from the host's network); both passwords need percent-encoding in the URLs.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from testbed import IMAGES, free_port, new_run_id, prepare, run_labels, tear_down, wait_for

pytestmark = pytest.mark.timeout(900)

USER = "app_owner"
DATABASE = "prefect_ext"
PG_PASSWORD = "ext@pg:/?#% wörd"
REDIS_PASSWORD = "ext@redis:/#%"


@pytest.fixture(scope="module")
def external(docker_client):
    run_id = new_run_id("external")
    gateway = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
    pg_port, redis_port = free_port(), free_port()
    postgres = docker_client.containers.run(
        IMAGES["postgres.image"], detach=True, name=f"prefect-ha-external-pg-{run_id}", labels=run_labels(run_id),
        environment={"POSTGRES_USER": USER, "POSTGRES_PASSWORD": PG_PASSWORD, "POSTGRES_DB": DATABASE},
        ports={"5432/tcp": ("0.0.0.0", pg_port)},
    )
    redis = docker_client.containers.run(
        IMAGES["redis.image"], ["redis-server", "--requirepass", REDIS_PASSWORD], detach=True,
        name=f"prefect-ha-external-redis-{run_id}", labels=run_labels(run_id),
        ports={"6379/tcp": ("0.0.0.0", redis_port)},
    )
    try:
        wait_for(lambda: postgres.exec_run(["pg_isready", "-h", "127.0.0.1", "-U", USER]).exit_code == 0,
                 timeout=60, what="the external Postgres")
        wait_for(lambda: b"PONG" in redis.exec_run(["redis-cli", "-a", REDIS_PASSWORD, "ping"]).output,
                 timeout=60, what="the external Redis")
        yield {
            "postgres": postgres, "redis": redis,
            "postgres.externalUrl": f"postgresql://{USER}:{quote(PG_PASSWORD, safe='')}@{gateway}:{pg_port}/{DATABASE}",
            "redis.externalUrl": f"redis://:{quote(REDIS_PASSWORD, safe='')}@{gateway}:{redis_port}",
        }
    finally:
        for container in (postgres, redis):
            container.remove(force=True)


@pytest.fixture(scope="module")
def stack(docker_client, external):
    deployment = prepare(docker_client, "ext", {"postgres.hostPort": 0, "redis.hostPort": 0, "worker.enabled": False},
                         stack="dev", secrets={k: external[k] for k in ("postgres.externalUrl", "redis.externalUrl")})
    try:
        deployment.up_result = deployment.stack.up()
    except Exception as err:  # noqa: BLE001 the message is the point
        tear_down(deployment)
        pytest.fail(f"deployment with external data stores failed:\n{str(err)[-6000:]}")
    deployment.outputs = deployment.stack.outputs()
    yield deployment
    tear_down(deployment)


def test_the_stack_runs_no_data_store_of_its_own(stack):
    assert stack.containers("postgres") == [] and stack.containers("redis") == []
    assert stack.outputs["services"]["postgres"] == "external" and "postgres_volume" not in stack.outputs
    # The URLs are secrets: in the state they are ciphertext.
    assert PG_PASSWORD not in json.dumps(stack.stack.stack.export_stack().deployment)
    [migration] = stack.containers("migration")
    assert "(>= 14.9)" in migration.logs().decode(), migration.logs().decode()[-2000:]


def test_prefect_keeps_its_data_in_the_external_postgres_and_uses_the_external_redis(stack, external):
    out = stack.prefect("run_flow.py")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["state"] == "COMPLETED", out
    rows = external["postgres"].exec_run(
        ["psql", "-U", USER, "-d", DATABASE, "-Atc", f"select count(*) from flow_run where id = '{result['id']}'"])
    assert rows.output.decode().strip() == "1", rows.output
    # Docket (database 1) and the messaging streams (database 0) live in the external Redis.
    keys = {db: int(external["redis"].exec_run(["redis-cli", "-a", REDIS_PASSWORD, "-n", str(db), "dbsize"])
                    .output.decode().split()[-1]) for db in (0, 1)}
    assert keys[0] > 0 and keys[1] > 0, keys
