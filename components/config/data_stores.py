"""Settings of the data stores: Postgres and Redis."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ..images import leading_major
from .base import Group, cpu_limit, memory_limit
from .types import Cpus, HostPort, MemorySize, PinnedImage, checked, major_at_least, matching

POSTGRES_MIN_MAJOR = 14
PgIdentifier = Annotated[
    str, matching(r"[a-z_][a-z0-9_]{0,62}", "must be a lower-case Postgres identifier (letters, digits, _), got {!r}")
]
REDIS_MIN_MAJOR = 7


class PostgresConfig(Group):
    image: Annotated[PinnedImage, major_at_least(POSTGRES_MIN_MAJOR, "postgres:16.6", "Postgres", "Prefect needs 14.9+")] = Field(
        "postgres:16.6", description="Postgres image; tag starts with the major version (>= 14)."
    )
    user: PgIdentifier = Field("prefect", description="Postgres role Prefect connects as.")
    database: PgIdentifier = Field("prefect", description="Postgres database name.")
    host_port: HostPort = Field(0, description="Host port to publish Postgres on; 0 keeps it private to the network.")
    max_connections: Annotated[
        int, checked(lambda v: v == 0 or v >= 20, "must be 0 (sized automatically) or >= 20, got {}")
    ] = Field(
        0, description="Postgres max_connections; 0 sizes it from the replica counts (at least 100)."
    )
    retain_volume: bool = Field(True, description="Keep the data volume when the stack is destroyed.")
    memory_limit: MemorySize = memory_limit("1g", "Postgres")
    cpu_limit: Cpus = cpu_limit("", "Postgres")

    @property
    def major(self) -> int:
        major = leading_major(self.image)
        assert major is not None  # guaranteed by the image type
        return major


class RedisConfig(Group):
    image: Annotated[PinnedImage, major_at_least(REDIS_MIN_MAJOR, "redis:7.4.1", "Redis")] = Field(
        "redis:7.4.1", description="Redis image; tag starts with the major version (>= 7)."
    )
    host_port: HostPort = Field(0, description="Host port to publish Redis on; 0 keeps it private to the network.")
    memory_limit: MemorySize = memory_limit("512m", "Redis")
    cpu_limit: Cpus = cpu_limit("", "Redis")


class SecretsConfig(Group):
    rotation: int = Field(
        0, ge=0, le=1_000_000,
        description="Bump (1, 2, ...) to rotate the generated Postgres and Redis passwords; `pulumi up` "
                    "moves every container to the new ones (see README: Rotating passwords).",
    )
