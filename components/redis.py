"""Redis: events, logs, leases and service coordination between Prefect processes."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from . import docker_common as dc
from .component import StackComponent
from .config import RedisConfig
from .urls import redis_url

COMPONENT = "redis"
HOST_ALIAS = "redis"
PORT = 6379
ADDRESS = f"{HOST_ALIAS}:{PORT}"
CONFIG_PATH = "/usr/local/etc/redis/redis.conf"


def redis_conf(password: str) -> str:
    """The password lives in an uploaded file, not on the command line."""
    return "\n".join(
        [
            "bind 0.0.0.0",
            "protected-mode no",
            f"port {PORT}",
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
    password: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        place: dc.Placement,
        redis: RedisConfig,
        password: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__(name, opts)
        self.password = password
        self.volume = place.volume(f"{name}-data", "redis-data", self)
        self.container, self.fingerprint = dc.fixed_container(
            f"{name}-container",
            parent=self,
            name=place.name("redis"),
            image=redis.image,
            command=["redis-server", CONFIG_PATH],
            uploads=[docker.ContainerUploadArgs(file=CONFIG_PATH, content=password.apply(redis_conf))],
            # redis-cli reads the password from REDISCLI_AUTH, keeping it out of `ps`.
            envs=password.apply(lambda pw: [f"REDISCLI_AUTH={pw}", f"TZ={place.timezone}"]),
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path="/data")],
            networks_advanced=dc.network_attachment(place.backend, HOST_ALIAS),
            ports=dc.published(PORT, redis.host_port),
            healthcheck=dc.healthcheck(
                ["CMD-SHELL", "redis-cli -h 127.0.0.1 ping | grep -q PONG"],
                interval=2, timeout=5, retries=15, start_period=5,
            ),
            restart="unless-stopped",
            # The entrypoint chowns /data, then drops to the redis user.
            **dc.hardening(read_only=False, cap_add=["CHOWN", "SETGID", "SETUID"]),
            **dc.limits(redis),
            wait=True,
            wait_timeout=place.wait_timeout,
            labels=dc.labels(place.stack, COMPONENT),
            **place.log_args(),
        )
        self.register_outputs({"container_name": self.container.name})

    def url(self, db: int) -> pulumi.Output[str]:
        """redis:// URL of database ``db``, password percent-encoded; a secret."""
        return pulumi.Output.secret(self.password.apply(lambda pw: redis_url(pw, HOST_ALIAS, PORT, db)))
