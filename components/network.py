"""The stack's user-defined Docker network: containers find each other by alias."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from .docker_common import STACK_LABEL


class StackNetwork(pulumi.ComponentResource):
    network: docker.Network

    def __init__(self, name: str, *, physical_name: str, stack: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("prefect-ha:index:StackNetwork", name, None, opts)
        self.network = docker.Network(
            f"{name}-net",
            name=physical_name,
            driver="bridge",
            labels=[
                docker.NetworkLabelArgs(label=STACK_LABEL, value=stack),
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"name": self.network.name})
