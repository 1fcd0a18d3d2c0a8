"""Settings of the data stores: Postgres and Redis."""

from __future__ import annotations

from typing import Annotated

from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator

from ..images import leading_major
from .base import Group, cpu_limit, memory_limit
from .types import Cpus, HostPort, MemorySize, PinnedImage, checked, major_at_least, matching

POSTGRES_MIN_MAJOR = 14
PgIdentifier = Annotated[
    str, matching(r"[a-z_][a-z0-9_]{0,62}", "must be a lower-case Postgres identifier (letters, digits, _), got {!r}")
]
REDIS_MIN_MAJOR = 7
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")


def _port(parts) -> int | None:
    """The URL's port (None: the default); an IPv6 literal host is refused, the
    settings the stack writes take a host name or an IPv4 address."""
    if parts.hostname and ":" in parts.hostname:
        raise ValueError("names an IPv6 address; use a host name")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("has a port that is not a number from 1 to 65535")
    return port


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
    external_url: SecretStr = Field(
        SecretStr(""),
        description="postgresql://user:password@host:port/db of a Postgres (>= 14.9) the stack uses instead of its own; "
                    "set it with --secret. Empty runs Postgres in the stack.",
    )
    memory_limit: MemorySize = memory_limit("1g", "Postgres")
    cpu_limit: Cpus = cpu_limit("", "Postgres")

    @field_validator("external_url")
    @classmethod
    def _external_url(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if text:
            # The message never repeats the URL: it holds a password.
            parts = urlsplit(text)
            if parts.scheme not in POSTGRES_SCHEMES:
                raise ValueError(f"must be a postgresql:// URL (scheme one of {', '.join(POSTGRES_SCHEMES)})")
            if not parts.hostname or not parts.username or not parts.path.strip("/"):
                raise ValueError("must name a user, a host and a database: postgresql://user:password@host:5432/db")
            _port(parts)
            if parts.query or parts.fragment:
                raise ValueError("must not carry query parameters (sslmode and the like are not passed on)")
        return value

    @property
    def external(self) -> bool:
        return bool(self.external_url.get_secret_value())

    def external_endpoint(self) -> tuple[str, str, str, int, str]:
        """(user, password, host, port, database) of the external Postgres, decoded."""
        parts = urlsplit(self.external_url.get_secret_value())
        return (unquote(parts.username or ""), unquote(parts.password or ""), parts.hostname or "",
                _port(parts) or 5432, unquote(parts.path.strip("/")))

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
    external_url: SecretStr = Field(
        SecretStr(""),
        description="redis://:password@host:port of a Redis (>= 7) the stack uses instead of its own (databases 0 and 1); "
                    "set it with --secret. Empty runs Redis in the stack.",
    )
    memory_limit: MemorySize = memory_limit("512m", "Redis")
    cpu_limit: Cpus = cpu_limit("", "Redis")

    @field_validator("external_url")
    @classmethod
    def _external_url(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if text:
            parts = urlsplit(text)
            if parts.scheme != "redis":
                raise ValueError("must be a redis:// URL (TLS redis is not supported by the settings the stack writes)")
            if not parts.hostname:
                raise ValueError("must name a host: redis://:password@host:6379")
            _port(parts)
            if parts.path.strip("/"):
                raise ValueError("must not name a database: the stack uses 0 (messaging) and 1 (Docket)")
            if parts.username not in (None, "", "default"):
                raise ValueError("must not name a user: the stack authenticates as Redis's default user")
        return value

    @property
    def external(self) -> bool:
        return bool(self.external_url.get_secret_value())

    def external_endpoint(self) -> tuple[str, int, str]:
        """(host, port, password) of the external Redis."""
        parts = urlsplit(self.external_url.get_secret_value())
        return parts.hostname or "", _port(parts) or 6379, unquote(parts.password or "")


class SecretsConfig(Group):
    rotation: int = Field(
        0, ge=0, le=1_000_000,
        description="Bump (1, 2, ...) to rotate the generated Postgres and Redis passwords; `pulumi up` "
                    "moves every container to the new ones (see README: Rotating passwords).",
    )
