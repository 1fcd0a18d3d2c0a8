"""The prod stack (3 API replicas) deployed onto a real Docker engine, checked as a user would.

Tests run in file order: the disruptive ones (failover, restarts) come after the
ones that need a quiet stack, and teardown comes last.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from testbed import PREFECT_IMAGE, SCRIPTS, TEST_LABEL, RequestLoop, crash_process, run_labels, wait_for

pytestmark = pytest.mark.timeout(900)


def docker_time(text: str) -> datetime:
    """Docker's RFC 3339 timestamps carry nanoseconds; datetime takes microseconds."""
    main, _, rest = text.partition(".")
    fraction = rest.rstrip("Z")[:6].ljust(6, "0") if rest else "000000"
    return datetime.fromisoformat(f"{main}.{fraction}+00:00")


def test_every_container_is_running_and_healthy(deployment):
    names = deployment.outputs["containers"]
    long_running = [names["postgres"], names["redis"], *names["api"], *names["services"], names["proxy"]]
    assert len(names["api"]) == 3
    for name in long_running:
        state = deployment.client.api.inspect_container(name)["State"]
        assert state["Status"] == "running", f"{name}: {state['Status']}"
        if name not in names["services"]:
            assert state["Health"]["Status"] == "healthy", f"{name}: {state['Health']['Status']}"
    migrate = deployment.client.api.inspect_container(names["migration"])["State"]
    assert migrate["Status"] == "exited" and migrate["ExitCode"] == 0


def test_prefect_reads_the_database_upkeep_settings_as_configured(deployment):
    """The prod stack file's vacuum and retention, as Prefect itself parses them in the
    running services container (a wrong name or format would fall back silently)."""
    read = ("from prefect.settings import get_current_settings as g; s = g().server; import json; "
            "print(json.dumps([sorted(s.services.db_vacuum.enabled), s.services.db_vacuum.retention_period.days, "
            "s.services.db_vacuum.batch_size, s.events.retention_period.days]))")
    services = deployment.client.containers.get(deployment.outputs["containers"]["services"][0])
    result = services.exec_run(["python", "-c", read])
    assert result.exit_code == 0, result.output.decode()[-2000:]
    assert json.loads(result.output.decode().strip().splitlines()[-1]) == [["events", "flow_runs"], 90, 200, 7]


def test_migration_exited_before_any_replica_or_services_container_was_created(deployment):
    names = deployment.outputs["containers"]
    inspect = deployment.client.api.inspect_container
    finished = docker_time(inspect(names["migration"])["State"]["FinishedAt"])
    for name in [*names["api"], *names["services"]]:
        created = docker_time(inspect(name)["Created"])
        assert created > finished, f"{name} created {created} before the migration finished {finished}"
    # ...and nginx after every replica was healthy, i.e. after they were created.
    proxy_created = docker_time(inspect(names["proxy"])["Created"])
    assert all(proxy_created > docker_time(inspect(n)["Created"]) for n in names["api"])


def test_random_passwords_were_url_hostile(deployment):
    from urllib.parse import quote

    assert len(deployment.passwords()) == 3  # Postgres, its init password, Redis (no auth on this edge)
    assert all(quote(p, safe="") != p for p in deployment.passwords())


def test_health_through_nginx(deployment):
    response = requests.get(deployment.outputs["health_url"], timeout=5)
    assert response.status_code == 200
    assert response.text.strip() == "true"
    ready = requests.get(f"{deployment.outputs['api_url']}/ready", timeout=5)
    assert ready.status_code == 200, ready.text


def test_ui_is_told_the_public_api_url(deployment):
    settings = requests.get(f"{deployment.base}/ui-settings", timeout=5).json()
    assert settings["api_url"] == deployment.outputs["api_url"]
    assert "0.0.0.0" not in settings["api_url"] and "127.0.0.1:4200" not in settings["api_url"]
    page = requests.get(deployment.outputs["ui_url"], timeout=5)
    assert page.status_code == 200 and "<html" in page.text.lower()


@pytest.fixture(scope="module")
def dashboard_runs(deployment) -> list[dict]:
    """Flow runs for the dashboard to show, made through the public API URL: a flow of this
    run's own, and three runs of it due ten minutes ago (the dashboard's Flow Runs card counts
    runs by expected start time in a window that ends at the current minute), then moved on to
    COMPLETED, COMPLETED and FAILED, so no worker or service takes them up."""
    api = deployment.outputs["api_url"]
    flow = requests.post(f"{api}/flows/", json={"name": f"dashboard-{deployment.run_id}"}, timeout=10)
    assert flow.status_code in (200, 201), flow.text
    due = (datetime.now(timezone.utc) - timedelta(minutes=10)).isoformat()
    runs = []
    for n, final in enumerate(["COMPLETED", "COMPLETED", "FAILED"]):
        made = requests.post(f"{api}/flow_runs/", timeout=10, json={
            "flow_id": flow.json()["id"], "name": f"dashboard-run-{n}",
            "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": due}}})
        assert made.status_code == 201, made.text
        moved = requests.post(f"{api}/flow_runs/{made.json()['id']}/set_state", timeout=10,
                              json={"state": {"type": final}, "force": True})
        assert moved.status_code in (200, 201) and moved.json()["status"] == "ACCEPT", moved.text
        runs.append({**made.json(), "final": final})
    return runs


