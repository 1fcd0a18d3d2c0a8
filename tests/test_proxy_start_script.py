"""The nginx container's start script, run for real: it writes the files nginx
reads, with the modes the workers need, and keeps the secrets out of nginx's
environment; the rendered config names those files and holds no secret."""

import os
import shlex
import subprocess

from components import proxy
from components.config import load_paths
from components.proxy import RUNTIME_DIR, START_SCRIPT, nginx_env
from nginx_support import PUBLIC_HTTPS, render_conf


def test_the_config_names_files_but_holds_no_secret(pki):
    config = load_paths({"tls.enabled": "true", "proxy.publicUrl": PUBLIC_HTTPS, "auth.mode": "nginx"})
    conf = render_conf(config, "test")
    assert "PRIVATE KEY" not in conf and "BEGIN" not in conf and "$2a$" not in conf
    assert f"dir={RUNTIME_DIR}\n" in START_SCRIPT
    for name in (proxy.CONF_FILE, proxy.CERTIFICATE_FILE, proxy.KEY_FILE, proxy.HTPASSWD_FILE):
        assert f'"$dir/{name}"' in START_SCRIPT
    assert "BEGIN" not in START_SCRIPT and "$2" not in START_SCRIPT


# --- the container's command, run for real ----------------------------------------------------------

FAKE_NGINX = """#!/bin/sh
# Stands in for nginx: reports its arguments, environment and the files it was given.
echo "args: $*"
env | sed -n 's/^\\(EDGE_[A-Z_]*\\)=.*/env: \\1/p'
cd /tmp/prefect-ha && for f in . *; do echo "mode: $(stat -c '%a %U' "$f") $f"; done
"""
# Docker's DNS for the replicas' alias, as `getent hosts` prints it (an IPv6
# answer is ignored), and their health checks: one replica is not up yet.
REPLICAS = ["172.18.0.12", "172.18.0.5", "172.18.0.7"]
NOT_HEALTHY = "172.18.0.9"
FAKE_GETENT = f"""#!/bin/sh
[ "$1 $2" = "hosts {proxy.SERVICE_ALIAS}" ] || exit 2
for a in {" ".join(REPLICAS)} {NOT_HEALTHY}; do echo "$a      {proxy.SERVICE_ALIAS}"; done
echo "fd00::5  {proxy.SERVICE_ALIAS}"
"""
FAKE_CURL = f"""#!/bin/sh
for arg; do url=$arg; done
case $url in *{NOT_HEALTHY}*) exit 7;; esac
echo "$url" >> /tmp/curl.log
"""


def run_start_script(env: dict[str, str]) -> subprocess.CompletedProcess:
    """START_SCRIPT under a fresh tmpfs /tmp (the container's), with nginx, getent
    and curl replaced by the fakes above."""
    fakes = {"nginx": FAKE_NGINX, "getent": FAKE_GETENT, "curl": FAKE_CURL}
    script = " && ".join([
        "mount -t tmpfs -o mode=1777 tmpfs /tmp",
        "mkdir /tmp/fake-bin",
        *(f"printf '%s' {shlex.quote(body)} > /tmp/fake-bin/{name} && chmod 755 /tmp/fake-bin/{name}"
          for name, body in fakes.items()),
        "export PATH=/tmp/fake-bin:$PATH",
        f"sh -c {shlex.quote(START_SCRIPT)}",
        "echo conf: $(cat /tmp/prefect-ha/nginx.conf)",
        "if [ -e /tmp/prefect-ha/tls.key ]; then echo key: $(cat /tmp/prefect-ha/tls.key); fi",
        "if [ -e /tmp/prefect-ha/htpasswd ]; then echo htpasswd: $(cat /tmp/prefect-ha/htpasswd); fi",
        f"sed 's/^/api: /' /tmp/prefect-ha/{proxy.UPSTREAM_FILE}",
        f"sed 's/^/tasks: /' /tmp/prefect-ha/{proxy.TASKS_UPSTREAM_FILE}",
        "sed 's/^/checked: /' /tmp/curl.log",
    ])
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"], **env})


WRITTEN = {"upstream-api.conf": ["600", "root"], "upstream-tasks.conf": ["600", "root"], "watch": ["600", "root"]}


def test_start_script_writes_the_files_and_keeps_secrets_from_nginx():
    env = nginx_env("worker_processes 1;", certificate="CERT", private_key="KEY", htpasswd="ops:$2a$10$hash\n")
    result = run_start_script(env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"args: -e stderr -c {RUNTIME_DIR}/nginx.conf -g daemon off;" in lines
    # nginx gets the config through the file; the key and htpasswd are not in its environment.
    assert sorted(l for l in lines if l.startswith("env: ")) == ["env: EDGE_NGINX_CONF", "env: EDGE_TLS_CERT"]
    modes = {l.split()[-1]: l.split()[1:3] for l in lines if l.startswith("mode: ")}
    assert modes == {
        ".": ["711", "root"],  # the workers may traverse it, nobody may list it
        "nginx.conf": ["600", "root"],
        "tls.crt": ["600", "root"],
        "tls.key": ["600", "root"],
        "htpasswd": ["644", "root"],  # the workers read it on every request
        **WRITTEN,
    }
    assert "conf: worker_processes 1;" in lines and "key: KEY" in lines and "htpasswd: ops:$2a$10$hash" in lines


def test_the_watcher_admits_only_healthy_replicas_before_nginx_starts():
    result = run_start_script(nginx_env("events {}"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # numeric address order, so every watcher of the same set writes the same files
    ordered = ["172.18.0.5", "172.18.0.7", "172.18.0.12"]
    passive = f"max_fails={proxy.MAX_FAILS} fail_timeout={proxy.FAIL_TIMEOUT}s"
    assert [l for l in lines if l.startswith("api: ")] == [f"api: server {a}:4200 {passive};" for a in ordered]
    # background tasks: one primary, the others only when it fails
    assert [l for l in lines if l.startswith("tasks: ")] == [
        f"tasks: server 172.18.0.5:4200 {passive};",
        "tasks: server 172.18.0.7:4200 backup;", "tasks: server 172.18.0.12:4200 backup;"]
    checked = sorted(l.split()[1] for l in lines if l.startswith("checked: "))
    assert checked == sorted(f"http://{a}:4200/api/health" for a in ordered)
    assert "prefect-ha: upstream replicas: 172.18.0.5 172.18.0.7 172.18.0.12" in result.stderr


def test_start_script_without_tls_or_auth_writes_only_the_config():
    result = run_start_script(nginx_env("events {}"))
    assert result.returncode == 0, result.stderr
    modes = {l.split()[-1] for l in result.stdout.splitlines() if l.startswith("mode: ")}
    assert modes == {".", "nginx.conf", *WRITTEN}
