"""The stack's configuration: one pydantic model, built once from Pulumi config.

Pulumi config keys are dotted paths (``prefect-ha:api.replicas``) so that
Pulumi.yaml can declare each one with a type, a description and a default.
The model groups them by the workload they configure (server, background
services, migration, postgres, redis, proxy), like prefect-helm's values.
Field names map to keys through ``to_camel``: ``api.wait_timeout`` is
``api.waitTimeout``.

- ``types``: constraint types the groups share (pinned image, port, size, CPUs)
- ``server``, ``data_stores``, ``edge``, ``backup``: the groups, by what they configure
- ``stack``: the whole model, cross-group checks and derived answers
- ``keys``, ``loading``, ``generators``: keys, the loader, Pulumi.yaml/README
"""

from .backup import BackupConfig
from .base import PROJECT, Group
from .data_stores import POSTGRES_MIN_MAJOR, REDIS_MIN_MAJOR, PostgresConfig, RedisConfig, SecretsConfig
from .edge import API_HEALTH_PATH, API_PATH, AUTH_MODES, AUTH_NONE, AUTH_PREFECT, AUTH_NGINX, TLS_MODES, TLS_OFF, AuthConfig, ProxyConfig, TlsConfig
from .generators import pulumi_yaml_declarations, readme_table
from .keys import config_keys, declared_default, group_names
from .loading import ConfigError, load_config, load_paths, nest_paths
from .server import ApiConfig, MigrationConfig, PrefectConfig, ServicesConfig, WorkerConfig
from .stack import (
    CONNECTIONS_PER_PREFECT_PROCESS,
    POSTGRES_CONNECTION_MARGIN,
    POSTGRES_DEFAULT_MAX_CONNECTIONS,
    PLATFORM_DOCKER,
    PLATFORM_SWARM,
    PLATFORMS,
    LoggingConfig,
    StackConfig,
)
from .types import size_in_mb

__all__ = [name for name in dir() if not name.startswith("_")]
