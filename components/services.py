"""Background services: scheduler, triggers, cleanup loops, outside the API replicas."""

from __future__ import annotations

from typing import Sequence

import pulumi
import pulumi_docker as docker

from . import docker_common as dc, swarm
from .config import PrefectConfig, ServicesConfig
from .component import StackComponent
from .prefect_settings import SCRATCH_DIR, Endpoints, services_env

COMPONENT = "services"
GRACE_SECONDS = 30


class BackgroundServices(StackComponent):
    containers: list[docker.Container | docker.Service]

    def __init__(
        self,
        name: str,
        *,
        place: dc.Placement,
        prefect: PrefectConfig,
        services: ServicesConfig,
        endpoints: Endpoints,
        depends_on: Sequence[pulumi.Input[pulumi.Resource]] = (),
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__(name, opts)
        env = services_env(endpoints, timezone=place.timezone, log_level=prefect.log_level, services=services)
        command = ["prefect", "server", "services", "start"]
        self.containers = []
        if place.swarm:
            self.containers.append(swarm.service(
                f"{name}-service", place=place, role=COMPONENT, parent=self, depends_on=depends_on,
                labels=swarm.labels(place.stack, COMPONENT),
                spec=swarm.ServiceSpec(
                    image=prefect.image, command=command, env=env, replicas=services.replicas,
                    networks=[(place.backend, [])], tmpfs=[SCRATCH_DIR], grace_seconds=GRACE_SECONDS,
                    memory_mb=dc.limits(services)["memory"], cpus=services.cpu_limit,
                ),
            ))
            self.register_outputs({"service_name": self.containers[0].name})
            return
        for index in range(1, services.replicas + 1):
            # No HTTP endpoint to probe: the restart policy is its liveness.
            self.containers.append(
                dc.rolling_container(
                    f"{name}-{index}",
                    place=place,
                    role=f"services-{index}",
                    parent=self,
                    depends_on=depends_on,
                    image=prefect.image,
                    command=command,
                    envs=env,
                    networks_advanced=dc.network_attachment(place.backend),
                    restart="unless-stopped",
                    **dc.hardening(read_only=True, tmpfs=[SCRATCH_DIR]),
                    **dc.limits(services),
                    labels=dc.labels(place.stack, COMPONENT, replica=str(index)),
                    # SIGTERM first: the services stop their loops cleanly.
                    destroy_grace_seconds=GRACE_SECONDS,
                    **place.log_args(),
                )
            )
        self.register_outputs({"container_names": [c.name for c in self.containers]})
