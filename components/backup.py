"""Scheduled logical backups of the Prefect database, each verified before it counts.

A long-running container from the Postgres image (pg_dump and pg_restore match
the server's version there) on the backend network runs components/scripts/backup.sh:
a pg_dump in custom format every ``backup.intervalMinutes``, read back in full,
then renamed into place as ``prefect-<UTC time>.dump``; the newest ``backup.keep``
are kept. The backups go to the volume ``<prefix>-backups``, which outlives
``pulumi destroy`` like the Postgres volume, or to ``backup.hostPath``.
bin/restore brings one back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pulumi
import pulumi_docker as docker

from . import docker_common as dc
from . import postgres as pg
from .component import StackComponent
from .config import BackupConfig, PostgresConfig

COMPONENT = "backup"
ROLE = "backup"
VOLUME_ROLE = "backups"
BACKUP_DIR = "/backups"
SCRIPT_SOURCE = Path(__file__).parent / "scripts" / "backup.sh"
SCRIPT_ENV = "BACKUP_SCRIPT"
# Written at start into tmpfs (the root filesystem is read-only); the same file
# serves the loop, the healthcheck and `docker exec ... now`.
SCRIPT_PATH = "/tmp/prefect-backup"
COMMAND = ["sh", "-c", f'printf "%s\\n" "${SCRIPT_ENV}" > {SCRIPT_PATH} && exec sh {SCRIPT_PATH} loop']
GRACE_SECONDS = 30
# Slack on top of two intervals before the healthcheck calls the newest backup stale.
STALE_MARGIN_SECONDS = 600
LOCATION_LABEL = "backup-location"


def now_command(container_name: str) -> str:
    """What takes a backup at once on the running stack."""
    return f"docker exec {container_name} sh {SCRIPT_PATH} now"


def list_command(container_name: str) -> str:
    return f"docker exec {container_name} sh {SCRIPT_PATH} list"


def backup_env(backup: BackupConfig, postgres: PostgresConfig, password: str, timezone: str) -> list[str]:
    """The container's environment; it holds the Postgres password, so the whole list is secret."""
    return [
        f"PGHOST={pg.HOST_ALIAS}",
        f"PGPORT={pg.PORT}",
        f"PGUSER={postgres.user}",
        f"PGDATABASE={postgres.database}",
        f"PGPASSWORD={password}",
        f"BACKUP_DIR={BACKUP_DIR}",
        f"BACKUP_KEEP={backup.keep}",
        f"BACKUP_INTERVAL={backup.interval_seconds}",
        f"BACKUP_MAX_AGE={2 * backup.interval_seconds + STALE_MARGIN_SECONDS}",
        f"TZ={timezone}",
        f"{SCRIPT_ENV}={SCRIPT_SOURCE.read_text()}",
    ]


class Backups(StackComponent):
    container: docker.Container
    volume: docker.Volume | None
    """The named backup volume, or None with ``backup.hostPath``."""
    location: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        place: dc.Placement,
        backup: BackupConfig,
        postgres: PostgresConfig,
        password: pulumi.Output[str],
        depends_on: Sequence[pulumi.Input[pulumi.Resource]] = (),
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__(name, opts)
        if backup.host_path:
            self.volume = None
            mount = docker.ContainerVolumeArgs(host_path=backup.host_path, container_path=BACKUP_DIR)
            self.location = pulumi.Output.from_input(backup.host_path)
            location_label = backup.host_path
        else:
            # Kept on `pulumi destroy`, like the Postgres volume: backups are for
            # when the stack is gone.
            self.volume = place.volume(f"{name}-volume", VOLUME_ROLE, self, retain=True, depends_on=depends_on)
            mount = docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path=BACKUP_DIR)
            self.location = self.volume.name
            location_label = f"volume:{place.name(VOLUME_ROLE)}"
        self.container = dc.rolling_container(
            f"{name}-container",
            place=place,
            role=ROLE,
            parent=self,
            depends_on=depends_on,
            image=postgres.image,
            # A command other than `postgres` passes through the image's entrypoint untouched.
            command=COMMAND,
            envs=pulumi.Output.secret(
                password.apply(lambda pw: backup_env(backup, postgres, pw, place.timezone))
            ),
            volumes=[mount],
            networks_advanced=dc.network_attachment(place.backend),
            # Unhealthy when the last backup failed, or when the newest is older than two
            # intervals (plus a margin). A first backup under way counts as healthy, so
            # `pulumi up` waits for the loop to run, not for a whole dump of a large database.
            healthcheck=dc.healthcheck(["CMD", "sh", SCRIPT_PATH, "health"], interval=5, timeout=10, retries=3),
            restart="unless-stopped",
            wait=True,
            wait_timeout=place.wait_timeout,
            destroy_grace_seconds=GRACE_SECONDS,
            **dc.hardening(read_only=True, tmpfs=["/tmp"]),
            **dc.limits(backup),
            labels=dc.labels(
                place.stack, COMPONENT,
                **{LOCATION_LABEL: location_label,
                   "backup-interval-minutes": str(backup.interval_minutes),
                   "backup-keep": str(backup.keep)},
            ),
            **place.log_args(),
        )
        self.outputs = {
            "location": location_label,
            "container": self.container.name,
            "interval_minutes": backup.interval_minutes,
            "keep": backup.keep,
            "now": self.container.name.apply(now_command),
            "list": self.container.name.apply(list_command),
        }
        if self.volume is not None:
            self.outputs["volume"] = self.volume.name
        self.register_outputs(self.outputs)
