"""The whole program under mocks, for both shipped stack files: resources, options, graph, outputs."""

import re

import pytest

from components.api import ApiServer
from components.backup import Backups
from components.docker_common import go_duration
from components.migration import Migration
from components.network import StackNetwork
from components.postgres import CREDENTIALS_COMPONENT, Postgres
from components.proxy import CERTIFICATE_ENV, CONFIG_COMPONENT, HTPASSWD_ENV, KEY_ENV, Proxy
from components.redis import Redis
from components.secrets import StackSecrets
from components.services import BackgroundServices
from components.stack import PrefectHa
from components.tls import EdgeTls
from components.worker import DockerWorkers
from harness import run_program
from support import (NETWORK, RANDOM_PASSWORD, STACK, VOLUME, component_of, container, containers, digest_of,
                     env_of, replica, without_digest)

# Replaced in place of their fixed names (the data stores, the one published port);
# every other container rolls: its name carries a digest of its inputs.
FIXED_NAMES = ("postgres", "redis", "proxy")
ONE_SHOT = ("migration", "work-pool", CONFIG_COMPONENT, CREDENTIALS_COMPONENT)


def names(run):
    return {without_digest(name) for name in run.containers()}


def test_every_resource_is_parented_and_of_the_expected_type(stack_run):
    stack, run = stack_run
    replicas = 3 if stack == "prod" else 1
    prefix = f"prefect-ha-{stack}"
    # dev runs a Docker worker; prod has TLS and auth (a third password) instead.
    workers = {f"{prefix}-work-pool", f"{prefix}-worker-1"} if stack == "dev" else set()
    backups = {f"{prefix}-backup"} if stack == "prod" else set()  # backups are on in prod
    assert names(run) == {
        f"{prefix}-postgres", f"{prefix}-redis", f"{prefix}-migrate", f"{prefix}-services-1", f"{prefix}-nginx",
        f"{prefix}-edge-config", f"{prefix}-postgres-credentials", *(f"{prefix}-api-{i}" for i in range(1, replicas + 1)), *workers,
        *backups,
    }
    counts = {}
    for r in run.registrations:
        counts[r.type] = counts.get(r.type, 0) + 1
    assert counts[NETWORK] == 2
    # Postgres data and socket, Redis, the edge config (, the backups)
    assert counts[VOLUME] == (5 if stack == "prod" else 4)
    assert counts[RANDOM_PASSWORD] == (4 if stack == "prod" else 3)  # Postgres, its init, Redis (, auth)
    components = [PrefectHa, StackSecrets, StackNetwork, Postgres, Redis, Migration, ApiServer,
                  BackgroundServices, Proxy, EdgeTls if stack == "prod" else DockerWorkers]
    for component in components:
        assert counts[component.TYPE] == 1, component.TYPE
    assert counts.get(EdgeTls.TYPE, 0) == (1 if stack == "prod" else 0)
    assert counts.get(DockerWorkers.TYPE, 0) == (1 if stack == "dev" else 0)
    assert counts.get(Backups.TYPE, 0) == (1 if stack == "prod" else 0)
    stack_urn = [r.urn for r in run.registrations if r.type == STACK]
    for r in run.registrations:
        if r.type.startswith(STACK) or r.type == PrefectHa.TYPE:
            continue
        assert r.parent and r.parent not in stack_urn, f"{r.name} is not parented to a component"


def test_key_container_inputs(stack_run):
    stack, run = stack_run
    prefix = f"prefect-ha-{stack}"
    postgres, redis, migration = (container(run, c) for c in ("postgres", "redis", "migration"))
    api, services = replica(run, "api", 1), replica(run, "services", 1)
    assert postgres.inputs["image"] == "postgres:16.6"
    assert postgres.inputs["command"][:2] == ["postgres", "-c"]
    assert redis.inputs["command"] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert api.inputs["command"] == [
        "prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200", "--no-services"]
    assert services.inputs["command"] == ["prefect", "server", "services", "start"]
    migrate = migration.inputs
    assert "prefect server database upgrade -y" in migrate["command"][-1]
    assert migrate["attach"] is True and migrate["mustRun"] is False and migrate["rm"] is False
    for r in containers(run):
        name = r.inputs["name"]
        assert r.inputs["logDriver"] == "json-file", name
        assert r.inputs["logOpts"] == {"max-size": "10m", "max-file": "3"}, name
        if component_of(r) in ONE_SHOT:
            assert r.inputs["restart"] == "no"
        else:
            assert r.inputs["restart"] == "unless-stopped", name

    def networks(r):
        return {a["name"]: a.get("aliases", []) for a in r.inputs["networksAdvanced"]}

    backend, edge = f"{prefix}-backend", f"{prefix}-edge"
    assert networks(postgres) == {backend: ["postgres"]}
    assert networks(redis) == {backend: ["redis"]}
    assert networks(migration) == {backend: []}
    assert networks(services) == {backend: []}
    assert networks(api) == {backend: [], edge: ["prefect-api-1", "prefect-api"]}
    assert networks(container(run, "proxy")) == {edge: ["nginx"]}
    if stack == "dev":
        assert networks(replica(run, "worker", 1)) == {edge: []}


