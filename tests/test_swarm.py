"""platform: swarm under mocks: one set of components, services instead of containers,
secrets only in Swarm secrets, start-first updates gated on health, external data stores."""

from __future__ import annotations

import base64
import os
import subprocess

import pytest

from components import swarm
from components.config import ConfigError, load_paths
from components.prefect_settings import CLIENT_AUTH_STRING, DATABASE_URL, SERVER_AUTH_STRING
from harness import StackMocks, run_program

SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
PASSWORD = StackMocks().password


def swarm_run(stack="prod", **overrides):
    run = run_program(stack, {"platform": "swarm", "worker.enabled": True, **overrides})
    assert run.error is None, repr(run.error)
    return run


def services(run) -> dict[str, dict]:
    return {r.inputs["name"].rsplit("-", 1)[-1]: r for r in run.of_type(SERVICE)}


def secret_text(reg) -> str:
    return base64.b64decode(reg.inputs["data"]).decode()


@pytest.fixture(scope="module")
def prod():
    return swarm_run()


def test_stateless_tier_is_services_and_data_stores_stay_containers(prod):
    assert set(services(prod)) == {"api", "services", "nginx", "worker"}
    names = {r.inputs["name"].removeprefix("prefect-ha-prod-") for r in prod.of_type(CONTAINER)}
    # Postgres, Redis, the backups and the one-shot jobs on the data node; no server container.
    assert {"postgres", "redis"} <= names
    for job in ("migrate-", "postgres-credentials-", "work-pool-", "backup-", "edge-config-"):
        assert any(n.startswith(job) for n in names), (job, names)
    assert not any(n.startswith(("api", "services", "worker-", "nginx")) for n in names), names
    for net in prod.of_type(NETWORK):
        assert net.inputs["driver"] == "overlay" and net.inputs["attachable"] is True


def test_api_service_spreads_updates_start_first_rolls_back_and_waits_for_health(prod):
    api = services(prod)["api"].inputs
    assert api["mode"]["replicated"]["replicas"] == 3
    assert api["taskSpec"]["placement"]["prefs"] == ["spread=node.id"]
    assert api["updateConfig"]["order"] == "start-first"
    assert api["updateConfig"]["failureAction"] == "rollback"
    assert api["updateConfig"]["parallelism"] == 1
    # Names answer with every task (no VIP: it needs IPVS in the kernel).
    assert api["endpointSpec"]["mode"] == "dnsrr"
    assert api["taskSpec"]["containerSpec"]["healthcheck"]["tests"][0] == "CMD"
    assert api["convergeConfig"]["timeout"]
    aliases = [n.get("aliases") for n in api["taskSpec"]["networksAdvanceds"]]
    assert ["prefect-api"] in aliases


def test_no_secret_in_any_service_env_label_or_command(prod):
    for reg in prod.of_type(SERVICE):
        spec = reg.inputs["taskSpec"]["containerSpec"]
        shown = repr({k: spec.get(k) for k in ("env", "labels", "commands", "args")}) + repr(reg.inputs.get("labels"))
        assert PASSWORD not in shown, reg.inputs["name"]
        assert DATABASE_URL not in (spec.get("env") or {})
        assert SERVER_AUTH_STRING not in (spec.get("env") or {})


def test_secret_settings_arrive_as_one_swarm_secret_file_loaded_before_the_process(prod):
    api = services(prod)["api"]
    spec = api.inputs["taskSpec"]["containerSpec"]
    assert spec["args"][:3] == ["sh", "-c", swarm.LOAD_ENV]
    assert spec["args"][4:7] == ["prefect", "server", "start"]
    mounted = {s["fileName"]: s for s in spec["secrets"]}
    assert swarm.ENV_SECRET_PATH in mounted
    env_secret = next(r for r in prod.of_type(SECRET) if r.inputs["name"] == mounted[swarm.ENV_SECRET_PATH]["secretName"])
    assert env_secret.input_is_secret("data")
    lines = dict(line.split("=", 1) for line in secret_text(env_secret).splitlines())
    assert lines[DATABASE_URL].startswith("postgresql+asyncpg://prefect:")
    assert lines[SERVER_AUTH_STRING] == f"prefect:{PASSWORD}"
    # Only secret settings in the file; the rest stays reviewable in the spec.
    assert "TZ" in spec["env"] and "TZ" not in lines


def test_a_rotated_password_is_a_new_secret_name_which_rolls_the_services():
    first = {r.inputs["name"] for r in swarm_run().of_type(SECRET)}
    rotated = run_program("prod", {"platform": "swarm", "worker.enabled": True}, mocks=StackMocks(password="an0ther-Pass"))
    assert rotated.error is None
    second = {r.inputs["name"] for r in rotated.of_type(SECRET)}
    env_names = lambda names: {n for n in names if "-env-" in n}  # noqa: E731
    assert env_names(first) and env_names(first).isdisjoint(env_names(second))
    assert all(len(n.rsplit("-", 1)[1]) == swarm.DIGEST_LENGTH for n in first)
    # The same content keeps its name: nothing rolls without a change.
    assert env_names(first) == env_names({r.inputs["name"] for r in swarm_run().of_type(SECRET)})


