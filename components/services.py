"""Background services: scheduler, triggers, cleanup loops, outside the API replicas."""

from __future__ import annotations

from typing import Sequence

import pulumi
import pulumi_docker as docker

from . import docker_common as dc
from .config import StackConfig
from .prefect_settings import Endpoints, server_env


class BackgroundServices(pulumi.ComponentResource):
    containers: list[docker.Container]

    def __init__(
        self,
        name: str,
        *,
        config: StackConfig,
        stack: str,
        network: docker.Network,
        endpoints: Endpoints,
        migration_succeeded: pulumi.Output[int],
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("prefect-ha:index:BackgroundServices", name, None, opts)
        prefix = config.prefix(stack)
        env = server_env(config, endpoints, "services")
        self.containers = []
        for index in range(1, config.services.replicas + 1):
            # No HTTP endpoint to probe: the restart policy is its liveness.
            self.containers.append(
                docker.Container(
                    f"{name}-{index}",
                    name=f"{prefix}-services-{index}",
                    image=config.prefect.image,
                    command=["prefect", "server", "services", "start"],
                    envs=env,
                    networks_advanced=dc.network_attachment(network),
                    restart="unless-stopped",
                    labels=dc.labels(
                        stack, "services", replica=str(index),
                        **{"migration-exit-code": migration_succeeded.apply(str)},
                    ),
                    **dc.log_args(config),
                    opts=dc.container_opts(self, depends_on=depends_on),
                )
            )
        self.register_outputs({"container_names": [c.name for c in self.containers]})
