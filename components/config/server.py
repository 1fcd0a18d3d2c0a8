"""Settings of the Prefect processes: the image, the API replicas, the background
services, the migration job and the Docker workers."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from .base import Group, cpu_limit, memory_limit
from .edge import API_PATH
from .types import Cpus, DockerNetwork, MemorySize, OptionalPinnedImage, PinnedImage, checked, matching, one_of

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LogLevel = Annotated[Literal[LOG_LEVELS], one_of(LOG_LEVELS, str.upper)]  # type: ignore[valid-type]
Seconds = Annotated[int, checked(lambda v: v >= 1, "must be >= 1 second, got {}")]
NoLimit = Annotated[int, checked(lambda v: v >= 0, "must be >= 0 (0 means no limit), got {}")]


class PrefectConfig(Group):
    image: PinnedImage = Field(
        "prefecthq/prefect:3.8.8-python3.12",
        description="Prefect image for the migration job, API replicas and background services; pinned tag.",
    )
    log_level: LogLevel = Field("INFO", description="Prefect server log level.")


class ApiConfig(Group):
    replicas: int = Field(1, ge=1, le=20, description="Number of API server containers behind nginx.")
    keepalive_timeout: Annotated[
        int, checked(lambda v: v > 60, "must be > 60 seconds (nginx keeps upstream connections 60 s), got {}")
    ] = Field(
        75,
        description="Seconds the API keeps idle HTTP connections; above nginx's upstream keepalive_timeout (60 s).",
    )
    csrf_protection: bool = Field(
        False,
        description="Prefect's CSRF protection on the API (the UI and Prefect clients fetch tokens themselves).",
    )
    memory_limit: MemorySize = memory_limit("1g", "each API replica")
    cpu_limit: Cpus = cpu_limit("", "each API replica")


# What Prefect's db_vacuum service may delete (its `enabled` set); flow_runs implies orphans.
VACUUM_TARGETS = ("events", "flow_runs", "orphans")
Days = Annotated[int, checked(lambda v: 1 <= v <= 36500, "must be 1-36500 days, got {}")]


class ServicesConfig(Group):
    replicas: int = Field(
        1, ge=1, le=5,
        description="Number of background-services containers (schedulers, triggers); more than one needs Prefect >= 3.6.6.",
    )
    events_retention_days: Days = Field(
        7, description="Days Prefect keeps events before the event persister trims them (Prefect's default is 7)."
    )
    vacuum: tuple[str, ...] = Field(
        ("events",),
        description="What the db_vacuum service deletes past vacuumRetentionDays: events, flow_runs (finished runs, "
                    "with their logs and artifacts; implies orphans), orphans. Prefect's default is events only.",
    )
    vacuum_retention_days: Days = Field(
        90, description="Days a finished flow run (and its orphans) is kept before db_vacuum deletes it."
    )
    vacuum_batch_size: int = Field(
        200, ge=1, le=100_000, description="Rows db_vacuum deletes per statement (Prefect's default is 200)."
    )

    @field_validator("vacuum")
    @classmethod
    def _vacuum_targets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in value if v not in VACUUM_TARGETS]
        if unknown:
            raise ValueError(f"must list only {', '.join(VACUUM_TARGETS)}, got {', '.join(map(repr, unknown))}")
        return tuple(dict.fromkeys(value))
    memory_limit: MemorySize = memory_limit("1g", "each background-services container")
    cpu_limit: Cpus = cpu_limit("", "each background-services container")


class MigrationConfig(Group):
    database_timeout: Seconds = Field(
        600,
        description="Seconds a migration statement may take (Prefect's database timeout, migration job only); large tables need minutes.",
    )
    memory_limit: MemorySize = memory_limit("1g", "the migration job")
    cpu_limit: Cpus = cpu_limit("", "the migration job")


class WorkerConfig(Group):
    enabled: bool = Field(False, description="Run Prefect Docker workers next to the server.")
    pool: Annotated[
        str, matching(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", "must be letters, digits, '.', '_' or '-' (no spaces or '/'), got {!r}")
    ] = Field("docker-pool", description="Work pool the workers serve; created (type docker) when missing.")
    replicas: Annotated[int, checked(lambda v: 1 <= v <= 10, "must be 1-10, got {}")] = Field(
        1, description="Number of worker containers."
    )
    image: OptionalPinnedImage = Field(
        "",
        description="Worker image; empty uses prefect.image. It needs prefect-docker, baked in or via worker.extraPipPackages.",
    )
    extra_pip_packages: str = Field(
        "prefect-docker==0.7.4",
        description="EXTRA_PIP_PACKAGES the image installs at start (needs PyPI then); empty when the image already has prefect-docker.",
    )
    docker_client_timeout: Annotated[int, checked(lambda v: v >= 1, "must be a positive number of seconds, got {}")] = Field(
        120, description="DOCKER_CLIENT_TIMEOUT: seconds the worker's Docker client waits for the engine."
    )
    docker_host: str = Field(
        "unix:///var/run/docker.sock",
        description="Docker engine the workers start flow-run containers on; a unix socket is mounted read-only.",
    )
    limit: NoLimit = Field(0, description="Most flow runs one worker runs at once; 0 means no limit.")
    pool_concurrency_limit: NoLimit = Field(0, description="Most flow runs the whole pool runs at once; 0 means no limit.")
    api_url: str = Field(
        "",
        description="API URL the workers and their flow runs call; empty uses the API replicas' shared alias on the edge network.",
    )
    job_network: DockerNetwork = Field(
        "", description="Docker network flow-run containers join; empty uses the stack's edge network."
    )
    job_image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field(
        "IfNotPresent", description="Default image pull policy of flow-run containers: IfNotPresent, Always or Never."
    )
    job_auto_remove: bool = Field(True, description="Remove flow-run containers when they finish.")
    memory_limit: MemorySize = memory_limit("1g", "each worker")
    cpu_limit: Cpus = cpu_limit("", "each worker")

    @field_validator("docker_host")
    @classmethod
    def _docker_host(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "unix" and parts.path.startswith("/"):
            return value
        if parts.scheme in ("tcp", "ssh") and parts.hostname:
            return value
        raise ValueError(f"must be unix:///path/to/docker.sock or tcp://host:port, got {value!r}")

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or not parts.path.rstrip("/").endswith(API_PATH):
            raise ValueError(f"must be an http(s) URL ending in {API_PATH}, got {value!r}")
        return value.rstrip("/")

    @property
    def socket_path(self) -> str | None:
        """Host path of the Docker socket to mount, when the engine is reached over one."""
        parts = urlsplit(self.docker_host)
        return parts.path if parts.scheme == "unix" else None
