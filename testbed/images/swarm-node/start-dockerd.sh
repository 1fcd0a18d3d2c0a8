#!/bin/sh
# Starts the node's dockerd in the background (no-op when it runs). Its output goes to the
# node container's log (PID 1's stdout), so `docker logs <node>` shows the engine's log.
#   -H tcp://0.0.0.0:2375   the API for the test host, plain TCP without TLS: test-only.
#   --storage-driver        overlay2 on /var/lib/docker, a volume on the host's ext4/xfs.
#                           Set DOCKERD_STORAGE_DRIVER=vfs only if overlay2 fails there (vfs
#                           copies every layer: slow and large); overlay2 works on this machine.
#   --tls=false             says the plain TCP socket is meant (no TLS flags are given).
set -eu
if [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
  echo "node: dockerd already runs (pid $(cat /var/run/docker.pid))"
  exit 0
fi
rm -f /var/run/docker.pid
exec >>/proc/1/fd/1 2>&1
echo "node: starting dockerd (storage driver ${DOCKERD_STORAGE_DRIVER:-overlay2})"
# shellcheck disable=SC2086
setsid dockerd \
  -H unix:///var/run/docker.sock -H tcp://0.0.0.0:2375 --tls=false \
  --storage-driver "${DOCKERD_STORAGE_DRIVER:-overlay2}" \
  ${DOCKERD_EXTRA_ARGS:-} </dev/null &