def test_nginx_runs_on_every_node_publishing_its_port_there_and_finds_the_tasks_by_service_name(prod):
    nginx = services(prod)["nginx"].inputs
    assert nginx["mode"] == {"global": True} and "convergeConfig" not in nginx
    # A node's port holds one task: the old one stops before its successor starts.
    assert nginx["updateConfig"]["order"] == "stop-first"
    ports = nginx["endpointSpec"]["ports"]
    assert {p["publishMode"] for p in ports} == {"host"}
    # prod: HTTPS on 443 and the redirect on 80.
    assert {(p["targetPort"], p["publishedPort"]) for p in ports} == {(8443, 443), (8080, 80)}
    command = nginx["taskSpec"]["containerSpec"]["args"][-1]
    assert "getent hosts tasks.prefect-ha-prod-api " in command
    files = {f["fileName"]: f for f in nginx["taskSpec"]["containerSpec"]["secrets"]}
    # prod: TLS, and Prefect (not nginx) checks credentials, so no htpasswd.
    assert sorted(path.rsplit("/", 1)[1] for path in files) == ["tls.crt", "tls.key"]
    assert files[next(p for p in files if p.endswith("tls.key"))]["fileMode"] == 0o400
    [conf] = nginx["taskSpec"]["containerSpec"]["configs"]
    assert conf["fileName"].endswith("/nginx.conf")
    assert PASSWORD not in repr(nginx)


def test_services_wait_for_the_migration_gate_and_nginx_for_the_api_service(prod):
    by_urn = prod.by_urn()
    found = services(prod)
    for kind in ("api", "services"):
        deps = {by_urn[u].name for u in found[kind].all_dependencies() if u in by_urn}
        assert any(name.endswith("migration-container") for name in deps), (kind, deps)
    nginx_deps = {by_urn[u].name for u in found["nginx"].all_dependencies() if u in by_urn}
    assert any(name.endswith("api-service") for name in nginx_deps)


def test_workers_name_themselves_by_task_slot_and_reach_the_api_by_its_alias(prod):
    worker = services(prod)["worker"].inputs["taskSpec"]["containerSpec"]
    assert worker["env"]["STACK_WORKER_NAME"] == "prefect-ha-prod-worker-{{.Task.Slot}}"
    assert worker["env"]["PREFECT_API_URL"] == "http://prefect-api:4200/api"
    assert CLIENT_AUTH_STRING not in worker["env"]
    assert '--name "$STACK_WORKER_NAME"' in worker["args"][-1]
    assert {m["type"] for m in worker["mounts"]} == {"tmpfs", "bind"}


def test_the_connection_budget_counts_the_start_first_surge():
    docker_cfg = load_paths({"api.replicas": 3, "services.replicas": 1})
    swarm_cfg = load_paths({"api.replicas": 3, "services.replicas": 1, "platform": "swarm"})
    assert swarm_cfg.required_connections == docker_cfg.required_connections + 2 * 15


def test_unknown_platform_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="platform.*must be one of docker, swarm, got 'k8s'"):
        load_paths({"platform": "k8s"})


EXTERNAL_PG = "postgresql://app%40ops:p%40ss%3Aw@db.internal:6543/prefect_prod"
EXTERNAL_REDIS = "redis://:r%40dis@cache.internal:6380"


def test_external_data_stores_replace_the_stack_own_and_stay_secret():
    run = run_program("dev", {"platform": "swarm", "postgres.externalUrl": EXTERNAL_PG, "redis.externalUrl": EXTERNAL_REDIS,
                              "postgres.hostPort": 0, "redis.hostPort": 0})
    assert run.error is None, repr(run.error)
    names = {r.inputs["name"] for r in run.of_type(CONTAINER)}
    assert not any(n.endswith(("-postgres", "-redis")) or "credentials" in n for n in names), names
    env_secret = next(r for r in run.of_type(SECRET) if "-api-env-" in r.inputs["name"])
    lines = dict(line.split("=", 1) for line in secret_text(env_secret).splitlines())
    assert lines[DATABASE_URL] == "postgresql+asyncpg://app%40ops:p%40ss%3Aw@db.internal:6543/prefect_prod"
    assert lines["PREFECT_REDIS_MESSAGING_PASSWORD"] == "r@dis"
    assert lines["PREFECT_SERVER_DOCKET_URL"] == "redis://:r%40dis@cache.internal:6380/1"
    api_env = services(run)["api"].inputs["taskSpec"]["containerSpec"]["env"]
    assert api_env["PREFECT_REDIS_MESSAGING_HOST"] == "cache.internal"
    assert run.outputs["services"]["postgres"] == "external"
    assert "p%40ss" not in repr(run.outputs)