def test_waits_healthchecks_and_replacement_options(stack_run):
    _, run = stack_run
    for r in containers(run):
        name = r.inputs["name"]
        if component_of(r) in FIXED_NAMES:
            assert r.delete_before_replace, f"{name}: fixed name needs delete_before_replace"
            assert digest_of(name) is None, name
        else:
            # create-before-delete: the successor's name differs, so both can exist
            assert not r.delete_before_replace, f"{name} would be deleted before its successor exists"
            assert digest_of(name), f"{name} has no digest of its inputs"
        hc = r.inputs.get("healthcheck")
        if component_of(r) in (*ONE_SHOT, "services"):
            assert not r.inputs.get("wait"), name
            continue
        assert r.inputs["wait"] is True and r.inputs["waitTimeout"] == 300, name
        assert hc and hc["tests"], f"{name} waits without a healthcheck"
        assert "healthcheck" in r.replace_on_changes, name
        for key in ("interval", "timeout", "startPeriod"):
            assert re.fullmatch(r"(\d+h)?(\d+m)?\d+s", hc[key]), f"{name} {key}={hc[key]} is not a Go duration"
    api = replica(run, "api", 1)
    assert "curl" not in " ".join(api.inputs["healthcheck"]["tests"]), "the Prefect image has no curl"
    assert "/api/health" in " ".join(api.inputs["healthcheck"]["tests"])
    pg = container(run, "postgres")
    assert "pg_isready" in " ".join(pg.inputs["healthcheck"]["tests"])
    redis = container(run, "redis")
    assert "redis-cli" in " ".join(redis.inputs["healthcheck"]["tests"])
    assert "REDISCLI_AUTH" in env_of(redis)


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (5, "5s"), (60, "1m0s"), (90, "1m30s"), (3600, "1h0m0s")])
def test_go_durations(seconds, text):
    assert go_duration(seconds) == text


def test_postgres_volume_survives_destroy_unless_opted_out(stack_run):
    _, run = stack_run
    volume = run.named("prefect-postgres-data")
    assert volume.retain_on_delete
    postgres = container(run, "postgres")
    assert postgres.inputs["volumes"][0]["volumeName"] == volume.inputs["name"]
    opted_out = run_program("dev", {"postgres.retainVolume": False})
    assert not opted_out.named("prefect-postgres-data").retain_on_delete


def test_host_ports(stack_run):
    stack, run = stack_run
    def published(r):
        return [p["external"] for p in r.inputs.get("ports", [])]

    postgres, redis = container(run, "postgres"), container(run, "redis")
    # prod: HTTPS on 443 and the HTTP redirect on 80
    assert sorted(published(container(run, "proxy"))) == ([80, 443] if stack == "prod" else [4200])
    if stack == "prod":
        assert published(postgres) == [] and published(redis) == []
    else:
        assert published(postgres) == [15432] and published(redis) == [16379]
    for r in containers(run):
        if component_of(r) not in ("proxy", "postgres", "redis"):
            assert published(r) == [], r.inputs["name"]


def test_dependency_graph_gives_compose_startup_order(stack_run):
    stack, run = stack_run
    migrate, nginx = container(run, "migration"), container(run, "proxy")
    api, services = containers(run, "api"), containers(run, "services")
    data = {container(run, "postgres").urn, container(run, "redis").urn}
    assert data <= migrate.all_dependencies()
    for r in api + services:
        name, deps = r.inputs["name"], r.all_dependencies()
        assert migrate.urn in deps, f"{name} does not wait for the migration"
        assert data <= deps, name
        # The exit-code gate is a direct dependency: Pulumi registers the replica only
        # once the gate resolved, and the gate raises on a failed migration.
        assert migrate.urn in r.dependencies, name
    for r in api:
        others = {o.urn for o in api if o is not r}
        assert not r.all_dependencies() & others, f"{r.inputs['name']} waits on another replica"
    assert {r.urn for r in api} <= nginx.all_dependencies()
    # Registration order under mocks follows the graph: nothing after the migration
    # is registered before it.
    assert all(r.seq > migrate.seq for r in api + services)
    assert nginx.seq > max(r.seq for r in api)


