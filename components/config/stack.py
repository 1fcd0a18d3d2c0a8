"""The whole stack's settings: every group, the checks that span groups, and the
answers several components need (names, connection budget)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from .backup import BackupConfig
from .base import PROJECT, Group
from .data_stores import PostgresConfig, RedisConfig, SecretsConfig
from .edge import AuthConfig, ProxyConfig, TlsConfig
from .server import ApiConfig, MigrationConfig, PrefectConfig, ServicesConfig, WorkerConfig
from .types import DockerName, Size, checked, matching, one_of

# Each Prefect process may hold a pool of 5 plus an overflow of 10 connections.
CONNECTIONS_PER_PREFECT_PROCESS = 15
# Postgres keeps 3 for superusers; the rest of the margin is for psql sessions,
# pg_isready and the one-shot migration job.
POSTGRES_CONNECTION_MARGIN = 20
POSTGRES_DEFAULT_MAX_CONNECTIONS = 100


class LoggingConfig(Group):
    max_size: Size = Field("10m", description="json-file log max-size per container.")
    max_file: int = Field(3, ge=1, description="json-file log files kept per container.")


PLATFORMS = (PLATFORM_DOCKER, PLATFORM_SWARM) = ("docker", "swarm")


class StackConfig(Group):
    """Everything a stack can set; see Pulumi.yaml for the declared keys."""

    platform: Annotated[str, one_of(PLATFORMS)] = Field(
        PLATFORM_DOCKER,
        description="docker: containers on the one engine DOCKER_HOST names; swarm: API, services, workers and nginx "
                    "as Swarm services on that engine's swarm (DOCKER_HOST a manager), see README: Docker Swarm.",
    )
    name_prefix: DockerName = Field(
        "", description="Prefix of container, network and volume names; empty means prefect-ha-<stack>."
    )
    timezone: Annotated[
        str, matching(r"[A-Za-z0-9_+\-/]+", "must be a tz database name such as Europe/Berlin, got {!r}")
    ] = Field("UTC", description="TZ of every container.")
    wait_timeout: Annotated[int, checked(lambda v: v >= 10, "must be >= 10 seconds, got {}")] = Field(300, description="Seconds pulumi waits for a container to become healthy.")
    prefect: PrefectConfig = PrefectConfig()
    api: ApiConfig = ApiConfig()
    services: ServicesConfig = ServicesConfig()
    migration: MigrationConfig = MigrationConfig()
    postgres: PostgresConfig = PostgresConfig()
    redis: RedisConfig = RedisConfig()
    secrets: SecretsConfig = SecretsConfig()
    proxy: ProxyConfig = ProxyConfig()
    tls: TlsConfig = TlsConfig()
    auth: AuthConfig = AuthConfig()
    worker: WorkerConfig = WorkerConfig()
    backup: BackupConfig = BackupConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> "StackConfig":
        problems = []
        ports = {
            "proxy.port": self.proxy.port,
            "tls.httpPort": self.tls.http_port,
            "postgres.hostPort": self.postgres.host_port,
            "redis.hostPort": self.redis.host_port,
        }
        seen: dict[int, str] = {}
        for key, port in ports.items():
            if port and port in seen:
                problems.append(f"{key} and {seen[port]} both publish host port {port}")
            seen.setdefault(port, key)
        if self.postgres.max_connections and self.postgres.max_connections < self.required_connections:
            problems.append(
                f"postgres.maxConnections must be >= {self.required_connections} for "
                f"{self.api.replicas} API + {self.services.replicas} services replicas "
                f"({CONNECTIONS_PER_PREFECT_PROCESS} connections each plus a margin of "
                f"{POSTGRES_CONNECTION_MARGIN}), got {self.postgres.max_connections}; "
                f"raise it or set 0 to size it automatically"
            )
        if self.tls.enabled and self.proxy.scheme != "https":
            problems.append(
                f"proxy.publicUrl must be an https URL when tls.enabled is true, got {self.proxy.public_url!r}"
            )
        if self.tls.http_port and not self.tls.enabled:
            problems.append("tls.httpPort only applies with tls.enabled (it redirects to HTTPS); set it to 0")
        if self.postgres.external:
            if self.backup.enabled:
                problems.append("backup.enabled backs up the stack's own Postgres: with postgres.externalUrl "
                                "set it to false and back up where that database runs")
            if self.postgres.host_port:
                problems.append("postgres.hostPort publishes the stack's own Postgres: with postgres.externalUrl set it to 0")
        if self.redis.external and self.redis.host_port:
            problems.append("redis.hostPort publishes the stack's own Redis: with redis.externalUrl set it to 0")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def worker_image(self) -> str:
        return self.worker.image or self.prefect.image

    @property
    def data_ports_published(self) -> bool:
        """A published Postgres or Redis port needs a backend network with a route to the host."""
        return bool(self.postgres.host_port or self.redis.host_port)

    @property
    def backend_internal(self) -> bool:
        """The backend network has no route in or out, unless a data store's port is
        published or a data store is external (reached over that route)."""
        return not (self.data_ports_published or self.postgres.external or self.redis.external)

    @property
    def swarm(self) -> bool:
        return self.platform == PLATFORM_SWARM

    @property
    def prefect_processes(self) -> int:
        # On Swarm a start-first update runs one new task of each service beside
        # the old ones (parallelism 1), on whichever nodes they land.
        surge = 2 if self.swarm else 0
        return self.api.replicas + self.services.replicas + surge

    @property
    def required_connections(self) -> int:
        return self.prefect_processes * CONNECTIONS_PER_PREFECT_PROCESS + POSTGRES_CONNECTION_MARGIN

    @property
    def postgres_max_connections(self) -> int:
        """max_connections handed to Postgres: configured, or sized from the replicas."""
        if self.postgres.max_connections:
            return self.postgres.max_connections
        return max(POSTGRES_DEFAULT_MAX_CONNECTIONS, self.required_connections)

    def prefix(self, stack: str) -> str:
        return self.name_prefix or f"{PROJECT}-{stack}"
