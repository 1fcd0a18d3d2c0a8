"""Redis: events, logs, leases and service coordination between Prefect processes."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from . import docker_common as dc
from .prefect_settings import REDIS_PORT
from .component import StackComponent

HOST_ALIAS = "redis"
CONFIG_PATH = "/usr/local/etc/redis/redis.conf"


def redis_conf(password: str) -> str:
    """The password lives in an uploaded file, not on the command line."""
    return "\n".join(
        [
            "bind 0.0.0.0",
            "protected-mode no",
            f"port {REDIS_PORT}",
            "dir /data",
            "appendonly yes",
            "appendfsync everysec",
            f'requirepass "{password}"',
            "",
        ]
    )


class Redis(StackComponent):
    container: docker.Container
    volume: docker.Volume

    def __init__(
        self,
        name: str,
        *,
        place: dc.Placement,
        password: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__(name, opts)
        config = place.config
        self.volume = docker.Volume(
            f"{name}-data",
            name=place.name("redis-data"),
            labels=[docker.VolumeLabelArgs(label=dc.STACK_LABEL, value=place.stack)],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.container = docker.Container(
            f"{name}-container",
            name=place.name("redis"),
            image=config.redis.image,
            command=["redis-server", CONFIG_PATH],
            uploads=[docker.ContainerUploadArgs(file=CONFIG_PATH, content=password.apply(redis_conf))],
            # redis-cli reads the password from REDISCLI_AUTH, keeping it out of `ps`.
            envs=password.apply(lambda pw: [f"REDISCLI_AUTH={pw}", f"TZ={config.timezone}"]),
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path="/data")],
            networks_advanced=dc.network_attachment(place.backend, HOST_ALIAS),
            ports=dc.published(REDIS_PORT, config.redis.host_port),
            healthcheck=dc.healthcheck(
                ["CMD-SHELL", "redis-cli -h 127.0.0.1 ping | grep -q PONG"],
                interval=2, timeout=5, retries=15, start_period=5,
            ),
            restart="unless-stopped",
            # The entrypoint chowns /data, then drops to the redis user.
            **dc.hardening(read_only=False, cap_add=["CHOWN", "SETGID", "SETUID"]),
            wait=True,
            wait_timeout=config.wait_timeout,
            labels=dc.labels(place.stack, "redis"),
            **dc.log_args(config),
            opts=dc.container_opts(self),
        )
        self.register_outputs({"container_name": self.container.name})