def test_nginx_inputs_do_not_depend_on_the_replica_set(stack_run):
    """nginx learns the replicas from Docker's DNS: scaling or rolling them must not
    touch nginx's inputs, or the engine would replace the one published port."""
    stack, run = stack_run
    proxy = container(run, "proxy")
    rolled = run_program(stack, {"api.replicas": 5, "prefect.logLevel": "WARNING"})
    assert rolled.error is None
    assert {without_digest(r.inputs["name"]) for r in containers(rolled, "api")} == {
        f"prefect-ha-{stack}-api-{i}" for i in range(1, 6)}
    def replica_independent(r):
        # prod's mocked TLS key and bcrypt salt differ per run; nginx.conf must not
        env = {k: v for k, v in env_of(r).items() if k not in (CERTIFICATE_ENV, KEY_ENV, HTPASSWD_ENV)}
        return {**{k: v for k, v in r.inputs.items() if k != "envs"}, "envs": env}

    assert replica_independent(container(rolled, "proxy")) == replica_independent(proxy)
    assert not any(replica(run, "api", 1).urn == dep for dep in proxy.property_dependencies.get("envs", []))


def test_a_replacing_change_renames_and_an_in_place_change_keeps_the_name(stack_run):
    stack, run = stack_run
    base = {r.name: r for r in containers(run)}
    tuned = {r.name: r.inputs["name"] for r in containers(run_program(stack, {"prefect.logLevel": "WARNING"}))}
    for logical, r in base.items():
        name = r.inputs["name"]
        if component_of(r) in ("api", "services", "migration"):
            assert tuned[logical] != name and without_digest(tuned[logical]) == without_digest(name), logical
        elif component_of(r) in FIXED_NAMES:
            assert tuned[logical] == name, logical
    # the same inputs give the same names in another run (prod's mocked TLS key and
    # bcrypt salt differ per run, the engine keeps them in state: the edge config aside)
    def stable(names):
        return {k: v for k, v in names.items() if not (stack == "prod" and CONFIG_COMPONENT in v)}

    again = {r.name: r.inputs["name"] for r in containers(run_program(stack))}
    assert stable(again) == stable({k: r.inputs["name"] for k, r in base.items()})
    # memory is updated in place by the provider: same name, no replacement
    resized = run_program(stack, {"api.memoryLimit": "2g"})
    assert resized.error is None, resized.error
    assert replica(resized, "api", 1).inputs["name"] == replica(run, "api", 1).inputs["name"]
    assert replica(resized, "api", 1).inputs["memory"] != replica(run, "api", 1).inputs["memory"]


def test_outputs(stack_run):
    stack, run = stack_run
    public = "http://localhost:4200" if stack == "dev" else "https://prefect.example.internal"
    out = run.outputs
    assert out["api_url"] == f"{public}/api"
    assert out["ui_url"] == f"{public}/"
    assert out["health_url"] == f"{public}/api/health"
    if stack == "prod":
        assert out["client_env"] == {"PREFECT_API_URL": f"{public}/api",
                                     "PREFECT_API_AUTH_STRING": "prefect:p@ss:/?#%& wörd+=!$*"}
        assert "BEGIN CERTIFICATE" in out["ca_certificate"] and not run.output_is_secret("ca_certificate")
    else:
        assert out["client_env"] == {"PREFECT_API_URL": f"{public}/api"}
        assert out["work_pool"] == "docker-pool"
        assert "--pool docker-pool" in out["deploy_command"]
    assert run.output_is_secret("client_env")
    assert "include /tmp/prefect-ha/upstream-api.conf;" in out["nginx_conf"]
    assert "prefect-api-1" not in out["nginx_conf"] and not run.output_is_secret("nginx_conf")
    assert out["services"]["postgres"] == "postgres:5432"
    assert out["services"]["networks"] == {"backend": f"prefect-ha-{stack}-backend", "edge": f"prefect-ha-{stack}-edge"}
    assert len(out["containers"]["api"]) == (3 if stack == "prod" else 1)


def test_name_prefix_lets_two_stacks_share_a_host():
    run = run_program("dev", {"namePrefix": "team-a"})
    assert run.error is None
    assert all(name.startswith("team-a-") for name in run.containers())


def test_scaling_replicas_adds_containers_and_upstreams():
    run = run_program("prod", {"api.replicas": 5, "services.replicas": 2})
    assert run.error is None
    assert len(containers(run, "api")) == 5 and len(containers(run, "services")) == 2
    assert len({r.inputs["name"] for r in containers(run, "api")}) == 5
    pg = container(run, "postgres").inputs["command"]
    assert pg == ["postgres", "-c", "max_connections=125"]


def test_bad_config_stops_before_any_resource_with_a_clean_error():
    import pulumi

    run = run_program("prod", {"api.replicas": 0, "proxy.publicUrl": "localhost"})
    assert isinstance(run.error, pulumi.RunError), repr(run.error)
    message = str(run.error)
    assert "api.replicas must be >= 1, got 0" in message
    assert "proxy.publicUrl must be an http(s) URL" in message
    assert "Traceback" not in message
    assert [r.type for r in run.registrations if r.type != STACK] == []
