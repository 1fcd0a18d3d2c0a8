#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine (idempotent).
#
#  * installs Debian's docker.io and debootstrap with apt-get when either is missing;
#  * starts dockerd in the background (log: $DOCKERD_LOG, default /tmp/prefect-ha-dockerd.log)
#    only when `docker info` does not answer and no dockerd process is running;
#  * waits until `docker info` answers, at most $DOCKERD_WAIT_SECONDS (default 60), and fails
#    with the tail of the daemon's log otherwise.
#
# Needs root to install or start anything; safe to run again and again.
set -euo pipefail

DOCKERD_LOG="${DOCKERD_LOG:-/tmp/prefect-ha-dockerd.log}"
DOCKERD_WAIT_SECONDS="${DOCKERD_WAIT_SECONDS:-60}"

log() { printf 'dockerd.sh: %s\n' "$*" >&2; }
need_root() {
  if [[ $(id -u) -ne 0 ]]; then log "ERROR: need root to $*"; exit 1; fi
}
engine_answers() { docker info >/dev/null 2>&1; }

# 1. packages
missing=()
{ command -v dockerd && command -v docker; } >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if ((${#missing[@]})); then
  need_root "apt-get install ${missing[*]}"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be missing or stale on a fresh machine: update once on failure.
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/prefect-ha-apt.log 2>&1; then
    apt-get update >>/tmp/prefect-ha-apt.log 2>&1
    apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/prefect-ha-apt.log 2>&1 || {
      log "ERROR: apt-get install ${missing[*]} failed; see /tmp/prefect-ha-apt.log"; exit 1; }
  fi
fi

# 2. daemon
if engine_answers; then
  log "engine already answers (server $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
  exit 0
fi
if pgrep -x dockerd >/dev/null 2>&1; then
  log "a dockerd process exists but does not answer yet; waiting for it"
else
  need_root "start dockerd"
  log "starting dockerd (log: $DOCKERD_LOG)"
  # setsid + nohup: the daemon outlives this script and the shell that ran it.
  setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
fi

# 3. readiness loop: poll `docker info`, bounded.
deadline=$((SECONDS + DOCKERD_WAIT_SECONDS))
until engine_answers; do
  if ((SECONDS >= deadline)); then
    log "ERROR: the Docker engine did not answer 'docker info' within ${DOCKERD_WAIT_SECONDS}s."
    log "last lines of $DOCKERD_LOG:"
    tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
    exit 1
  fi
  sleep 0.5
done
log "engine ready (server $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
