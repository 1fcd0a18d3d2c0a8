"""The one-shot migration job, and the gate that holds back everything after it."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pulumi
import pulumi_docker as docker

from . import docker_common as dc
from .config import MigrationConfig, PrefectConfig
from .prefect_settings import DATABASE_URL, Endpoints, migration_env
from .component import StackComponent

COMPONENT = "migration"
REGISTER_BLOCKS_SOURCE = Path(__file__).parent / "scripts" / "register_blocks.py"
REGISTER_BLOCKS_PATH = "/opt/prefect-ha/register_blocks.py"
CHECK_VERSION_SOURCE = Path(__file__).parent / "scripts" / "check_postgres_version.py"
CHECK_VERSION_PATH = "/opt/prefect-ha/check_postgres_version.py"
# The server's version first (an external Postgres may be older than Prefect allows).
COMMAND = [
    "sh",
    "-c",
    f"python {CHECK_VERSION_PATH} {DATABASE_URL} && prefect server database upgrade -y && python {REGISTER_BLOCKS_PATH}",
]


class MigrationFailed(pulumi.RunError):
    """Stops `pulumi up` with the exit code and no traceback."""


def check_exit_code(container_name: str, exit_code: int | None) -> int:
    """compose's service_completed_successfully: exit 0 or the deployment stops.

    pulumi-docker records a non-zero exit without failing the resource, so this
    check is what turns it into an error.
    """
    if exit_code is None or int(exit_code) != 0:
        code = "unknown" if exit_code is None else int(exit_code)
        raise MigrationFailed(
            f"migration container {container_name} exited with code {code}; "
            f"no API replica or services container was created. "
            f"Read its output with: docker logs {container_name}"
        )
    return int(exit_code)


class Migration(StackComponent):
    container: docker.Container
    succeeded: pulumi.Output[int]
    """Resolves to 0 once the job has exited 0; raises otherwise."""
    gate: pulumi.Output[docker.Container]
    """The job, once it exited 0: what the server processes list in depends_on."""

    def __init__(
        self,
        name: str,
        *,
        place: dc.Placement,
        prefect: PrefectConfig,
        migration: MigrationConfig,
        endpoints: Endpoints,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__(name, opts)
        # Rolled like the servers: a fixed name would need delete-before-replace,
        # which the engine cascades to everything that waits on the job.
        self.container = dc.rolling_container(
            f"{name}-container",
            place=place,
            role="migrate",
            parent=self,
            depends_on=depends_on,
            image=prefect.image,
            command=COMMAND,
            envs=migration_env(endpoints, timezone=place.timezone, log_level=prefect.log_level, migration=migration),
            uploads=[
                docker.ContainerUploadArgs(file=path, content=source.read_text())
                for path, source in ((REGISTER_BLOCKS_PATH, REGISTER_BLOCKS_SOURCE), (CHECK_VERSION_PATH, CHECK_VERSION_SOURCE))
            ],
            networks_advanced=dc.network_attachment(place.backend),
            **dc.one_shot(),
            # Not read-only: Docker refuses uploads into a read-only container.
            **dc.hardening(read_only=False),
            **dc.limits(migration),
            labels=dc.labels(place.stack, COMPONENT),
            **place.log_args(),
        )
        self.succeeded = pulumi.Output.all(self.container.name, self.container.exit_code).apply(
            lambda v: check_exit_code(v[0], v[1])
        )
        self.gate = dc.passed(self.container, self.succeeded)
        self.register_outputs({"container_name": self.container.name, "exit_code": self.succeeded})
