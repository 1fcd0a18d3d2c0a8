"""The stack's configuration: one pydantic model, built once from Pulumi config.

Pulumi config keys are flat and dotted (``prefect-ha:api.replicas``) so that
Pulumi.yaml can declare each one with a type, a description and a default.
The model groups them by the workload they configure (server, background
services, migration, postgres, redis, proxy), like prefect-helm's values.
Field names map to keys through ``to_camel``: ``api.wait_timeout`` is
``prefect-ha:api.waitTimeout``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from typing import Any, Mapping
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

PROJECT = "prefect-ha"

# Each Prefect process may hold a pool of 5 plus an overflow of 10 connections.
CONNECTIONS_PER_PREFECT_PROCESS = 15
# Postgres keeps 3 for superusers; the rest of the margin is for psql sessions,
# pg_isready and the one-shot migration job.
POSTGRES_CONNECTION_MARGIN = 20
POSTGRES_DEFAULT_MAX_CONNECTIONS = 100
POSTGRES_MIN_MAJOR = 14
REDIS_MIN_MAJOR = 7

_IMAGE_RE = re.compile(r"^(?P<repo>[a-z0-9][a-z0-9._/:-]*?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")
_SIZE_RE = re.compile(r"^[1-9][0-9]*[kmg]$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class ConfigError(Exception):
    """Bad stack configuration: one line per problem, each naming the key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in problems)
        )


def image_tag(image: str) -> str | None:
    match = _IMAGE_RE.match(image)
    return match.group("tag") if match else None


def _check_pinned_image(image: str) -> str:
    """Images must be pinned: a tag other than latest, or a digest."""
    match = _IMAGE_RE.match(image)
    if not match:
        raise ValueError(f"is not a Docker image reference, got {image!r}")
    tag, digest = match.group("tag"), match.group("digest")
    if digest is None and (tag is None or tag == "latest" or tag.endswith("-latest")):
        raise ValueError(
            f"must be pinned to a version tag or digest (not latest or untagged), got {image!r}"
        )
    return image


def _check_port(value: int, *, optional: bool) -> int:
    if optional and value == 0:
        return value
    if not 1 <= value <= 65535:
        allowed = "0 (not published) or 1-65535" if optional else "1-65535"
        raise ValueError(f"must be {allowed}, got {value}")
    return value


def _leading_major(image: str) -> int | None:
    tag = image_tag(image)
    found = re.match(r"^(\d+)", tag or "")
    return int(found.group(1)) if found else None


