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
# The server's unix socket, shared with the credentials job: local connections are
# trusted in the official image, so the job needs no password to set the role's.
SOCKET_DIR = "/var/run/postgresql"
CREDENTIALS_COMPONENT = "postgres-credentials"
ROLE_PASSWORD_ENV = "ROLE_PASSWORD"
OWNER_ENV = "STACK_OWNER"
# Exit code of the job when the volume belongs to another stack.
REFUSED = 3

# The credentials job. Postgres reads POSTGRES_PASSWORD only when it initialises an
# empty data directory, so a volume kept from an earlier deployment still has the
# role password of that deployment. On every deployment (and every password
# change) this job, over the trusted socket, makes the role's password the stack's
# current one. The password reaches psql on stdin, never in a command line, and
# is not logged (log_statement stays off). The database's comment records which
# stack owns the volume: a volume of another stack (same names, another stack) is
# refused, not taken over; a volume without an owner (first start, or made before
# this job existed) is claimed.
CREDENTIALS_SCRIPT = f"""set -eu
pg_isready -q -t 120
known() {{ psql -XAtq -d postgres -v ON_ERROR_STOP=1 -c "$1"; }}
if [ -z "$(known "select 1 from pg_roles where rolname = '$PGUSER'")" ]; then
  echo "prefect-ha: refused: this Postgres volume has no role $PGUSER; it was made for another stack" >&2
  exit {REFUSED}
fi
if [ -z "$(known "select 1 from pg_database where datname = '$PGDATABASE'")" ]; then
  echo "prefect-ha: refused: this Postgres volume has no database $PGDATABASE; it was made for another stack" >&2
  exit {REFUSED}
fi
owner=$(known "select coalesce(shobj_description(oid, 'pg_database'), '') from pg_database where datname = '$PGDATABASE'")
if [ -n "$owner" ] && [ "$owner" != "${OWNER_ENV}" ]; then
  echo "prefect-ha: refused: this Postgres volume belongs to '$owner', not to '${OWNER_ENV}'; nothing was changed" >&2
  exit {REFUSED}
fi
escaped=$(printenv {ROLE_PASSWORD_ENV} | sed "s/'/''/g")
printf "ALTER ROLE \"%s\" PASSWORD '%s';\n" "$PGUSER" "$escaped" | psql -XAtq -d postgres -v ON_ERROR_STOP=1 >/dev/null
if [ -z "$owner" ]; then
  known "COMMENT ON DATABASE \"$PGDATABASE\" IS '${OWNER_ENV}'" >/dev/null
  echo "prefect-ha: claimed this Postgres volume for '${OWNER_ENV}'"
fi
echo "prefect-ha: role $PGUSER has the stack's current password"
"""


class CredentialsRefused(pulumi.RunError):
    """The credentials job did not exit 0: nothing after it is created."""


def check_credentials(container_name: str, exit_code: int | None) -> int:
    if exit_code is None or int(exit_code) != 0:
        code = "unknown" if exit_code is None else int(exit_code)
        why = ("the Postgres volume belongs to another stack" if code == REFUSED
               else "the role's password could not be set")
        raise CredentialsRefused(
            f"postgres credentials job {container_name} exited with code {code}: {why}; no migration or "
            f"Prefect server was started. Read its output with: docker logs {container_name}"
        )
    return 0


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
        init_password: pulumi.Output[str],
        owner: str,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__(name, opts)
        # Postgres reads POSTGRES_PASSWORD only on an empty data directory, so the
        # volume outlives `pulumi destroy` unless the stack opts out.
        self.volume = place.volume(f"{name}-data", "postgres-data", self, retain=pg.retain_volume)
        self.socket = place.volume(f"{name}-socket", "postgres-socket", self)
        self.container, self.fingerprint = dc.fixed_container(
            f"{name}-container",
            parent=self,
            name=place.name("postgres"),
            image=pg.image,
            command=["postgres", "-c", f"max_connections={max_connections}"],
            envs=init_password.apply(
                lambda pw: [
                    f"POSTGRES_USER={pg.user}",
                    f"POSTGRES_PASSWORD={pw}",
                    f"POSTGRES_DB={pg.database}",
                    f"PGDATA={DATA_DIR}/pgdata",
                    f"TZ={place.timezone}",
                ]
            ),
            volumes=[
                docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path=DATA_DIR),
                docker.ContainerVolumeArgs(volume_name=self.socket.name, container_path=SOCKET_DIR),
            ],
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
        self.credentials = dc.rolling_container(
            f"{name}-credentials",
            place=place,
            role=CREDENTIALS_COMPONENT,
            parent=self,
            depends_on=[self.container],
            image=pg.image,
            command=["sh", "-c", CREDENTIALS_SCRIPT],
            envs=password.apply(lambda pw: [
                f"PGHOST={SOCKET_DIR}", f"PGUSER={pg.user}", f"PGDATABASE={pg.database}",
                f"{OWNER_ENV}={owner}", f"{ROLE_PASSWORD_ENV}={pw}", f"TZ={place.timezone}",
            ]),
            volumes=[docker.ContainerVolumeArgs(volume_name=self.socket.name, container_path=SOCKET_DIR)],
            **dc.one_shot(),
            **dc.hardening(read_only=True),
            **dc.limits(pg),
            labels=dc.labels(place.stack, CREDENTIALS_COMPONENT),
            **place.log_args(),
        )
        checked = pulumi.Output.all(self.credentials.name, self.credentials.exit_code).apply(
            lambda v: check_credentials(v[0], v[1])
        )
        self.ready = dc.passed(self.credentials, checked)
        """The credentials job, once it exited 0: what the migration lists in depends_on."""
        self.url = pulumi.Output.secret(
            password.apply(lambda pw: postgres_url(pg.user, pw, HOST_ALIAS, PORT, pg.database))
        )
        self.register_outputs({
            "container_name": self.container.name, "volume_name": self.volume.name,
            "credentials_job": self.credentials.name,
        })
