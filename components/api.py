"""API replicas: `prefect server start --no-services`, any number, side by side."""

from __future__ import annotations

from typing import Sequence

import pulumi
import pulumi_docker as docker

from . import docker_common as dc, swarm
from .component import StackComponent
from .config import API_HEALTH_PATH, API_PATH, ApiConfig, PrefectConfig
from .prefect_settings import SCRATCH_DIR, Endpoints, api_env

COMPONENT = "api"
API_PORT = 4200
# Every replica holds this alias on the edge network: Docker's DNS answers it
# with all of them, which is how workers (and nginx) reach the API.
SERVICE_ALIAS = "prefect-api"
ADDRESS = f"{SERVICE_ALIAS}:{API_PORT}"
INTERNAL_API_URL = f"http://{ADDRESS}{API_PATH}"
HEALTH_PATH = API_HEALTH_PATH
# How long a replica being removed gets to finish its requests before it is killed.
GRACE_SECONDS = 30
# The official image has Python but no curl.
HEALTH_TEST = [
    "CMD",
    "python",
    "-c",
    "import sys, urllib.request; "
    f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{API_PORT}{HEALTH_PATH}', timeout=4).status == 200 else 1)",
]


def replica_alias(index: int) -> str:
    return f"{SERVICE_ALIAS}-{index}"


def tasks_dns_name(place: dc.Placement) -> str:
    """The DNS name that answers with every replica's address: the shared alias on
    one host, Swarm's ``tasks.<service>`` on a swarm (the alias would give the VIP)."""
    return f"{swarm.TASKS_PREFIX}{place.name(COMPONENT)}" if place.swarm else SERVICE_ALIAS


class ApiServer(StackComponent):
    replicas: list[docker.Container | docker.Service]
    """The replica containers, or on Swarm the one service: what later steps wait on."""
    aliases: list[str]

    def __init__(
        self,
        name: str,
        *,
        place: dc.Placement,
        prefect: PrefectConfig,
        api: ApiConfig,
        ui_api_url: str,
        events_retention_days: int,
        endpoints: Endpoints,
        depends_on: Sequence[pulumi.Input[pulumi.Resource]] = (),
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__(name, opts)
        env = api_env(endpoints, timezone=place.timezone, log_level=prefect.log_level, api=api, ui_api_url=ui_api_url,
                      events_retention_days=events_retention_days)
        command = ["prefect", "server", "start", "--host", "0.0.0.0", "--port", str(API_PORT), "--no-services"]
        health = dict(test=HEALTH_TEST, interval=5, timeout=5, retries=5, start_period=20)
        self.replicas = []
        self.aliases = []
        if place.swarm:
            self.replicas.append(swarm.service(
                f"{name}-service", place=place, role=COMPONENT, parent=self, depends_on=depends_on,
                labels=swarm.labels(place.stack, COMPONENT),
                spec=swarm.ServiceSpec(
                    image=prefect.image, command=command, env=env, replicas=api.replicas, healthcheck=swarm.healthcheck(**health),
                    networks=[(place.backend, []), (place.edge, [SERVICE_ALIAS])],
                    tmpfs=[SCRATCH_DIR], grace_seconds=GRACE_SECONDS,
                    memory_mb=dc.limits(api)["memory"], cpus=api.cpu_limit,
                ),
            ))
            self.register_outputs({"service_name": self.replicas[0].name})
            return
        for index in range(1, api.replicas + 1):
            alias = replica_alias(index)
            self.aliases.append(alias)
            # Replicas depend on the migration gate and the data stores, never on each other.
            self.replicas.append(
                dc.rolling_container(
                    f"{name}-{index}",
                    place=place,
                    role=f"api-{index}",
                    parent=self,
                    depends_on=depends_on,
                    image=prefect.image,
                    command=command,
                    envs=env,
                    networks_advanced=[*dc.network_attachment(place.backend), *dc.network_attachment(place.edge, alias, SERVICE_ALIAS)],
                    healthcheck=dc.healthcheck(**health),
                    restart="unless-stopped",
                    **dc.hardening(read_only=True, tmpfs=[SCRATCH_DIR]),
                    **dc.limits(api),
                    wait=True,
                    wait_timeout=place.wait_timeout,
                    labels=dc.labels(place.stack, COMPONENT, replica=str(index)),
                    # docker stop: SIGTERM, and uvicorn finishes what it is serving.
                    destroy_grace_seconds=GRACE_SECONDS,
                    **place.log_args(),
                )
            )
        self.register_outputs(
            {"container_names": [r.name for r in self.replicas], "aliases": self.aliases}
        )