class _Group(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class PrefectConfig(_Group):
    image: str = Field(
        "prefecthq/prefect:3.8.8-python3.12",
        description="Prefect image for the migration job, API replicas and background services; pinned tag.",
    )
    log_level: str = Field("INFO", description="Prefect server log level.")

    _image = field_validator("image")(classmethod(lambda cls, v: _check_pinned_image(v)))

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        allowed = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        if value.upper() not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")
        return value.upper()


class ApiConfig(_Group):
    replicas: int = Field(1, description="Number of API server containers behind nginx.")
    keepalive_timeout: int = Field(
        75,
        description="Seconds the API keeps idle HTTP connections; above nginx's upstream keepalive_timeout (60 s).",
    )
    csrf_protection: bool = Field(
        False,
        description="Prefect's CSRF protection on the API (the UI and Prefect clients fetch tokens themselves).",
    )

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be >= 1, got {value}")
        if value > 20:
            raise ValueError(f"must be <= 20, got {value}")
        return value

    @field_validator("keepalive_timeout")
    @classmethod
    def _keepalive(cls, value: int) -> int:
        if value <= 60:
            raise ValueError(
                f"must be > 60 seconds (nginx keeps upstream connections 60 s), got {value}"
            )
        return value


class ServicesConfig(_Group):
    replicas: int = Field(
        1,
        description="Number of background-services containers (schedulers, triggers); more than one needs Prefect >= 3.6.6.",
    )

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be >= 1, got {value}")
        if value > 5:
            raise ValueError(f"must be <= 5, got {value}")
        return value


class MigrationConfig(_Group):
    database_timeout: int = Field(
        600,
        description="Seconds a migration statement may take (Prefect's database timeout, migration job only); large tables need minutes.",
    )

    @field_validator("database_timeout")
    @classmethod
    def _timeout(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be >= 1 second, got {value}")
        return value


class PostgresConfig(_Group):
    image: str = Field("postgres:16.6", description="Postgres image; tag starts with the major version (>= 14).")
    user: str = Field("prefect", description="Postgres role Prefect connects as.")
    database: str = Field("prefect", description="Postgres database name.")
    host_port: int = Field(0, description="Host port to publish Postgres on; 0 keeps it private to the network.")
    max_connections: int = Field(
        0,
        description="Postgres max_connections; 0 sizes it from the replica counts (at least 100).",
    )
    retain_volume: bool = Field(
        True, description="Keep the data volume when the stack is destroyed."
    )

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        _check_pinned_image(value)
        major = _leading_major(value)
        if major is None:
            raise ValueError(
                f"tag must start with the Postgres major version (e.g. postgres:16.6), got {value!r}"
            )
        if major < POSTGRES_MIN_MAJOR:
            raise ValueError(
                f"Postgres major must be >= {POSTGRES_MIN_MAJOR} (Prefect needs 14.9+), got {major} in {value!r}"
            )
        return value

    @field_validator("user", "database")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
            raise ValueError(
                f"must be a lower-case Postgres identifier (letters, digits, _), got {value!r}"
            )
        return value

    _host_port = field_validator("host_port")(classmethod(lambda cls, v: _check_port(v, optional=True)))

    @field_validator("max_connections")
    @classmethod
    def _max_connections(cls, value: int) -> int:
        if value != 0 and value < 20:
            raise ValueError(f"must be 0 (sized automatically) or >= 20, got {value}")
        return value

    @property
    def major(self) -> int:
        major = _leading_major(self.image)
        assert major is not None  # guaranteed by the validator
        return major


class RedisConfig(_Group):
    image: str = Field("redis:7.4.1", description="Redis image; tag starts with the major version (>= 7).")
    host_port: int = Field(0, description="Host port to publish Redis on; 0 keeps it private to the network.")

    _host_port = field_validator("host_port")(classmethod(lambda cls, v: _check_port(v, optional=True)))

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        _check_pinned_image(value)
        major = _leading_major(value)
        if major is None or major < REDIS_MIN_MAJOR:
            raise ValueError(
                f"must be Redis >= {REDIS_MIN_MAJOR} with the major version leading the tag, got {value!r}"
            )
        return value


class ProxyConfig(_Group):
    image: str = Field("nginx:1.27.3", description="nginx image in front of the API replicas; pinned tag.")
    port: int = Field(4200, description="Host port nginx publishes.")
    public_url: str = Field(
        "http://localhost:4200",
        description="URL users and browsers reach nginx at; the UI is told to call <publicUrl>/api.",
    )
    client_max_body_size: str = Field(
        "10m", description="Largest request body nginx accepts (events are up to 1.5 MB)."
    )
    allow_cidrs: tuple[str, ...] = Field(
        (),
        description="Client networks (CIDRs) nginx serves; everyone else gets 403. Empty means open to all.",
    )
    rate_limit: int = Field(
        0, description="Requests per second per client address to /api (nginx limit_req); 0 turns limiting off."
    )
    rate_limit_burst: int = Field(
        20, description="Requests per client address allowed above the rate at once; beyond that nginx answers 429."
    )

    _image = field_validator("image")(classmethod(lambda cls, v: _check_pinned_image(v)))
    _port = field_validator("port")(classmethod(lambda cls, v: _check_port(v, optional=False)))

    @field_validator("allow_cidrs", mode="before")
    @classmethod
    def _cidr_list(cls, value: Any) -> Any:
        # The CLI hands arrays over as JSON text.
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return ()
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("allow_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        networks = []
        for item in value:
            try:
                networks.append(str(ipaddress.ip_network(item, strict=True)))
            except ValueError as err:
                raise ValueError(f"must be a list of CIDRs such as 10.0.0.0/8, got {item!r} ({err})") from None
        return tuple(networks)

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"must be >= 0 requests per second (0 turns limiting off), got {value}")
        return value

    @field_validator("rate_limit_burst")
    @classmethod
    def _burst(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"must be >= 0, got {value}")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL such as http://prefect.example.com, got {value!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"must not carry credentials, a query or a fragment, got {value!r}")
        if re.search(r"[\s\"'$;{}\\<>`]", value):
            raise ValueError(f"must not contain spaces, quotes or any of $ ; {{ }} \\ < > `, got {value!r}")
        if parts.hostname in ("0.0.0.0", "::"):
            raise ValueError(
                f"must be an address browsers can reach, not a wildcard bind address, got {value!r}"
            )
        return value.rstrip("/")

    @field_validator("client_max_body_size")
    @classmethod
    def _body_size(cls, value: str) -> str:
        if not _SIZE_RE.match(value.lower()):
            raise ValueError(f"must be an nginx size such as 10m, got {value!r}")
        return value.lower()


_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----[A-Za-z0-9+/=\s]+-----END \1-----")


class TlsConfig(_Group):
    enabled: bool = Field(
        False,
        description="Serve HTTPS at nginx; proxy.publicUrl must then be https. Plain HTTP redirects to it.",
    )
    certificate: str = Field(
        "",
        description="PEM certificate chain for nginx (set with --secret along with tls.key); empty generates a self-signed CA and certificate.",
    )
    key: SecretStr = Field(
        SecretStr(""),
        description="PEM private key of tls.certificate; set it with `pulumi config set --secret --path tls.key`.",
    )
    http_port: int = Field(
        0, description="Host port for plain HTTP that redirects to HTTPS; 0 publishes none."
    )

    _http_port = field_validator("http_port")(classmethod(lambda cls, v: _check_port(v, optional=True)))

    @field_validator("certificate")
    @classmethod
    def _certificate(cls, value: str) -> str:
        if value and not _PEM_RE.search(value):
            raise ValueError("must be a PEM certificate (-----BEGIN CERTIFICATE----- ...)")
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        # Never echo the value: it is a private key.
        if text and not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", text):
            raise ValueError("must be a PEM private key (-----BEGIN ... PRIVATE KEY-----)")
        return value

    @model_validator(mode="after")
    def _pair(self) -> "TlsConfig":
        has_cert, has_key = bool(self.certificate), bool(self.key.get_secret_value())
        if has_cert != has_key:
            raise ValueError("tls.certificate and tls.key must be given together (or neither, for a generated certificate)")
        if has_cert and not self.enabled:
            raise ValueError("tls.certificate is set but tls.enabled is false; turn TLS on or drop the certificate")
        return self

    @property
    def provided(self) -> bool:
        return bool(self.certificate)


class AuthConfig(_Group):
    mode: str = Field(
        "none",
        description="Who checks credentials: none, prefect (the Prefect server's own basic auth) or nginx (basic auth at the proxy); never both.",
    )
    username: str = Field("prefect", description="User name of the generated credentials.")

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        allowed = ("none", "prefect", "nginx")
        normalized = value.strip().lower()
        if normalized not in allowed:
            words = {w.strip() for w in re.split(r"[,+ ]+", normalized) if w.strip()}
            if {"prefect", "nginx"} <= words:
                raise ValueError(
                    f"must be one of {', '.join(allowed)}, got {value!r}: prefect and nginx auth cannot "
                    "be combined, both use the Authorization header"
                )
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")
        return normalized

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
            raise ValueError(f"must be 1-64 letters, digits, '.', '_' or '-' (no ':'), got {value!r}")
        return value

    @property
    def enabled(self) -> bool:
        return self.mode != "none"


class WorkerConfig(_Group):
    enabled: bool = Field(False, description="Run Prefect Docker workers next to the server.")
    pool: str = Field("docker-pool", description="Work pool the workers serve; created (type docker) when missing.")
    replicas: int = Field(1, description="Number of worker containers.")
    image: str = Field(
        "",
        description="Worker image; empty uses prefect.image. It needs prefect-docker, baked in or via worker.extraPipPackages.",
    )
    extra_pip_packages: str = Field(
        "prefect-docker==0.7.4",
        description="EXTRA_PIP_PACKAGES the image installs at start; empty when the image already has prefect-docker.",
    )
    docker_client_timeout: int = Field(
        120, description="DOCKER_CLIENT_TIMEOUT: seconds the worker's Docker client waits for the engine."
    )
    docker_host: str = Field(
        "unix:///var/run/docker.sock",
        description="Docker engine the workers start flow-run containers on; a unix socket is mounted read-only.",
    )
    limit: int = Field(0, description="Most flow runs one worker runs at once; 0 means no limit.")
    pool_concurrency_limit: int = Field(0, description="Most flow runs the whole pool runs at once; 0 means no limit.")
    api_url: str = Field(
        "",
        description="API URL the workers and their flow runs call; empty uses the internal alias http://prefect-api:4200/api.",
    )
    job_network: str = Field(
        "", description="Docker network flow-run containers join; empty uses the stack's edge network."
    )
    job_image_pull_policy: str = Field(
        "IfNotPresent", description="Default image pull policy of flow-run containers: IfNotPresent, Always or Never."
    )
    job_auto_remove: bool = Field(True, description="Remove flow-run containers when they finish.")

    @field_validator("pool")
    @classmethod
    def _pool(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", value):
            raise ValueError(f"must be letters, digits, '.', '_' or '-' (no spaces or '/'), got {value!r}")
        return value

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, value: int) -> int:
        if not 1 <= value <= 10:
            raise ValueError(f"must be 1-10, got {value}")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return _check_pinned_image(value) if value else value

    @field_validator("docker_client_timeout")
    @classmethod
    def _timeout(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be a positive number of seconds, got {value}")
        return value

    @field_validator("docker_host")
    @classmethod
    def _docker_host(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "unix" and parts.path.startswith("/"):
            return value
        if parts.scheme in ("tcp", "ssh") and parts.hostname:
            return value
        raise ValueError(f"must be unix:///path/to/docker.sock or tcp://host:port, got {value!r}")

    @field_validator("limit", "pool_concurrency_limit")
    @classmethod
    def _limit(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"must be >= 0 (0 means no limit), got {value}")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or not parts.path.rstrip("/").endswith("/api"):
            raise ValueError(f"must be an http(s) URL ending in /api, got {value!r}")
        return value.rstrip("/")

    @field_validator("job_network")
    @classmethod
    def _job_network(cls, value: str) -> str:
        if value and not _NAME_RE.match(value):
            raise ValueError(f"must be a Docker network name, got {value!r}")
        return value

    @field_validator("job_image_pull_policy")
    @classmethod
    def _pull_policy(cls, value: str) -> str:
        allowed = ("IfNotPresent", "Always", "Never")
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    @property
    def socket_path(self) -> str | None:
        """Host path of the Docker socket to mount, when the engine is reached over one."""
        parts = urlsplit(self.docker_host)
        return parts.path if parts.scheme == "unix" else None


class LoggingConfig(_Group):
    max_size: str = Field("10m", description="json-file log max-size per container.")
    max_file: int = Field(3, description="json-file log files kept per container.")

    @field_validator("max_size")
    @classmethod
    def _max_size(cls, value: str) -> str:
        if not _SIZE_RE.match(value.lower()):
            raise ValueError(f"must be a size such as 10m, got {value!r}")
        return value.lower()

    @field_validator("max_file")
    @classmethod
    def _max_file(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be >= 1, got {value}")
        return value


class StackConfig(_Group):
    """Everything a stack can set; see Pulumi.yaml for the declared keys."""

    name_prefix: str = Field(
        "",
        description="Prefix of container, network and volume names; empty means prefect-ha-<stack>.",
    )
    timezone: str = Field("UTC", description="TZ of every container.")
    wait_timeout: int = Field(
        300, description="Seconds pulumi waits for a container to become healthy."
    )
    prefect: PrefectConfig = PrefectConfig()
    api: ApiConfig = ApiConfig()
    services: ServicesConfig = ServicesConfig()
    migration: MigrationConfig = MigrationConfig()
    postgres: PostgresConfig = PostgresConfig()
    redis: RedisConfig = RedisConfig()
    proxy: ProxyConfig = ProxyConfig()
    tls: TlsConfig = TlsConfig()
    auth: AuthConfig = AuthConfig()
    worker: WorkerConfig = WorkerConfig()
    logging: LoggingConfig = LoggingConfig()

    @field_validator("name_prefix")
    @classmethod
    def _name_prefix(cls, value: str) -> str:
        if value and not _NAME_RE.match(value):
            raise ValueError(
                f"must be lower-case letters, digits, '.', '_' or '-', got {value!r}"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_+\-/]+", value):
            raise ValueError(f"must be a tz database name such as Europe/Berlin, got {value!r}")
        return value

    @field_validator("wait_timeout")
    @classmethod
    def _wait_timeout(cls, value: int) -> int:
        if value < 10:
            raise ValueError(f"must be >= 10 seconds, got {value}")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> "StackConfig":
        problems = []
        ports = {
            "proxy.port": self.proxy.port,
            "tls.httpPort": self.tls.http_port,
            "postgres.hostPort": self.postgres.host_port,
            "redis.hostPort": self.redis.host_port,
        }
        published = [(k, p) for k, p in ports.items() if p]
        seen: dict[int, str] = {}
        for key, port in published:
            if port in seen:
                problems.append(f"{key} and {seen[port]} both publish host port {port}")
            seen[port] = key
        if self.postgres.max_connections and self.postgres.max_connections < self.required_connections:
            problems.append(
                f"postgres.maxConnections must be >= {self.required_connections} for "
                f"{self.api.replicas} API + {self.services.replicas} services replicas "
                f"({CONNECTIONS_PER_PREFECT_PROCESS} connections each plus a margin of "
                f"{POSTGRES_CONNECTION_MARGIN}), got {self.postgres.max_connections}; "
                f"raise it or set 0 to size it automatically"
            )
        scheme = urlsplit(self.proxy.public_url).scheme
        if self.tls.enabled and scheme != "https":
            problems.append(
                f"proxy.publicUrl must be an https URL when tls.enabled is true, got {self.proxy.public_url!r}"
            )
        if self.tls.http_port and not self.tls.enabled:
            problems.append("tls.httpPort only applies with tls.enabled (it redirects to HTTPS); set it to 0")
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
    def prefect_processes(self) -> int:
        return self.api.replicas + self.services.replicas

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


def config_keys(model: type[BaseModel] = StackConfig, prefix: str = "") -> dict[str, Any]:
    """Every Pulumi config key the model reads, with its field: ``{"api.replicas": field}``."""
    keys: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = prefix + to_camel(name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.update(config_keys(annotation, key + "."))
        else:
            keys[key] = field
    return keys


def _format_error(error: Mapping[str, Any]) -> list[str]:
    loc = ".".join(to_camel(str(part)) for part in error["loc"] if part != "__root__")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return [f"{loc} is not a known setting of {PROJECT}; see Pulumi.yaml for the keys"]
    if not loc:
        return message.split("; ")
    if error["type"].endswith("_parsing") or error["type"].endswith("_type"):
        return [f"{loc} {message.lower()}, got {error.get('input')!r}"]
    return [f"{loc} {message}"]


def group_names(model: type[BaseModel] = StackConfig) -> dict[str, type[BaseModel]]:
    """Config groups by key (``api``, ``postgres``, ...) and their models."""
    return {
        to_camel(name): field.annotation
        for name, field in model.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }


def _set_command(key: str, value: Any) -> str:
    field = config_keys().get(key)
    if field is not None and field.annotation is SecretStr:
        return f"pulumi config set --secret --path {key} <value>"  # never echo a secret
    text = value if isinstance(value, str) else json.dumps(value)
    return f"pulumi config set --path {key} {shlex.quote(text)}"


def load_config(raw: Mapping[str, Any]) -> StackConfig:
    """Build the model from the stack's config as the engine hands it over.

    Pulumi.yaml declares dotted keys (``api.replicas``), which the engine
    treats as paths into structured config: the program receives one object
    per group (``api`` = its declared defaults merged with the values set by
    ``pulumi config set --path api.replicas 3``), as JSON text or a mapping,
    and plain top-level keys (``namePrefix``) as text. A key set without
    ``--path`` arrives literally as ``api.replicas``: neither merged nor
    type-checked by the CLI, so it is refused here with the command to use.

    Raises ConfigError listing every problem, each naming the key, the value
    and what is allowed.
    """
    groups = group_names()
    problems: list[str] = []
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if "." in key:
            problems.append(
                f"{key} is set as a literal key (without --path), which Pulumi neither type-checks nor merges "
                f"into the {key.split('.', 1)[0]!r} group; remove it with `pulumi config rm {key}` and set it with "
                f"`{_set_command(key, value)}`"
            )
            continue
        if key in groups and isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError:
                value = None
        if key in groups and not isinstance(value, Mapping):
            problems.append(
                f"{key} must be a group of settings, set one by one with "
                f"`pulumi config set --path {key}.<setting> <value>`"
            )
            continue
        data[key] = value
    try:
        config = StackConfig.model_validate(data)
    except ValidationError as err:
        for error in err.errors():
            problems.extend(_format_error(error))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def nest_paths(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"api.replicas": 3}`` as the engine groups it: ``{"api": {"replicas": 3}}``."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        group, dot, leaf = key.partition(".")
        if dot:
            nested.setdefault(group, {})[leaf] = value
        else:
            nested[key] = value
    return nested


def load_paths(flat: Mapping[str, Any]) -> StackConfig:
    """load_config from path keys as `pulumi config set --path` names them (``api.replicas``)."""
    return load_config(nest_paths(flat))


def _declared_type(annotation: Any) -> str:
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "integer"
    if getattr(annotation, "__origin__", None) is tuple:
        return "array"
    return "string"


def declared_default(field: Any) -> Any:
    """A field's default as Pulumi.yaml and the README show it."""
    default = field.default
    if isinstance(default, SecretStr):
        return default.get_secret_value()
    if isinstance(default, tuple):
        return list(default)
    return default


def pulumi_yaml_declarations() -> str:
    """The `config:` block of Pulumi.yaml, generated from the model (python -m components.config yaml)."""
    lines = ["config:"]
    for key, field in config_keys().items():
        kind = _declared_type(field.annotation)
        lines.append(f"  {key}:")
        lines.append(f"    type: {kind}")
        if kind == "array":
            lines.append("    items:")
            lines.append("      type: string")
        lines.append(f"    default: {json.dumps(declared_default(field))}")
        lines.append(f"    description: {json.dumps(field.description)}")
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    """The README's configuration table (python -m components.config readme)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for key, field in config_keys().items():
        default = declared_default(field)
        shown = '""' if default == "" else json.dumps(default) if isinstance(default, list) else (
            str(default).lower() if isinstance(default, bool) else str(default))
        meaning = field.description.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
        rows.append(f"| `{key}` | `{shown}` | {meaning} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import sys

    print({"yaml": pulumi_yaml_declarations, "readme": readme_table}[sys.argv[1]](), end="")
