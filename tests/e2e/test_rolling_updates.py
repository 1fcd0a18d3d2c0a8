"""Day 2 on the real engine: every `pulumi up` after the first keeps Prefect serving.

A deployed stack is changed with `pulumi config set --path` and `pulumi up` while a
request loop through nginx (GET /api/health and the read-only POST /api/flow_runs/filter)
counts every failed request. Rolling containers are replaced create-before-delete (their
names carry a digest of their inputs); nginx learns the replica set from Docker's DNS and
reloads, so it is never replaced by a change on the API side. Each change must serve every
request, and nginx must be the same container afterwards.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from cryptography import x509
from pulumi import automation as auto

from components.proxy import CONFIG_COMPONENT
from engine import _text
from nginx_support import two_certificates
from images import (FLOWS_IMAGE, NEXT_PREFECT_IMAGE, NEXT_PREFECT_VERSION, PREFECT_DOCKER_REQUIREMENT,
                    PREFECT_VERSION)
from testbed import deploy_flow, IMAGES, PREFECT_IMAGE, Deployment, RequestLoop, changes, deploy_or_fail, tear_down, wait_for

pytestmark = pytest.mark.timeout(1200)

# The loop: 2 clients, each one request every 50 ms.
CLIENTS, INTERVAL = 2, 0.05
# The secure stack's public host (testbed.stand_in: https://127.0.0.1:<port>)
PUBLIC_HOST = "127.0.0.1"


def configure(deployment: Deployment, settings: dict) -> None:
    deployment.stack.stack.set_all_config({k: auto.ConfigValue(_text(v)) for k, v in settings.items()}, path=True)


def change_under_load(deployment: Deployment, settings: dict, what: str, *, base: str | None = None,
                      **loop_options) -> RequestLoop:
    """`pulumi up` of ``settings`` under the request loop; prints the figures bench/ collects."""
    configure(deployment, settings)
    loop = RequestLoop(base or deployment.base, threads=CLIENTS, interval=INTERVAL, limit=10**6, seconds=900,
                       **loop_options)
    result = loop.during(deployment.stack.up)
    deployment.up_result = result
    deployment.outputs = deployment.stack.outputs()
    changed = changes(result.summary.resource_changes)
    print(f"\n[rolling] {what}: pulumi up {loop.action_seconds:.1f} s, {loop.done} requests, "
          f"{len(loop.failures)} failed; changes {changed}")
    return loop


def ids(deployment: Deployment, component: str) -> set[str]:
    return {c.id for c in deployment.containers(component)}


def assert_served_everything(loop: RequestLoop) -> None:
    assert loop.done > 100, f"only {loop.done} requests ran"
    assert loop.failures == [], f"{len(loop.failures)} of {loop.done} failed: {loop.failures[:10]}"


def running_healthy(deployment: Deployment, component: str) -> list:
    found = deployment.containers(component)
    for c in found:
        c.reload()
    return [c for c in found if c.status == "running" and c.attrs["State"].get("Health", {}).get("Status") == "healthy"]


def upstream_members(deployment: Deployment) -> list[str]:
    """The replica addresses nginx proxies to now, as the watcher wrote them."""
    nginx = deployment.container("proxy")
    out = nginx.exec_run(["cat", "/tmp/prefect-ha/upstream-api.conf"]).output.decode()
    return sorted(line.split()[1].rsplit(":", 1)[0] for line in out.splitlines() if line.startswith("server "))


def replica_addresses(deployment: Deployment) -> list[str]:
    found = []
    for c in deployment.containers("api"):
        c.reload()
        found += [n["IPAddress"] for name, n in c.attrs["NetworkSettings"]["Networks"].items() if name.endswith("-edge")]
    return sorted(found)


@pytest.fixture(scope="module")
def stack(docker_client):
    """The prod stack file with a plain edge, one API replica and a Docker worker that
    runs the Prefect image (prefect-docker from the image's wheels), so a Prefect
    upgrade rolls the worker too."""
    started = time.monotonic()
    deployment = deploy_or_fail(docker_client, "roll", {
        "api.replicas": 1,
        "worker.enabled": True,
        "worker.image": "",
        "worker.extraPipPackages": PREFECT_DOCKER_REQUIREMENT,
        "worker.jobImagePullPolicy": "Never",
    })
    print(f"\n[rolling] deployed in {time.monotonic() - started:.1f} s")
    yield deployment
    for leftover in docker_client.containers.list(all=True, filters={"ancestor": FLOWS_IMAGE}):
        leftover.remove(force=True)
    tear_down(deployment)


@pytest.fixture(scope="module")
def flow_deployment(stack):
    return deploy_flow(stack, "rolling")


def last_json(output: str):
    return json.loads(output.strip().splitlines()[-1])


def test_scale_out_1_to_3_serves_every_request_and_keeps_nginx(stack):
    nginx, api = ids(stack, "proxy"), ids(stack, "api")
    loop = change_under_load(stack, {"api.replicas": 3}, "api.replicas 1 -> 3")
    assert_served_everything(loop)
    assert ids(stack, "proxy") == nginx, "nginx was replaced"
    assert api < ids(stack, "api") and len(running_healthy(stack, "api")) == 3
    # nginx proxies to all three now (the watcher admitted the new ones once healthy)
    wait_for(lambda: upstream_members(stack) == replica_addresses(stack), timeout=15,
             what="nginx's upstream to list the three replicas",
             detail=lambda: (upstream_members(stack), replica_addresses(stack)))


def test_scale_in_3_to_2_serves_every_request_and_keeps_nginx(stack):
    nginx, api = ids(stack, "proxy"), ids(stack, "api")
    loop = change_under_load(stack, {"api.replicas": 2}, "api.replicas 3 -> 2")
    assert_served_everything(loop)
    assert ids(stack, "proxy") == nginx, "nginx was replaced"
    assert ids(stack, "api") < api and len(running_healthy(stack, "api")) == 2
    wait_for(lambda: upstream_members(stack) == replica_addresses(stack), timeout=15,
             what="nginx's upstream to drop the removed replica",
             detail=lambda: (upstream_members(stack), replica_addresses(stack)))


def test_a_server_setting_rolls_every_replica_and_the_services_without_a_failed_request(stack):
    nginx, api, services = ids(stack, "proxy"), ids(stack, "api"), ids(stack, "services")
    loop = change_under_load(stack, {"prefect.logLevel": "WARNING"}, "prefect.logLevel INFO -> WARNING")
    assert_served_everything(loop)
    assert ids(stack, "proxy") == nginx, "nginx was replaced"
    assert not ids(stack, "api") & api, "a replica kept its old settings"
    assert not ids(stack, "services") & services and len(ids(stack, "services")) == 1
    for c in stack.containers("api"):
        assert "PREFECT_LOGGING_SERVER_LEVEL=WARNING" in c.attrs["Config"]["Env"], c.name
    assert len(running_healthy(stack, "api")) == 2


def test_a_worker_setting_replaces_the_worker_after_its_successor_is_healthy(stack):
    nginx, workers = ids(stack, "proxy"), ids(stack, "worker")
    loop = change_under_load(stack, {"worker.limit": 3}, "worker.limit 0 -> 3")
    assert_served_everything(loop)
    assert ids(stack, "proxy") == nginx
    [worker] = running_healthy(stack, "worker")
    assert worker.id not in workers and worker.attrs["Config"]["Cmd"][-2:] == ["--limit", "3"]
    # the Prefect worker keeps its name across container generations
    name = worker.attrs["Config"]["Cmd"][worker.attrs["Config"]["Cmd"].index("--name") + 1]
    assert worker.name.startswith(f"{name}-"), (worker.name, name)


def test_an_nginx_setting_is_a_reload_not_a_new_nginx(stack):
    """A rate limit set on a running stack: a new edge-config job, the same nginx,
    no failed request, and the limit in force right after."""
    nginx, jobs = ids(stack, "proxy"), ids(stack, CONFIG_COMPONENT)
    # above the loop's 40 requests/s, far below a burst's
    loop = change_under_load(stack, {"proxy.rateLimit": 50, "proxy.rateLimitBurst": 100},
                             "proxy.rateLimit 0 -> 50 r/s")
    assert_served_everything(loop)
    assert ids(stack, "proxy") == nginx, "nginx was replaced"
    [job] = stack.containers(CONFIG_COMPONENT)
    assert job.id not in jobs and job.attrs["State"]["ExitCode"] == 0
    nginx_logs = stack.container("proxy").logs().decode(errors="replace")
    wait_for(lambda: f"prefect-ha: edge config gen-{job.id[:12]}" in stack.container("proxy").logs().decode(),
             timeout=15, what="nginx's watcher to load the new generation", detail=lambda: nginx_logs[-2000:])

    def burst() -> list[int]:
        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(lambda _: requests.post(f"{stack.base}/api/flow_runs/filter", json={"limit": 1},
                                                         timeout=10).status_code, range(400)))

    codes = burst()
    assert 429 in codes and 200 in codes, sorted(set(codes))


def test_a_failing_migration_stops_the_upgrade_and_the_old_version_keeps_serving(stack):
    """An image whose migration fails (here: no prefect in it, exit 127): `pulumi up`
    stops before any server is replaced, no request fails, and setting the image
    back (the README's way back) touches no server."""
    api, services, nginx = ids(stack, "api"), ids(stack, "services"), ids(stack, "proxy")
    configure(stack, {"prefect.image": IMAGES["redis.image"]})
    loop = RequestLoop(stack.base, threads=CLIENTS, interval=INTERVAL, limit=10**6, seconds=600)
    with pytest.raises(auto.CommandError) as failed:
        loop.during(stack.stack.up)
    print(f"\n[rolling] failing migration: {loop.done} requests, {len(loop.failures)} failed")
    assert "exited with code 127" in str(failed.value) and "no API replica" in str(failed.value)
    assert_served_everything(loop)
    assert (ids(stack, "api"), ids(stack, "services"), ids(stack, "proxy")) == (api, services, nginx)
    assert requests.get(f"{stack.base}/api/admin/version", timeout=10).json() == PREFECT_VERSION

    configure(stack, {"prefect.image": PREFECT_IMAGE})
    back = stack.stack.up()
    changed = changes(back.summary.resource_changes)
    # the migration job, run again on the old image, under a new generation (its RandomId): the
    # earlier generation's container is still there, pending deletion, under the earlier name
    assert changed == {"replace": 2}, changed
    assert (ids(stack, "api"), ids(stack, "services"), ids(stack, "proxy")) == (api, services, nginx)


def test_a_prefect_upgrade_migrates_first_then_rolls_servers_then_workers(stack, flow_deployment):
    """3.8.8 -> 3.9.1 (its migration adds a table) under the request loop: a run
    submitted before the upgrade completes after it, and one submitted after too."""
    nginx = ids(stack, "proxy")
    before = last_json(stack.prefect("submit_run.py", flow_deployment, "30"))["id"]
    loop = change_under_load(stack, {"prefect.image": NEXT_PREFECT_IMAGE},
                             f"prefect.image {PREFECT_VERSION} -> {NEXT_PREFECT_VERSION}")
    assert_served_everything(loop)
    assert ids(stack, "proxy") == nginx, "nginx was replaced"
    assert requests.get(f"{stack.base}/api/admin/version", timeout=10).json() == NEXT_PREFECT_VERSION
    rolled = {c: stack.containers(c) for c in ("migration", "api", "services", "work-pool", "worker")}
    for component, found in rolled.items():
        assert found and all(c.attrs["Config"]["Image"] == NEXT_PREFECT_IMAGE for c in found), component
    # the new migration ran to the end before any new server existed; workers came after the servers
    [migration] = rolled["migration"]
    assert migration.attrs["State"]["ExitCode"] == 0
    servers = rolled["api"] + rolled["services"]
    assert migration.attrs["State"]["FinishedAt"] < min(c.attrs["Created"] for c in servers)
    assert max(c.attrs["Created"] for c in rolled["api"]) < min(c.attrs["Created"] for c in rolled["worker"])
    table = stack.container("postgres").exec_run(
        ["sh", "-c", 'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -Atc "select to_regclass(\'automation_held_event\')"'])
    assert table.output.decode().strip() == "automation_held_event", table.output
    after = last_json(stack.prefect("submit_run.py", flow_deployment, "0"))["id"]
    states = last_json(stack.prefect("wait_runs.py", "300", before, after, timeout=400))
    assert {run: s["state"] for run, s in states.items()} == {before: "COMPLETED", after: "COMPLETED"}, states


def all_run_ids(stack) -> set[str]:
    return {json.loads(line)["id"] for line in stack.prefect("flow_runs.py").strip().splitlines() if line.startswith("{")}


def test_a_password_rotation_moves_every_process_and_loses_no_run(stack, flow_deployment):
    """secrets.rotation 0 -> 1: new Postgres and Redis passwords. Postgres keeps running (the
    credentials job changes its role's password), Redis restarts with its new one, every server
    rolls onto both. What the request loop saw is printed: it is the figure the README states."""
    done = last_json(stack.prefect("submit_run.py", flow_deployment, "0"))["id"]
    assert last_json(stack.prefect("wait_runs.py", "300", done, timeout=400))[done]["state"] == "COMPLETED"
    runs_before = all_run_ids(stack)
    postgres, redis, nginx, api = ids(stack, "postgres"), ids(stack, "redis"), ids(stack, "proxy"), ids(stack, "api")
    loop = change_under_load(stack, {"secrets.rotation": 1}, "secrets.rotation 0 -> 1")
    print(f"[rolling] rotation: failed requests {loop.failures[:5]}")
    assert loop.done > 100
    assert ids(stack, "postgres") == postgres, "Postgres restarted for a rotation"
    assert ids(stack, "redis") != redis and ids(stack, "proxy") == nginx
    assert not ids(stack, "api") & api, "a replica kept the old passwords"
    [job] = stack.containers("postgres-credentials")
    assert job.attrs["State"]["ExitCode"] == 0 and "current password" in job.logs().decode()
    assert runs_before <= all_run_ids(stack)
    after = last_json(stack.prefect("submit_run.py", flow_deployment, "0"))["id"]
    assert last_json(stack.prefect("wait_runs.py", "300", after, timeout=400))[after]["state"] == "COMPLETED"
    # the loop still runs clean once the update is over
    settled = RequestLoop(stack.base, threads=CLIENTS, interval=INTERVAL, limit=300, seconds=60)
    settled.run_while(lambda: None)
    assert settled.failures == [] and settled.done >= 300, settled.failures[:5]


def test_an_unchanged_up_touches_nothing(stack):
    result = stack.stack.up()
    assert changes(result.summary.resource_changes) == {}, result.summary.resource_changes


@pytest.fixture(scope="module")
def pki():
    """One CA and two server certificates it signed: a certificate change the clients,
    who trust the CA, must not notice."""
    return two_certificates(PUBLIC_HOST)


@pytest.fixture(scope="module")
def secure(docker_client, tmp_path_factory, pki):
    """The prod edge as shipped (TLS, Prefect auth, CSRF) with a certificate of our own,
    and a rate limit the loop stays under."""
    first = pki["certificates"][0]
    deployment = deploy_or_fail(docker_client, "rollsec", {
        "api.replicas": 2, "proxy.rateLimit": 200, "proxy.rateLimitBurst": 400,
        "tls.certificate": first["certificate"], "tls.key": first["key"]}, secure=True)
    ca = tmp_path_factory.mktemp("rollsec") / "ca.pem"
    ca.write_text(pki["ca"])
    deployment.ca_file = ca
    yield deployment
    tear_down(deployment)


def change_behind_the_secure_edge(secure, settings: dict, what: str, **secret) -> RequestLoop:
    user, password = secure.outputs["client_env"]["PREFECT_API_AUTH_STRING"].split(":", 1)
    if secret:
        secure.stack.stack.set_all_config({k: auto.ConfigValue(v, secret=True) for k, v in secret.items()}, path=True)
    return change_under_load(secure, settings, f"prod edge: {what}", base=secure.outputs["api_url"].removesuffix("/api"),
                             auth=(user, password), verify=str(secure.ca_file))


def test_scale_out_behind_tls_auth_and_csrf_serves_every_request(secure):
    nginx = ids(secure, "proxy")
    loop = change_behind_the_secure_edge(secure, {"api.replicas": 3}, "api.replicas 2 -> 3")
    assert_served_everything(loop)
    assert ids(secure, "proxy") == nginx, "nginx was replaced"
    assert len(running_healthy(secure, "api")) == 3


def test_a_server_setting_behind_tls_auth_and_csrf_serves_every_request(secure):
    nginx, api = ids(secure, "proxy"), ids(secure, "api")
    loop = change_behind_the_secure_edge(secure, {"prefect.logLevel": "WARNING"}, "prefect.logLevel INFO -> WARNING")
    assert_served_everything(loop)
    assert ids(secure, "proxy") == nginx, "nginx was replaced"
    assert not ids(secure, "api") & api and len(running_healthy(secure, "api")) == 3


def test_a_new_certificate_is_a_reload_and_served_right_after(secure, pki):
    nginx = ids(secure, "proxy")
    second = pki["certificates"][1]
    loop = change_behind_the_secure_edge(secure, {"tls.certificate": second["certificate"]}, "a new certificate",
                                         **{"tls.key": second["key"]})
    assert_served_everything(loop)
    assert ids(secure, "proxy") == nginx, "nginx was replaced"
    wanted = x509.load_pem_x509_certificate(second["certificate"].encode()).serial_number
    wait_for(lambda: served_serial(secure) == wanted, timeout=15, what="nginx to serve the new certificate",
             detail=lambda: f"serving serial {served_serial(secure)}, want {wanted}")


def served_serial(deployment) -> int:
    port = int(deployment.outputs["api_url"].split(":")[2].split("/")[0])
    context = ssl.create_default_context(cafile=str(deployment.ca_file))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=PUBLIC_HOST) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number