@pytest.mark.parametrize("url, words", [
    ("mysql://u:p@h/db", "must be a postgresql:// URL"),
    ("postgresql://h/db", "must name a user, a host and a database"),
    ("postgresql://u:p@h:99999/db", "port that is not a number"),
    ("postgresql://u:p@h/db?sslmode=require", "must not carry query parameters"),
])
def test_bad_external_postgres_urls_are_refused_without_echoing_them(url, words):
    with pytest.raises(ConfigError) as err:
        load_paths({"postgres.externalUrl": url, "backup.enabled": False})
    assert words in str(err.value)
    assert url not in str(err.value)


def test_backups_need_the_stack_own_postgres():
    with pytest.raises(ConfigError, match="backup.enabled backs up the stack's own Postgres"):
        load_paths({"postgres.externalUrl": EXTERNAL_PG, "backup.enabled": True})


def test_migration_checks_the_postgres_version_before_any_ddl():
    run = run_program("dev")
    migrate = next(r for r in run.of_type(CONTAINER) if "-migrate-" in r.inputs["name"])
    command = migrate.inputs["command"][-1]
    assert command.index("check_postgres_version.py") < command.index("database upgrade")


def test_an_external_data_store_gives_the_backend_network_a_route_out():
    """The migration job is only on the backend network: internal, it could not reach an external Postgres."""
    own = run_program("prod")
    external = run_program("prod", {"postgres.externalUrl": EXTERNAL_PG, "backup.enabled": False})
    backend = lambda run: next(r for r in run.of_type(NETWORK) if r.inputs["name"].endswith("-backend"))  # noqa: E731
    assert backend(own).inputs["internal"] is True
    assert backend(external).inputs["internal"] is False


def run_loader(tmp_path, lines: str | None, *command: str):
    env_file = tmp_path / "env"
    if lines is not None:
        env_file.write_text(lines)
    script = swarm.LOAD_ENV.replace(swarm.ENV_SECRET_PATH, str(env_file))
    return subprocess.run(["sh", "-c", script, "sh", *command], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"]})


def test_the_env_loader_exports_values_literally(tmp_path):
    value = "p@ss wörd 'quoted' \"double\" $HOME `id` \\back"
    result = run_loader(tmp_path, f"SECRET_ONE={value}\nSECRET_TWO=x=y\n", "sh", "-c", 'printf "%s|%s" "$SECRET_ONE" "$SECRET_TWO"')
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{value}|x=y"


def test_the_env_loader_fails_closed_without_its_file(tmp_path):
    result = run_loader(tmp_path, None, "sh", "-c", "echo started")
    assert result.returncode == 78 and "started" not in result.stdout
    assert "cannot read" in result.stderr


def test_nginx_config_is_checked_by_the_edge_config_job_before_the_service_gets_it(prod):
    by_urn = prod.by_urn()
    nginx = services(prod)["nginx"]
    deps = {by_urn[u].inputs.get("name", by_urn[u].name) for u in nginx.all_dependencies() if u in by_urn}
    assert any(str(d).startswith("prefect-ha-prod-edge-config-") for d in deps), deps


def test_the_convergence_wait_covers_every_task_of_a_rolling_update(prod):
    api = services(prod)["api"].inputs
    # prod: 3 replicas, the default waitTimeout
    assert api["convergeConfig"]["timeout"] == swarm.duration(3 * (load_paths({}).wait_timeout + swarm.MONITOR_SECONDS))


def test_the_worker_binds_the_docker_socket_read_only(prod):
    worker = services(prod)["worker"].inputs["taskSpec"]["containerSpec"]
    [bind] = [m for m in worker["mounts"] if m["type"] == "bind"]
    assert bind["readOnly"] is True and bind["target"] == "/var/run/docker.sock"


def test_names_swarm_cannot_hold_are_refused_before_any_resource():
    long = run_program("prod", {"platform": "swarm", "namePrefix": "p" * 37})
    assert "may be at most 36" in str(long.error)
    assert {r.type for r in long.registrations} <= {"pulumi:pulumi:Stack"}
    dotted = run_program("prod", {"platform": "swarm", "namePrefix": "team.prefect"})
    assert "cannot hold '.'" in str(dotted.error)
    assert run_program("prod", {"platform": "swarm", "namePrefix": "p" * 36}).error is None


@pytest.mark.parametrize("url, words", [
    ("redis://app:pw@cache:6379", "must not name a user"),
    ("redis://:pw@[::1]:6379", "IPv6"),
    ("redis://:pw@cache:0", "port that is not a number"),
])
def test_bad_external_redis_urls_are_refused(url, words):
    with pytest.raises(ConfigError) as err:
        load_paths({"redis.externalUrl": url})
    assert words in str(err.value) and "pw" not in str(err.value)
