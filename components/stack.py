"""The whole Prefect HA stack, wired in startup order, and what users read back."""

from __future__ import annotations

from typing import Any, Mapping

import pulumi

from .api import SERVICE_ALIAS, ApiServer
from .config import PROJECT, ConfigError, StackConfig, load_config
from .docker_common import Placement
from .migration import Migration
from .network import StackNetwork
from .postgres import HOST_ALIAS as POSTGRES_HOST, Postgres
from .prefect_settings import API_PORT, POSTGRES_PORT, REDIS_DOCKET_DB, REDIS_PORT, Endpoints, client_env
from .proxy import Proxy
from .tls import EdgeTls
from .worker import DockerWorkers
from .redis import HOST_ALIAS as REDIS_HOST, Redis
from .secrets import StackSecrets
from .services import BackgroundServices
from .urls import postgres_url, redis_url
from .component import StackComponent


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
        super().__init__(name, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = config.prefix(stack)

        auth = config.auth
        self.secrets = StackSecrets(
            f"{name}-secrets", auth_username=auth.username if auth.enabled else None, opts=child
        )
        self.network = StackNetwork(
            f"{name}-network", prefix=prefix, stack=stack,
            backend_internal=not config.data_ports_published, opts=child,
        )
        place = Placement(config=config, stack=stack, backend=self.network.backend, edge=self.network.edge)
        self.postgres = Postgres(f"{name}-postgres", place=place, password=self.secrets.postgres_password, opts=child)
        self.redis = Redis(f"{name}-redis", place=place, password=self.secrets.redis_password, opts=child)
        pg = config.postgres
        self.endpoints = Endpoints(
            redis_host=REDIS_HOST,
            database_url=pulumi.Output.secret(
                self.secrets.postgres_password.apply(
                    lambda pw: postgres_url(pg.user, pw, POSTGRES_HOST, POSTGRES_PORT, pg.database)
                )
            ),
            docket_url=pulumi.Output.secret(
                self.secrets.redis_password.apply(
                    lambda pw: redis_url(pw, REDIS_HOST, REDIS_PORT, REDIS_DOCKET_DB)
                )
            ),
            redis_password=self.secrets.redis_password,
            auth_string=self.secrets.auth_string if auth.mode == "prefect" else None,
        )
        data_stores = [self.postgres.container, self.redis.container]
        self.migration = Migration(
            f"{name}-migration", place=place, endpoints=self.endpoints, depends_on=data_stores, opts=child,
        )
        # depends_on on a component does not reach its children, so the
        # containers are handed over explicitly; the exit-code gate is an Output
        # every dependent consumes.
        after_migration = [*data_stores, self.migration.container]
        self.api = ApiServer(
            f"{name}-api", place=place, endpoints=self.endpoints,
            migration_succeeded=self.migration.succeeded, depends_on=after_migration, opts=child,
        )
        self.services = BackgroundServices(
            f"{name}-services", place=place, endpoints=self.endpoints,
            migration_succeeded=self.migration.succeeded, depends_on=after_migration, opts=child,
        )
        self.tls = EdgeTls(f"{name}-tls", config=config, opts=child) if config.tls.enabled else None
        self.proxy = Proxy(
            f"{name}-proxy", place=place, upstream_hosts=self.api.aliases, upstreams=self.api.replicas,
            tls=self.tls, htpasswd=self.secrets.htpasswd if auth.mode == "nginx" else None, opts=child,
        )
        self.workers = None
        if config.worker.enabled:
            # Inside the stack the API is reached by its alias on the edge network.
            self.workers = DockerWorkers(
                f"{name}-worker", place=place,
                api_url=config.worker.api_url or f"http://{SERVICE_ALIAS}:{API_PORT}/api",
                auth_string=self.secrets.auth_string, depends_on=self.api.replicas, opts=child,
            )

        public = config.proxy.public_url
        self.api_url = f"{public}/api"
        self.outputs: dict[str, Any] = {
            "api_url": self.api_url,
            "ui_url": f"{public}/",
            "health_url": f"{public}/api/health",
            "services": {
                "networks": {"backend": self.network.backend.name, "edge": self.network.edge.name},
                "postgres": f"{POSTGRES_HOST}:{POSTGRES_PORT}",
                "redis": f"{REDIS_HOST}:{REDIS_PORT}",
                "api": f"{SERVICE_ALIAS}:{API_PORT}",
                "api_replicas": [f"{alias}:{API_PORT}" for alias in self.api.aliases],
            },
            "containers": {
                "postgres": self.postgres.container.name,
                "redis": self.redis.container.name,
                "migration": self.migration.container.name,
                "api": [c.name for c in self.api.replicas],
                "services": [c.name for c in self.services.containers],
                "proxy": self.proxy.container.name,
                **({"workers": [c.name for c in self.workers.containers]} if self.workers else {}),
            },
            "postgres_volume": self.postgres.volume.name,
            "client_env": pulumi.Output.secret(
                client_env(self.api_url, self.secrets.auth_string, proxy_auth=auth.mode == "nginx")
            ),
            # Reviewable in previews: the nginx container's own env is secret as a whole.
            "nginx_conf": self.proxy.nginx_conf,
        }
        if self.tls is not None:
            self.outputs["ca_certificate"] = self.tls.ca_certificate
        if self.workers is not None:
            pool = config.worker.pool
            self.outputs["work_pool"] = pool
            self.outputs["deploy_command"] = (
                f"prefect --no-prompt deploy <path/to/flows.py>:<flow> --name <deployment> --pool {pool} "
                f"--job-variable image=<image holding your flow code>"
            )
        self.register_outputs(self.outputs)

