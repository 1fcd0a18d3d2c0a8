"""Postgres: the one source of truth every Prefect process shares."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from . import docker_common as dc
from .prefect_settings import POSTGRES_PORT
from .component import StackComponent

HOST_ALIAS = "postgres"
DATA_DIR = "/var/lib/postgresql/data"


class Postgres(StackComponent):
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
        config, pg = place.config, place.config.postgres
        # Postgres reads POSTGRES_PASSWORD only on an empty data directory, so the
        # volume outlives `pulumi destroy` unless the stack opts out.
        self.volume = docker.Volume(
            f"{name}-data",
            name=place.name("postgres-data"),
            labels=[docker.VolumeLabelArgs(label=dc.STACK_LABEL, value=place.stack)],
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=pg.retain_volume),
        )
        self.container = docker.Container(
            f"{name}-container",
            name=place.name("postgres"),
            image=pg.image,
            command=["postgres", "-c", f"max_connections={config.postgres_max_connections}"],
            envs=password.apply(
                lambda pw: [
                    f"POSTGRES_USER={pg.user}",
                    f"POSTGRES_PASSWORD={pw}",
                    f"POSTGRES_DB={pg.database}",
                    f"PGDATA={DATA_DIR}/pgdata",
                    f"TZ={config.timezone}",
                ]
            ),
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path=DATA_DIR)],
            networks_advanced=dc.network_attachment(place.backend, HOST_ALIAS),
            ports=dc.published(POSTGRES_PORT, pg.host_port),
            # Over TCP, so the init-time server (socket only) does not count as ready.
            healthcheck=dc.healthcheck(
                ["CMD-SHELL", 'pg_isready -h 127.0.0.1 -p 5432 -U "$POSTGRES_USER" -d "$POSTGRES_DB"'],
                interval=2, timeout=5, retries=15, start_period=10,
            ),
            restart="unless-stopped",
            # The entrypoint chowns the data directory, then drops to the postgres user.
            **dc.hardening(read_only=False, cap_add=["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]),
            wait=True,
            wait_timeout=config.wait_timeout,
            # Declared for the policy pack, which cannot see retain_on_delete.
            labels=dc.labels(place.stack, "postgres", **{"data-volume": "retained" if pg.retain_volume else "disposable"}),
            **dc.log_args(config),
            opts=dc.container_opts(self),
        )
        self.register_outputs({"container_name": self.container.name, "volume_name": self.volume.name})
