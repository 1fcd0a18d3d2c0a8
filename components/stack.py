"""The whole Prefect HA stack, wired in startup order, and what users read back.

The composition root: it reads the config once and hands each component the
slices it uses; components publish their own addresses and URLs.
"""

from __future__ import annotations

from typing import Any, Mapping

import pulumi

from . import api as api_server, postgres as pg, redis as rd, swarm
from .api import ApiServer
from .backup import Backups
from .component import StackComponent
from .config import PROJECT, ConfigError, StackConfig, load_config
from .docker_common import Placement
from . import downtime
from .migration import Migration
from .network import StackNetwork
from .postgres import Postgres
from .prefect_settings import REDIS_DOCKET_DB, Endpoints, client_env
from .proxy import Proxy
from .redis import Redis
from .secrets import StackSecrets
from .services import BackgroundServices
from .tls import EdgeTls
from .urls import postgres_url, redis_url
from .worker import DockerWorkers


# What the outputs say of a data store given by URL (the URL holds its password).
EXTERNAL = "external"


def redis_endpoint(config: StackConfig, redis: Redis | None) -> dict[str, Any]:
    """Endpoints' Redis fields: the stack's own Redis, or the one config.redis.externalUrl names."""
    if redis is not None:
        return {"redis_host": rd.HOST_ALIAS, "redis_port": rd.PORT, "redis_password": redis.password,
                "docket_url": redis.url(REDIS_DOCKET_DB)}
    host, port, password = config.redis.external_endpoint()
    return {"redis_host": host, "redis_port": port, "redis_password": pulumi.Output.secret(password),
            "docket_url": pulumi.Output.secret(redis_url(password, host, port, REDIS_DOCKET_DB))}


def external_database_url(config: StackConfig) -> pulumi.Output[str]:
    """config.postgres.externalUrl as Prefect's asyncpg URL, re-encoded; a secret."""
    user, password, host, port, database = config.postgres.external_endpoint()
    return pulumi.Output.secret(postgres_url(user, password, host, port, database))


class InvalidConfig(pulumi.RunError):
    """Stops the program with the problems listed and no traceback."""


def project_config() -> dict[str, Any]:
    """This project's keys from the stack's config, without the namespace."""
    from pulumi.runtime import config as runtime_config

    prefix = f"{PROJECT}:"
    values = runtime_config.CONFIG.get()
    return {key[len(prefix):]: value for key, value in values.items() if key.startswith(prefix)}


def read_stack_config(raw: Mapping[str, Any] | None = None) -> StackConfig:
    try:
        return load_config(project_config() if raw is None else raw)
    except ConfigError as err:
        raise InvalidConfig(str(err)) from None


