"""Prefect settings: canonical names, spelled in one place, right values per role."""

import re

import pytest

from harness import REPO
from support import assert_counts, component_of, containers, env_of, replica

SETTING = re.compile(r"\bPREFECT_[A-Z0-9_]+\b")
LEGACY = {"PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_MESSAGING_BROKER", "PREFECT_MESSAGING_CACHE",
          "PREFECT_UI_API_URL", "PREFECT_API_DATABASE_MIGRATE_ON_START"}


def code_files():
    return [REPO / "__main__.py", *sorted((REPO / "components").rglob("*.py"))]


def test_each_prefect_setting_name_is_spelled_in_exactly_one_place():
    seen = {}
    for path in code_files():
        # Comments and docstrings count too: a second spelling anywhere drifts.
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            for name in SETTING.findall(line):
                seen.setdefault(name, []).append(f"{path.relative_to(REPO)}:{lineno}")
    spelled_twice = {name: places for name, places in seen.items() if len(places) > 1}
    assert seen, "no Prefect setting found: the scan is broken"
    assert not spelled_twice, spelled_twice
    code_places = {p.split(":")[0] for places in seen.values() for p in places}
    assert code_places == {"components/prefect_settings.py"}, code_places


def test_no_legacy_alias_is_emitted(stack_run):
    _, run = stack_run
    for name, reg in run.containers().items():
        for key in env_of(reg):
            assert key not in LEGACY, f"{name}: {key}"


def test_api_replicas_env(stack_run):
    stack, run = stack_run
    env = env_of(replica(run, "api", 1))
    public = "http://localhost:4200" if stack == "dev" else "https://prefect.example.internal"
    assert env["PREFECT_SERVER_UI_API_URL"] == f"{public}/api"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["TZ"] == "UTC"
    assert env["PREFECT_SERVER_EVENTS_MESSAGING_BROKER"] == "prefect_redis.messaging"
    assert env["PREFECT_SERVER_EVENTS_MESSAGING_CACHE"] == "prefect_redis.messaging"
    assert env["PREFECT_SERVER_EVENTS_CAUSAL_ORDERING"] == "prefect_redis.ordering"
    assert env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == "prefect_redis.lease_storage"
    assert env["PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE"] == "prefect_redis.cleanup_queue"
    # The cleanup queue does not follow PREFECT_REDIS_MESSAGING_* (it defaults to localhost).
    assert env["PREFECT_REDIS_WORKER_CLEANUP_QUEUE_HOST"] == env["PREFECT_REDIS_MESSAGING_HOST"] == "redis"
    assert env["PREFECT_REDIS_WORKER_CLEANUP_QUEUE_PASSWORD"] == env["PREFECT_REDIS_MESSAGING_PASSWORD"]
    assert env["PREFECT_SERVER_DOCKET_URL"].startswith("redis://:") and env["PREFECT_SERVER_DOCKET_URL"].endswith("@redis:6379/1")
    assert int(env["PREFECT_SERVER_API_KEEPALIVE_TIMEOUT"]) > 60
    assert "PREFECT_SERVER_UI_ENABLED" not in env


def test_services_env(stack_run):
    _, run = stack_run
    env = env_of(replica(run, "services", 1))
    assert env["PREFECT_SERVER_UI_ENABLED"] == "false"
    assert env["PREFECT_SERVER_DOCKET_URL"] == env_of(replica(run, "api", 1))["PREFECT_SERVER_DOCKET_URL"]
    assert env["PREFECT_SERVER_EVENTS_MESSAGING_BROKER"] == "prefect_redis.messaging"


def test_timezone_reaches_every_container():
    from harness import run_program

    run = run_program("dev", {"timezone": "Asia/Shanghai"})
    assert run.error is None, repr(run.error)
    # dev runs every kind of container the program has, the worker included
    assert_counts(run, {"postgres": 1, "redis": 1, "migration": 1, "api": 1, "services": 1, "proxy": 1,
                        "work-pool": 1, "worker": 1})
    assert all(component_of(reg) for reg in containers(run)), "a container without a component label"
    for reg in containers(run):
        assert env_of(reg).get("TZ") == "Asia/Shanghai", reg.inputs["name"]


@pytest.mark.parametrize("url", ["https://prefect.example.com", "http://10.0.0.5:8080"])
def test_ui_is_told_the_public_url_never_a_bind_address(url):
    from harness import run_program

    tls = url.startswith("https")
    run = run_program("prod", {"proxy.publicUrl": url, "tls.enabled": tls, "tls.httpPort": 80 if tls else 0})
    assert env_of(replica(run, "api", 2))["PREFECT_SERVER_UI_API_URL"] == f"{url}/api"
    assert run.outputs["api_url"] == f"{url}/api"


def test_database_upkeep_reaches_the_services_and_events_retention_the_api_too():
    from harness import run_program

    run = run_program("prod")  # vacuum [events, flow_runs], 90 days; events 7 days
    assert run.error is None, run.error
    services = env_of(replica(run, "services", 1))
    assert services["PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED"] == '["events", "flow_runs"]'
    assert services["PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD"] == "P90D"
    assert services["PREFECT_SERVER_SERVICES_DB_VACUUM_BATCH_SIZE"] == "200"
    assert services["PREFECT_SERVER_EVENTS_RETENTION_PERIOD"] == "P7D"
    api = env_of(replica(run, "api", 1))
    assert api["PREFECT_SERVER_EVENTS_RETENTION_PERIOD"] == "P7D"
    assert "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED" not in api  # the vacuum runs in the services only
    tuned = run_program("dev", {"services.vacuum": ["orphans"], "services.eventsRetentionDays": 30})
    assert tuned.error is None, tuned.error
    assert env_of(replica(tuned, "services", 1))["PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED"] == '["orphans"]'
    assert env_of(replica(tuned, "api", 1))["PREFECT_SERVER_EVENTS_RETENTION_PERIOD"] == "P30D"


@pytest.mark.parametrize("raw, message", [
    ({"services.vacuum": '["events", "logs"]'}, "services.vacuum"),
    ({"services.vacuumRetentionDays": 0}, "services.vacuumRetentionDays"),
    ({"services.eventsRetentionDays": -1}, "services.eventsRetentionDays"),
])
def test_bad_upkeep_settings_are_refused_naming_the_key(raw, message):
    from components.config import ConfigError, load_paths

    with pytest.raises(ConfigError) as refused:
        load_paths({k: str(v) for k, v in raw.items()})
    assert message in str(refused.value)
