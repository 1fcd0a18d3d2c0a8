#!/usr/bin/env bash
# A small re-implementation of the official postgres image's docker-entrypoint.sh contract:
#   POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER (postgres),
#   POSTGRES_DB (= POSTGRES_USER), POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (scram-sha-256),
#   the *_FILE variants, PGDATA, /docker-entrypoint-initdb.d/*.{sh,sql,sql.gz}.
# initdb runs only when $PGDATA holds no cluster, so a persistent volume keeps its data.
# A first argument that starts with "-" is taken as server options ("postgres" is put in front).
# Never print the password: no `set -x` here.
set -Eeo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }

# file_env VAR [DEFAULT]: VAR from the environment, or from the file named by VAR_FILE.
file_env() {
  local var="$1" fileVar="${1}_FILE" def="${2:-}"
  if [ "${!var:-}" ] && [ "${!fileVar:-}" ]; then
    log "error: both $var and $fileVar are set (but are exclusive)"; exit 1
  fi
  local val="$def"
  if [ "${!var:-}" ]; then
    val="${!var}"
  elif [ "${!fileVar:-}" ]; then
    val="$(< "${!fileVar}")"
  fi
  export "$var"="$val"
  unset "$fileVar"
}

# "postgres --help", "--version", "-C name" and friends must not trigger initialisation.
wants_help() {
  local arg
  for arg; do
    case "$arg" in
      -'?'|--help|--describe-config|-V|--version|-C|-C*) return 0 ;;
    esac
  done
  return 1
}

if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

if [ "$1" = 'postgres' ] && ! wants_help "$@"; then
  : "${PGDATA:=/var/lib/postgresql/data}"
  export PGDATA

  if [ "$(id -u)" = '0' ]; then
    mkdir -p "$PGDATA"
    chmod 00700 "$PGDATA" || :
    find "$PGDATA" \! -user postgres -exec chown postgres '{}' + || :
    mkdir -p /var/run/postgresql
    chown postgres:postgres /var/run/postgresql || :
    chmod 03775 /var/run/postgresql || :
    # drop privileges and run this script again as postgres
    exec gosu postgres "${BASH_SOURCE[0]}" "$@"
  fi

  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS
  : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"

  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != 'trust' ]; then
      log "error: database is uninitialized and superuser password is not specified."
      log "       Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE), or POSTGRES_HOST_AUTH_METHOD=trust."
      exit 1
    fi

    log "initialising a new cluster in $PGDATA"
    # POSTGRES_INITDB_ARGS is word-split on purpose (same as the official image).
    # The password travels through a pipe (process substitution, which must sit on the initdb
    # command line itself to stay open), never through argv or the log.
    if [ -n "$POSTGRES_PASSWORD" ]; then
      # shellcheck disable=SC2086
      initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        $POSTGRES_INITDB_ARGS >&2
    else
      # shellcheck disable=SC2086
      initdb --username="$POSTGRES_USER" $POSTGRES_INITDB_ARGS >&2
    fi

    # local (unix socket) connections stay "trust" as initdb made them; the network needs a password
    printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"

    # a temporary server on the unix socket only, for POSTGRES_DB and the init scripts
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start >&2

    psql_cmd=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
    if [ "$POSTGRES_DB" != 'postgres' ]; then
      exists="$("${psql_cmd[@]}" --dbname postgres --set db="$POSTGRES_DB" -tA <<< \
        "SELECT 1 FROM pg_database WHERE datname = :'db';")"
      if [ -z "$exists" ]; then
        "${psql_cmd[@]}" --dbname postgres --set db="$POSTGRES_DB" <<< 'CREATE DATABASE :"db";' >&2
      fi
    fi

    shopt -s nullglob
    for f in /docker-entrypoint-initdb.d/*; do
      case "$f" in
        *.sh)
          # shellcheck disable=SC1090
          if [ -x "$f" ]; then log "running $f"; "$f"
          else log "sourcing $f"; . "$f"; fi ;;
        *.sql)    log "running $f"; "${psql_cmd[@]}" --dbname "$POSTGRES_DB" -f "$f" >&2 ;;
        *.sql.gz) log "running $f"; gunzip -c "$f" | "${psql_cmd[@]}" --dbname "$POSTGRES_DB" >&2 ;;
        *)        log "ignoring $f" ;;
      esac
    done
    shopt -u nullglob

    pg_ctl -D "$PGDATA" -m fast -w stop >&2
    log "PostgreSQL init process complete; ready for start up."
  else
    log "PostgreSQL database directory appears to contain a database; skipping initialization"
  fi
  unset POSTGRES_PASSWORD
fi

exec "$@"