class PrefectHa(StackComponent):
    """Postgres and Redis, then the migration, then API replicas and background
    services, then nginx: each step waits for the previous one to be healthy or
    to have completed successfully."""

    def __init__(self, name: str, *, config: StackConfig, stack: str, opts: pulumi.ResourceOptions | None = None):
        if config.swarm and (problem := swarm.name_problem(config.prefix(stack))):
            raise InvalidConfig(f"invalid stack configuration:\n  - {problem}")
        super().__init__(name, opts)
        child = pulumi.ResourceOptions(parent=self)
        auth = config.auth

        self.secrets = StackSecrets(
            f"{name}-secrets", auth_username=auth.username if auth.enabled else None,
            rotation=config.secrets.rotation, opts=child
        )
        self.network = StackNetwork(
            f"{name}-network", prefix=config.prefix(stack), stack=stack,
            backend_internal=config.backend_internal, swarm=config.swarm, opts=child,
        )
        place = Placement(
            stack=stack, prefix=config.prefix(stack), backend=self.network.backend, edge=self.network.edge,
            timezone=config.timezone, wait_timeout=config.wait_timeout, logging=config.logging, swarm=config.swarm,
        )
        # The stack's own Postgres and Redis, unless external ones are given by URL.
        self.postgres = None if config.postgres.external else Postgres(
            f"{name}-postgres", place=place, pg=config.postgres, max_connections=config.postgres_max_connections,
            password=self.secrets.postgres_password, init_password=self.secrets.postgres_init_password,
            owner=f"{PROJECT}/{stack}/{config.prefix(stack)}", opts=child,
        )
        self.redis = None if config.redis.external else Redis(
            f"{name}-redis", place=place, redis=config.redis, password=self.secrets.redis_password, opts=child)
        self.endpoints = Endpoints(
            **redis_endpoint(config, self.redis),
            database_url=self.postgres.url if self.postgres else external_database_url(config),
            auth_string=self.secrets.auth_string if auth.checked_by_prefect else None,
        )
        data_stores = [store.container for store in (self.postgres, self.redis) if store is not None]
        self.migration = Migration(
            f"{name}-migration", place=place, prefect=config.prefect, migration=config.migration,
            endpoints=self.endpoints,
            depends_on=[*data_stores, *([self.postgres.ready] if self.postgres else [])], opts=child,
        )
        # depends_on on a component does not reach its children, so the
        # containers are handed over explicitly; the exit-code gate is an Output
        # every dependent consumes.
        after_migration = [*data_stores, self.migration.gate]
        self.api = ApiServer(
            f"{name}-api", place=place, prefect=config.prefect, api=config.api, ui_api_url=config.proxy.api_url,
            events_retention_days=config.services.events_retention_days,
            endpoints=self.endpoints, depends_on=after_migration, opts=child,
        )
        self.services = BackgroundServices(
            f"{name}-services", place=place, prefect=config.prefect, services=config.services,
            endpoints=self.endpoints, depends_on=after_migration, opts=child,
        )
        self.tls = (
            EdgeTls(f"{name}-tls", tls=config.tls, public_url=config.proxy.public_url, opts=child)
            if config.tls.enabled else None
        )
        self.proxy = Proxy(
            f"{name}-proxy", place=place, proxy=config.proxy, upstreams=self.api.replicas, tls=self.tls, http_redirect_port=config.tls.http_port,
            auth_mode=auth.mode, htpasswd=self.secrets.htpasswd if auth.checked_by_nginx else None, opts=child,
        )
        self.workers = None
        if config.worker.enabled:
            self.workers = DockerWorkers(
                f"{name}-worker", place=place, worker=config.worker, image=config.worker_image,
                log_level=config.prefect.log_level,
                api_url=config.worker.api_url or api_server.INTERNAL_API_URL,
                auth_string=self.secrets.auth_string, proxy_auth=auth.checked_by_nginx,
                depends_on=self.api.replicas, opts=child,
            )

        # After the migration passed: the first backup (taken at start) is of the
        # migrated schema instead of racing its DDL.
        self.backups = (
            Backups(
                f"{name}-backups", place=place, backup=config.backup, postgres=config.postgres,
                password=self.secrets.postgres_password, depends_on=[self.postgres.container, self.migration.gate],
                opts=child,
            )
            if config.backup.enabled and self.postgres else None
        )

        # Postgres, Redis and nginx cannot roll: the preview's diff of this output
        # says when a deployment replaces one of them, and which inputs do.
        fingerprints = downtime.exported({
            **({"postgres": self.postgres.fingerprint} if self.postgres else {}),
            **({"redis": self.redis.fingerprint} if self.redis else {}),
            "nginx": self.proxy.fingerprint,
        })

        self.api_url = config.proxy.api_url
        self.outputs: dict[str, Any] = {
            "api_url": self.api_url,
            "ui_url": config.proxy.ui_url,
            "health_url": config.proxy.health_url,
            "platform": config.platform,
            "services": {
                "networks": {"backend": self.network.backend.name, "edge": self.network.edge.name},
                "postgres": pg.ADDRESS if self.postgres else EXTERNAL,
                "redis": rd.ADDRESS if self.redis else EXTERNAL,
                "api": api_server.ADDRESS,
                "api_replicas": [f"{alias}:{api_server.API_PORT}" for alias in self.api.aliases],
            },
            "containers": {
                **({"postgres": self.postgres.container.name} if self.postgres else {}),
                **({"redis": self.redis.container.name} if self.redis else {}),
                "migration": self.migration.container.name,
                **({} if config.swarm else {
                    "api": [c.name for c in self.api.replicas],
                    "services": [c.name for c in self.services.containers],
                    "proxy": self.proxy.container.name,
                    **({"workers": [c.name for c in self.workers.containers]} if self.workers else {}),
                }),
            },
            **({"swarm_services": {
                "api": self.api.replicas[0].name,
                "services": self.services.containers[0].name,
                "proxy": self.proxy.container.name,
                **({"workers": self.workers.containers[0].name} if self.workers else {}),
            }} if config.swarm else {}),
            **({"postgres_volume": self.postgres.volume.name} if self.postgres else {}),
            "client_env": pulumi.Output.secret(
                client_env(self.api_url, self.secrets.auth_string, proxy_auth=auth.checked_by_nginx)
            ),
            # Reviewable in previews: the edge-config job's env is secret as a whole.
            "nginx_conf": self.proxy.nginx_conf,
            downtime.OUTPUT: fingerprints,
        }
        if self.tls is not None:
            self.outputs["ca_certificate"] = self.tls.ca_certificate
        if self.backups is not None:
            self.outputs["backups"] = self.backups.outputs
        if self.workers is not None:
            pool = config.worker.pool
            self.outputs["work_pool"] = pool
            self.outputs["deploy_command"] = (
                f"prefect --no-prompt deploy <path/to/flows.py>:<flow> --name <deployment> --pool {pool} "
                f"--job-variable image=<image holding your flow code>"
            )
        self.register_outputs(self.outputs)

