"""The stack's two user-defined Docker networks: containers find each other by alias.

backend: Postgres, Redis and the Prefect server processes. It is internal (no
route in or out) unless a Postgres or Redis host port is published, which
needs the route Docker's port mapping uses.
edge: nginx, the API replicas, workers and the flow-run containers they start.

On a swarm both are overlay networks spanning the nodes, attachable so that
the data stores, the one-shot jobs and flow-run containers (plain containers)
join the services on them.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from .docker_common import STACK_LABEL
from .component import StackComponent


class StackNetwork(StackComponent):
    backend: docker.Network
    edge: docker.Network

    def __init__(
        self, name: str, *, prefix: str, stack: str, backend_internal: bool, swarm: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__(name, opts)
        labels = [docker.NetworkLabelArgs(label=STACK_LABEL, value=stack)]
        kind = {"driver": "overlay", "attachable": True} if swarm else {"driver": "bridge"}
        self.backend = docker.Network(
            f"{name}-backend",
            name=f"{prefix}-backend",
            **kind,
            internal=backend_internal,
            labels=labels,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.edge = docker.Network(
            f"{name}-edge",
            name=f"{prefix}-edge",
            **kind,
            labels=labels,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"backend": self.backend.name, "edge": self.edge.name})
