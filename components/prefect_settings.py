"""Prefect settings as container environment: the one place their names are spelled.

Canonical Prefect 3 names only (field notes); legacy aliases such as
PREFECT_API_DATABASE_CONNECTION_URL are never emitted. Values that carry a
password arrive as secret Outputs and keep the resulting ``K=V`` secret.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import pulumi

from .config import ApiConfig, MigrationConfig, ServicesConfig, WorkerConfig

# Named where other code must find or check them (the policy pack, the tests).
SERVER_AUTH_STRING = "PREFECT_SERVER_API_AUTH_STRING"
CLIENT_AUTH_STRING = "PREFECT_API_AUTH_STRING"
CLIENT_API_URL = "PREFECT_API_URL"
DATABASE_URL = "PREFECT_SERVER_DATABASE_CONNECTION_URL"
# Not Prefect settings, but the image's and prefect-docker's contracts.
DOCKER_CLIENT_TIMEOUT = "DOCKER_CLIENT_TIMEOUT"
EXTRA_PIP_PACKAGES = "EXTRA_PIP_PACKAGES"
# Where Prefect writes its home (profiles, the UI build it serves): tmpfs, so the
# root filesystem can stay read-only.
SCRATCH_DIR = "/tmp"
HOME_DIR = f"{SCRATCH_DIR}/prefect-home"
UI_STATIC_DIR = f"{SCRATCH_DIR}/prefect-ui"
WORKER_HEALTH_PORT = 8080

# Redis databases: messaging, cache and cleanup queue share 0; Docket gets its own.
REDIS_MESSAGING_DB = 0
REDIS_DOCKET_DB = 1


@dataclass(frozen=True)
class Endpoints:
    """Where Prefect finds its peers on the stack network, and the secret URLs."""

    redis_host: str
    redis_port: int
    database_url: pulumi.Output[str]  # secret, percent-encoded
    docket_url: pulumi.Output[str]  # secret, percent-encoded
    redis_password: pulumi.Output[str]  # secret
    auth_string: pulumi.Output[str] | None = None  # secret user:password, when auth.mode is prefect


def _env(name: str, value: object) -> pulumi.Input[str]:
    if isinstance(value, pulumi.Output):
        return value.apply(lambda v: f"{name}={v}")
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"{name}={value}"


def _redis(ep: Endpoints) -> list[pulumi.Input[str]]:
    """Events, logs, ordering, leases, Docket and the cleanup queue all on Redis.

    The worker-channel cleanup queue has its own connection settings that do not
    follow PREFECT_REDIS_MESSAGING_* and default to localhost, so both are set.
    """
    return [
        _env("PREFECT_SERVER_EVENTS_MESSAGING_BROKER", "prefect_redis.messaging"),
        _env("PREFECT_SERVER_EVENTS_MESSAGING_CACHE", "prefect_redis.messaging"),
        _env("PREFECT_SERVER_EVENTS_CAUSAL_ORDERING", "prefect_redis.ordering"),
        _env("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", "prefect_redis.lease_storage"),
        _env("PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE", "prefect_redis.cleanup_queue"),
        _env("PREFECT_REDIS_MESSAGING_HOST", ep.redis_host),
        _env("PREFECT_REDIS_MESSAGING_PORT", ep.redis_port),
        _env("PREFECT_REDIS_MESSAGING_DB", REDIS_MESSAGING_DB),
        _env("PREFECT_REDIS_MESSAGING_PASSWORD", ep.redis_password),
        _env("PREFECT_REDIS_WORKER_CLEANUP_QUEUE_HOST", ep.redis_host),
        _env("PREFECT_REDIS_WORKER_CLEANUP_QUEUE_PORT", ep.redis_port),
        _env("PREFECT_REDIS_WORKER_CLEANUP_QUEUE_DB", REDIS_MESSAGING_DB),
        _env("PREFECT_REDIS_WORKER_CLEANUP_QUEUE_PASSWORD", ep.redis_password),
        _env("PREFECT_SERVER_DOCKET_URL", ep.docket_url),
    ]


def _common(timezone: str) -> list[pulumi.Input[str]]:
    return [_env("TZ", timezone), _env("PREFECT_HOME", HOME_DIR)]


def _server(ep: Endpoints, timezone: str, log_level: str) -> list[pulumi.Input[str]]:
    return [
        *_common(timezone),
        _env(DATABASE_URL, ep.database_url),
        _env("PREFECT_SERVER_ANALYTICS_ENABLED", False),
        _env("PREFECT_LOGGING_SERVER_LEVEL", log_level),
    ]


def _serving(ep: Endpoints) -> list[pulumi.Input[str]]:
    """What every long-running server process shares: Redis, and auth when Prefect checks it."""
    env = [
        # Migrations and block registration run once, in the migration job:
        # replicas starting together on a fresh database race on both.
        _env("PREFECT_SERVER_DATABASE_MIGRATE_ON_START", False),
        _env("PREFECT_SERVER_REGISTER_BLOCKS_ON_START", False),
        *_redis(ep),
    ]
    if ep.auth_string is not None:
        env.append(_env(SERVER_AUTH_STRING, ep.auth_string))
    return env


def migration_env(ep: Endpoints, *, timezone: str, log_level: str, migration: MigrationConfig) -> list[pulumi.Input[str]]:
    """Environment of the one-shot migration job."""
    return [
        *_server(ep, timezone, log_level),
        _env("PREFECT_SERVER_DATABASE_TIMEOUT", migration.database_timeout),
        _env("PREFECT_SERVER_DATABASE_MIGRATION_TIMEOUT", migration.database_timeout),
    ]


def api_env(
    ep: Endpoints, *, timezone: str, log_level: str, api: ApiConfig, ui_api_url: str, events_retention_days: int
) -> list[pulumi.Input[str]]:
    """Environment of an API replica; ``ui_api_url`` is what browsers call."""
    return [
        *_server(ep, timezone, log_level),
        *_serving(ep),
        *events_retention(events_retention_days),
        # The browser calls this; without it the UI is told 0.0.0.0 or 127.0.0.1.
        _env("PREFECT_SERVER_UI_API_URL", ui_api_url),
        _env("PREFECT_SERVER_API_KEEPALIVE_TIMEOUT", api.keepalive_timeout),
        _env("PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED", api.csrf_protection),
        # The server copies the UI bundle before serving it, by default into its
        # own package directory, which is read-only here.
        _env("PREFECT_SERVER_UI_STATIC_DIRECTORY", UI_STATIC_DIR),
    ]


def _days(days: int) -> str:
    """A duration as Prefect's settings parse it from the environment (ISO 8601)."""
    return f"P{days}D"


