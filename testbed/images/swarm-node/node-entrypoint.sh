#!/bin/sh
# PID 1's child in a swarm-node container: prepares the mounts a nested dockerd needs (like the
# docker:dind image's "dind" hack), starts dockerd, and then stays up whether or not dockerd
# runs, so the engine alone can be stopped (stop-dockerd.sh) and started again (start-dockerd.sh).
# `docker stop` of the node (SIGTERM) stops dockerd gracefully first.
set -eu

# Without --privileged (tests/e2e/swarm.py cannot use it on this machine: the host's dockerd lacks
# CAP_SYS_RESOURCE, and runc fails with "unable to apply caps: operation not permitted"), the node
# runs with all other capabilities, no seccomp/AppArmor, unmasked /proc and all devices allowed,
# but Docker still mounts /sys and the cgroup hierarchies read-only: make them writable for the
# nested dockerd/runc (bind remounts change only this mount's flags).
if grep -qE '^[^ ]+ /sys(/fs/cgroup/[^ ]+)? [^ ]+ ro[, ]' /proc/self/mounts; then
  mount -o remount,rw /sys 2>/dev/null || echo "node: /sys stays read-only"
  for dir in /sys/fs/cgroup/*/; do
    mount -o remount,bind,rw "$dir" || echo "node: $dir stays read-only"
  done
fi
# AppArmor/LSM tools inside the node look here.
if [ -d /sys/kernel/security ] && ! mountpoint -q /sys/kernel/security; then
  mount -t securityfs none /sys/kernel/security || echo "node: could not mount securityfs (ignored)"
fi
# cgroup v2: move ourselves out of the root cgroup so controllers can be enabled for children
# (the docker:dind recipe). On cgroup v1 (this machine) there is nothing to do.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs || :
  sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers \
    > /sys/fs/cgroup/cgroup.subtree_control || :
fi
# dockerd's --exec-root and pid file; a stale pid file (e.g. after `docker kill` and start of
# the node) would make dockerd refuse to start.
rm -f /var/run/docker.pid /var/run/docker.sock

stopping=0
on_term() {
  stopping=1
  /usr/local/bin/stop-dockerd.sh || :
  exit 0
}
trap on_term TERM INT

/usr/local/bin/start-dockerd.sh
# Stay up (dockerd runs in the background); `wait` returns on a trapped signal.
while [ "$stopping" = 0 ]; do
  sleep 3600 &
  wait $! || :
done
