#!/bin/sh
# Stops the node's dockerd gracefully, as `systemctl stop docker` would: SIGTERM, then waits for
# it to exit (dockerd stops its containers first; up to STOP_WAIT seconds, default 60).
set -eu
pidfile=/var/run/docker.pid
[ -f "$pidfile" ] || { echo "node: dockerd is not running"; exit 0; }
pid="$(cat "$pidfile")"
kill -TERM "$pid" 2>/dev/null || exit 0
waited=0
while kill -0 "$pid" 2>/dev/null; do
  if [ "$waited" -ge "$((${STOP_WAIT:-60} * 10))" ]; then
    echo "node: dockerd (pid $pid) still runs ${STOP_WAIT:-60} s after SIGTERM" >&2
    exit 1
  fi
  sleep 0.1
  waited=$((waited + 1))
done
echo "node: dockerd stopped"