def events_retention(days: int) -> list[pulumi.Input[str]]:
    """How long events are kept: the services trim by it, the API bounds event queries by it."""
    return [_env("PREFECT_SERVER_EVENTS_RETENTION_PERIOD", _days(days))]


def services_env(ep: Endpoints, *, timezone: str, log_level: str, services: ServicesConfig) -> list[pulumi.Input[str]]:
    """Environment of a background-services container, database upkeep included."""
    return [
        *_server(ep, timezone, log_level),
        *_serving(ep),
        _env("PREFECT_SERVER_UI_ENABLED", False),
        *events_retention(services.events_retention_days),
        _env("PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED", json.dumps(sorted(services.vacuum))),
        _env("PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD", _days(services.vacuum_retention_days)),
        _env("PREFECT_SERVER_SERVICES_DB_VACUUM_BATCH_SIZE", services.vacuum_batch_size),
    ]


def _client_auth(auth_string: str, proxy_auth: bool) -> dict[str, str]:
    """Credentials as a client sends them. With nginx's basic auth, every websocket
    must carry them too, and Prefect sends its auth string on only one of them
    (events in); custom headers go on all of them."""
    env = {CLIENT_AUTH_STRING: auth_string}
    if proxy_auth:
        token = base64.b64encode(auth_string.encode()).decode()
        env["PREFECT_CLIENT_CUSTOM_HEADERS"] = json.dumps({"Authorization": f"Basic {token}"})
    return env


def client_env(
    api_url: str, auth_string: pulumi.Output[str] | None, *, proxy_auth: bool = False
) -> pulumi.Output[dict[str, str]]:
    """What a Prefect client profile needs to talk to this stack (secret when it holds credentials)."""
    if auth_string is None:
        return pulumi.Output.from_input({CLIENT_API_URL: api_url})
    return auth_string.apply(lambda auth: {CLIENT_API_URL: api_url, **_client_auth(auth, proxy_auth)})


def worker_env(worker: WorkerConfig, *, timezone: str, log_level: str, api_url: str) -> list[str]:
    """Environment of a Prefect Docker worker, credentials aside. Flow-run
    containers inherit the client settings (API URL, auth) from it through prefect-docker."""
    env = [
        *_common(timezone),
        _env(CLIENT_API_URL, api_url),
        _env("PREFECT_WORKER_WEBSERVER_HOST", "0.0.0.0"),
        _env("PREFECT_WORKER_WEBSERVER_PORT", WORKER_HEALTH_PORT),
        _env("PREFECT_LOGGING_LEVEL", log_level),
        _env("DOCKER_HOST", worker.docker_host),
        _env(DOCKER_CLIENT_TIMEOUT, worker.docker_client_timeout),
    ]
    if worker.extra_pip_packages:
        env.append(_env(EXTRA_PIP_PACKAGES, worker.extra_pip_packages))
    return [str(e) for e in env]


def with_client_auth(
    env: list[str], auth_string: pulumi.Output[str] | None, *, proxy_auth: bool
) -> pulumi.Input[list[str]]:
    """``env`` plus the client credentials, as a secret, when auth is on."""
    if auth_string is None:
        return env
    return pulumi.Output.secret(auth_string.apply(
        lambda auth: [*env, *(f"{k}={v}" for k, v in _client_auth(auth, proxy_auth).items())]
    ))
