"""Postgres: the one source of truth every Prefect process shares."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from . import docker_common as dc
from .component import StackComponent
from .config import PostgresConfig
from .urls import postgres_url

COMPONENT = "postgres"
HOST_ALIAS = "postgres"
PORT = 5432
ADDRESS = f"{HOST_ALIAS}:{PORT}"
DATA_DIR = "/var/lib/postgresql/data"
# Declared on the container for the policy pack, which cannot see retain_on_delete.
DATA_VOLUME_LABEL = "data-volume"
DATA_VOLUME_RETAINED = "retained"


class Postgres(StackComponent):
    container: docker.Container
    volume: docker.Volume
    url: pulumi.Output[str]
    """Prefect's database URL (asyncpg), credentials percent-encoded; a secret."""

    def __init__(
        self,
        name: str,
        *,
        place: dc.Placement,
        pg: PostgresConfig,
        max_connections: int,
        password: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__(name, opts)
        # Postgres reads POSTGRES_PASSWORD only on an empty data directory, so the
        # volume outlives `pulumi destroy` unless the stack opts out.
        self.volume = docker.Volume(
            f"{name}-data",
            name=place.name("postgres-data"),
            labels=[docker.VolumeLabelArgs(label=dc.STACK_LABEL, value=place.stack)],
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=pg.retain_volume),
        )
        self.container, self.fingerprint = dc.fixed_container(
            f"{name}-container",
            parent=self,
            name=place.name("postgres"),
            image=pg.image,
            command=["postgres", "-c", f"max_connections={max_connections}"],
            envs=password.apply(
                lambda pw: [
                    f"POSTGRES_USER={pg.user}",
                    f"POSTGRES_PASSWORD={pw}",
                    f"POSTGRES_DB={pg.database}",
                    f"PGDATA={DATA_DIR}/pgdata",
                    f"TZ={place.timezone}",
                ]
            ),
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path=DATA_DIR)],
            networks_advanced=dc.network_attachment(place.backend, HOST_ALIAS),
            ports=dc.published(PORT, pg.host_port),
            # Over TCP, so the init-time server (socket only) does not count as ready.
            healthcheck=dc.healthcheck(
                ["CMD-SHELL", f'pg_isready -h 127.0.0.1 -p {PORT} -U "$POSTGRES_USER" -d "$POSTGRES_DB"'],
                interval=2, timeout=5, retries=15, start_period=10,
            ),
            restart="unless-stopped",
            # The entrypoint chowns the data directory, then drops to the postgres user.
            **dc.hardening(read_only=False, cap_add=["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]),
            **dc.limits(pg),
            wait=True,
            wait_timeout=place.wait_timeout,
            labels=dc.labels(
                place.stack, COMPONENT,
                **{DATA_VOLUME_LABEL: DATA_VOLUME_RETAINED if pg.retain_volume else "disposable"},
            ),
            **place.log_args(),
        )
        self.url = pulumi.Output.secret(
            password.apply(lambda pw: postgres_url(pg.user, pw, HOST_ALIAS, PORT, pg.database))
        )
        self.register_outputs({"container_name": self.container.name, "volume_name": self.volume.name})