def test_a_real_browser_loads_the_dashboard_with_data_from_the_api(deployment, dashboard_runs):
    from ui_check import check_dashboard

    # What the Flow Runs card ("Past day") should count: the API's own answer for that window.
    api = deployment.outputs["api_url"]
    day = {"after_": (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()}
    total = requests.post(f"{api}/flow_runs/count", json={"flow_runs": {"expected_start_time": day}}, timeout=10)
    assert total.status_code == 200 and total.json() >= len(dashboard_runs), total.text
    failed = next(r for r in dashboard_runs if r["final"] == "FAILED")
    result = check_dashboard(deployment.outputs["ui_url"], api, timeout_s=90, find_in_data=failed["id"],
                             find_on_page=re.compile(rf"^\s*{total.json()} total\s*$"))
    summary = {k: result[k] for k in ("api_requests", "failed_api_requests", "other_hosts_called",
                                      "connection_error_shown", "dashboard_loaded", "dashboard_rendered",
                                      "data_calls_with_match", "found_on_page", "title", "screenshot")}
    print(f"\n[e2e] UI: {summary}")
    assert result["dashboard_loaded"] and result["dashboard_rendered"], summary
    assert result["api_requests"] > 0, summary
    assert result["failed_api_requests"] == [], summary
    assert result["other_hosts_called"] == [], summary
    assert not result["connection_error_shown"], summary
    # The runs made through the API reached the browser (the failed one is in the card's
    # default Failed tab), and the card counts them.
    assert result["data_calls_with_match"], summary
    assert result["found_on_page"], f"the Flow Runs card does not show '{total.json()} total': {summary}"


@pytest.fixture(scope="module")
def deployed_flows(deployment):
    return json.loads(deployment.prefect("deploy_flows.py").strip().splitlines()[-1])


@pytest.fixture(scope="module")
def worker(deployment, deployed_flows):
    """A process worker polling the pool through nginx, as a user's worker would."""
    container = deployment.client.containers.run(
        PREFECT_IMAGE,
        ["prefect", "worker", "start", "--pool", "e2e-pool", "--type", "process"],
        network_mode="host",
        volumes={str(SCRIPTS): {"bind": "/e2e", "mode": "ro"}},
        environment={"PREFECT_API_URL": deployment.outputs["api_url"]},
        labels=run_labels(deployment.run_id),
        name=f"{deployment.prefix}-worker",
        detach=True,
    )
    yield container
    container.remove(force=True)


def flow_runs(deployment) -> list[dict]:
    return [json.loads(line) for line in deployment.prefect("flow_runs.py").splitlines() if line.startswith("{")]


def test_a_deployment_run_is_picked_up_by_a_worker_and_completes(deployment, deployed_flows, worker):
    started = time.monotonic()
    result = json.loads(deployment.prefect("run_deployment.py", "hello/hello", "240").strip().splitlines()[-1])
    elapsed = time.monotonic() - started
    assert result["state"] == "COMPLETED", (result, worker.logs(tail=60).decode(errors="replace"))
    print(f"\n[e2e] deployment run to COMPLETED in {elapsed:.1f} s")


def test_the_scheduler_in_the_services_container_creates_runs_that_complete(deployment, deployed_flows, worker):
    tick = deployed_flows["tick"]

    def completed_scheduled_runs():
        return [r for r in flow_runs(deployment)
                if r["deployment_id"] == tick and r["auto_scheduled"] and r["state"] == "COMPLETED"]

    runs = wait_for(completed_scheduled_runs, timeout=240, interval=5,
                    what="a scheduled run of every-minute to complete")
    assert runs
    deployment.prefect("pause_deployment.py", tick)


def test_background_tasks_through_nginx_are_served_with_three_replicas(deployment, tmp_path_factory):
    """`.delay()` through nginx, executed by `prefect task serve` that also talks through nginx.

    The scheduled-task queue lives in one replica's memory; nginx routes task
    creation, rescheduling and the subscription websocket to one replica.
    """
    storage = deployment.client.volumes.create(
        f"{deployment.prefix}-results", labels=run_labels(deployment.run_id))
    # Deferred tasks keep their parameters in result storage, which both sides must share.
    shared = {"PREFECT_LOCAL_STORAGE_PATH": "/results", "PYTHONPATH": "/e2e"}
    volumes = {str(SCRIPTS): {"bind": "/e2e", "mode": "ro"}, storage.name: {"bind": "/results", "mode": "rw"}}
    server = deployment.client.containers.run(
        PREFECT_IMAGE, ["prefect", "task", "serve", "bg_tasks.py:double"], working_dir="/e2e",
        network_mode="host", volumes=volumes, detach=True,
        environment={"PREFECT_API_URL": deployment.outputs["api_url"], **shared},
        labels=run_labels(deployment.run_id), name=f"{deployment.prefix}-task-server",
    )
    try:
        submitter = deployment.client.containers.run(
            PREFECT_IMAGE, ["python", "/e2e/submit_bg_tasks.py", "9", "120"], network_mode="host",
            volumes=volumes, detach=True,
            environment={"PREFECT_API_URL": deployment.outputs["api_url"], **shared},
            labels=run_labels(deployment.run_id),
        )
        try:
            assert submitter.wait(timeout=300)["StatusCode"] == 0, submitter.logs().decode(errors="replace")[-3000:]
            result = json.loads(submitter.logs(stderr=False).decode().strip().splitlines()[-1])
        finally:
            submitter.remove(force=True)
        print(f"\n[e2e] background tasks: {result}")
        assert result["completed"] == result["total"] == 9, (result, server.logs(tail=40).decode(errors="replace"))
    finally:
        server.remove(force=True)
        storage.remove(force=True)


def test_failover_a_crashed_replica_costs_no_request_and_comes_back(deployment):
    victim = deployment.outputs["containers"]["api"][1]
    loop = RequestLoop(deployment.base)
    loop.run_while(lambda: crash_process(deployment.client, victim))
    print(f"\n[e2e] failover: {loop.done} requests, {len(loop.failures)} failed")
    assert loop.done >= 1000
    assert loop.failures == [], loop.failures[:10]

    def back_and_healthy():
        state = deployment.client.api.inspect_container(victim)
        return state["RestartCount"] >= 1 and state["State"]["Health"]["Status"] == "healthy"

    wait_for(back_and_healthy, timeout=120, interval=1, what=f"{victim} restarted and healthy")


def test_postgres_restart_keeps_the_data_and_ready_recovers(deployment, deployed_flows, worker):
    before = {r["id"] for r in flow_runs(deployment) if r["state"] == "COMPLETED"}
    assert before
    deployment.container("postgres").restart(timeout=30)
    ready = f"{deployment.outputs['api_url']}/ready"
    wait_for(lambda: requests.get(ready, timeout=5).status_code == 200, timeout=120, what="/api/ready after restart")
    after = {r["id"] for r in flow_runs(deployment)}
    assert before <= after


def test_redis_restart_scheduling_and_runs_carry_on(deployment, deployed_flows, worker):
    deployment.container("redis").restart(timeout=30)
    wait_for(lambda: deployment.client.api.inspect_container(deployment.outputs["containers"]["redis"])
             ["State"]["Health"]["Status"] == "healthy", timeout=60, what="redis healthy again")
    deployment_id = deployment.prefect("deploy_interval.py", "after-redis-restart").strip().splitlines()[-1]

    def completed_scheduled_runs():
        return [r for r in flow_runs(deployment)
                if r["deployment_id"] == deployment_id and r["auto_scheduled"] and r["state"] == "COMPLETED"]

    wait_for(completed_scheduled_runs, timeout=240, interval=5,
             what="a scheduled run of a deployment created after the Redis restart to complete")
    deployment.prefect("pause_deployment.py", deployment_id)


def test_teardown_leaves_nothing_but_the_retained_volume(deployment):
    run_label = f"{TEST_LABEL}={deployment.run_id}"
    retained = deployment.destroy()
    # the Postgres volume, and the backups volume (backups are on in prod)
    assert retained == sorted([deployment.outputs["postgres_volume"], deployment.outputs["backups"]["volume"]])
    program_made = {"label": [run_label, "prefect-ha.stack"]}
    assert deployment.client.containers.list(all=True, filters=program_made) == []
    assert deployment.client.networks.list(filters={"label": run_label}) == []
    volumes = sorted(v.name for v in deployment.client.volumes.list(filters={"label": run_label}))
    assert volumes == retained
    for name in retained:
        deployment.client.volumes.get(name).remove(force=True)
    assert deployment.client.volumes.list(filters={"label": run_label}) == []
