"""The edge-config job's and nginx's commands, run for real in a mount namespace.

The job writes a generation of the edge config with the modes nginx's workers
need, checks it with `nginx -t`, and only then makes it current; nginx's
watcher admits healthy replicas, starts nginx on the current generation and
reloads it when either changes. The rendered config names files but holds no
secret, and the secrets never reach nginx's environment.
"""

import os
import shlex
import subprocess
import time

from components import proxy
from components.config import load_paths
from components.proxy import CONFIG_SCRIPT, EDGE_DIR, RUNTIME_DIR, START_SCRIPT, nginx_env
from nginx_support import PUBLIC_HTTPS, render_conf


def test_the_config_names_files_but_holds_no_secret(pki):
    config = load_paths({"tls.enabled": "true", "proxy.publicUrl": PUBLIC_HTTPS, "auth.mode": "nginx"})
    conf = render_conf(config, "test")
    assert "PRIVATE KEY" not in conf and "BEGIN" not in conf and "$2a$" not in conf
    assert f"edge={EDGE_DIR}\n" in CONFIG_SCRIPT
    for name in (proxy.CONF_FILE, proxy.CERTIFICATE_FILE, proxy.KEY_FILE, proxy.HTPASSWD_FILE):
        assert f'"$new/{name}"' in CONFIG_SCRIPT
    for script in (CONFIG_SCRIPT, START_SCRIPT):
        assert "BEGIN" not in script and "$2" not in script


# --- the commands, run for real ---------------------------------------------------------------------

# Stands in for nginx. `nginx -t` reports the file and the EDGE_ variables it
# was started with and exits $FAKE_NGINX_T_EXIT; nginx itself reports its
# arguments and environment, writes its pid and logs every HUP it gets.
FAKE_NGINX = f"""#!/bin/sh
case " $* " in *" -t "*)
  for arg; do [ "$prev" = -c ] && echo "tested: $arg"; prev=$arg; done
  env | sed -n 's/^\\(EDGE_[A-Z_]*\\)=.*/tested env: \\1/p'
  exit ${{FAKE_NGINX_T_EXIT:-0}};;
esac
echo "args: $*"
env | sed -n 's/^\\(EDGE_[A-Z_]*\\)=.*/env: \\1/p'
echo $$ > {RUNTIME_DIR}/nginx.pid
trap 'echo "hup: $(readlink {EDGE_DIR}/{proxy.CURRENT_LINK})" >> /tmp/hup.log' HUP
[ -z "${{FAKE_NGINX_STAY:-}}" ] && exit 0
while :; do sleep 0.1; done
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
SETUP = [
    # The containers' tmpfs and the edge config volume, private to this namespace.
    "mount -t tmpfs -o mode=1777 tmpfs /tmp",
    "mount -t tmpfs -o mode=755 tmpfs /run",
    f"mkdir -p {EDGE_DIR} /tmp/fake-bin",
    *(f"printf '%s' {shlex.quote(body)} > /tmp/fake-bin/{name} && chmod 755 /tmp/fake-bin/{name}"
      for name, body in {"nginx": FAKE_NGINX, "getent": FAKE_GETENT, "curl": FAKE_CURL}.items()),
    "export PATH=/tmp/fake-bin:$PATH",
]


def config_job(host: str, env: dict[str, str], nginx_t_exit: int = 0) -> str:
    """One run of the job in a container whose hostname is ``host``; its own /tmp."""
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    inner = f"hostname {host} && mount -t tmpfs tmpfs /tmp/job && sh -c {shlex.quote(CONFIG_SCRIPT)}"
    return (f"mkdir -p /tmp/job && env {exports} FAKE_NGINX_T_EXIT={nginx_t_exit} "
            f"unshare -u -m sh -c {shlex.quote(inner)}; echo \"job {host}: $?\"")


LIST_GENERATIONS = (f"cd {EDGE_DIR} && echo current: $(readlink current) && "
                    "for g in gen-*; do for f in $g $g/*; do echo \"mode: $(stat -c '%a %U' $f) $f\"; done; done")


def in_namespace(*steps: str, timeout: float = 30) -> subprocess.CompletedProcess:
    script = " && ".join(SETUP) + "; " + "; ".join(steps)
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=timeout,
                          env={"PATH": os.environ["PATH"]})


def lines_starting(result: subprocess.CompletedProcess, prefix: str) -> list[str]:
    return [line[len(prefix):] for line in result.stdout.splitlines() if line.startswith(prefix)]


def test_the_job_writes_a_checked_generation_with_the_modes_nginx_needs():
    env = nginx_env("worker_processes 1;", certificate="CERT", private_key="KEY", htpasswd="ops:$2a$10$hash\n")
    result = in_namespace(config_job("a", env), LIST_GENERATIONS, f"cat {EDGE_DIR}/gen-a/{proxy.KEY_FILE}")
    assert lines_starting(result, "job a: ") == ["0"], result.stderr
    assert lines_starting(result, "tested: ") == [f"{EDGE_DIR}/gen-a/nginx.conf"]
    # the key and the htpasswd leave the job's environment before nginx -t runs
    assert sorted(lines_starting(result, "tested env: ")) == ["EDGE_NGINX_CONF", "EDGE_TLS_CERT"]
    assert lines_starting(result, "current: ") == ["gen-a"]
    modes = {line.split()[-1]: line.split()[:2] for line in lines_starting(result, "mode: ")}
    assert modes == {
        "gen-a": ["711", "root"],  # the workers may traverse it, nobody may list it
        "gen-a/nginx.conf": ["600", "root"],
        "gen-a/tls.crt": ["600", "root"],
        "gen-a/tls.key": ["600", "root"],
        "gen-a/htpasswd": ["644", "root"],  # the workers read it on every request
    }
    assert result.stdout.splitlines()[-1] == "KEY"


def test_without_tls_or_auth_the_job_writes_only_the_config():
    result = in_namespace(config_job("a", nginx_env("events {}")), LIST_GENERATIONS)
    assert {line.split()[-1] for line in lines_starting(result, "mode: ")} == {"gen-a", "gen-a/nginx.conf"}


def test_a_config_nginx_refuses_never_becomes_current():
    result = in_namespace(
        config_job("a", nginx_env("events {}")),
        config_job("b", nginx_env("events { broken }"), nginx_t_exit=1),
        LIST_GENERATIONS,
    )
    assert lines_starting(result, "job a: ") == ["0"] and lines_starting(result, "job b: ") == ["1"]
    assert lines_starting(result, "current: ") == ["gen-a"]


def test_the_previous_generation_stays_until_the_next_switch():
    result = in_namespace(*(config_job(host, nginx_env(f"# {host}")) for host in "abc"), LIST_GENERATIONS)
    assert lines_starting(result, "current: ") == ["gen-c"]
    assert {line.split()[-1] for line in lines_starting(result, "mode: ") if "/" not in line.split()[-1]} == {
        "gen-b", "gen-c"}


def test_nginx_starts_on_the_current_generation_after_the_healthy_replicas():
    result = in_namespace(
        config_job("a", nginx_env("events {}", htpasswd="ops:$2a$10$hash\n")),
        f"sh -c {shlex.quote(START_SCRIPT)}",
        f"sed 's/^/api: /' {RUNTIME_DIR}/{proxy.UPSTREAM_FILE}",
        f"sed 's/^/tasks: /' {RUNTIME_DIR}/{proxy.TASKS_UPSTREAM_FILE}",
        "sed 's/^/checked: /' /tmp/curl.log",
        f"stat -c 'runtime: %a %U' {RUNTIME_DIR}",
    )
    assert lines_starting(result, "args: ") == [f"-e stderr -c {EDGE_DIR}/current/nginx.conf -g daemon off;"]
    assert lines_starting(result, "env: ") == []
    # numeric address order, so every watcher of the same set writes the same files
    ordered = ["172.18.0.5", "172.18.0.7", "172.18.0.12"]
    passive = f"max_fails={proxy.MAX_FAILS} fail_timeout={proxy.FAIL_TIMEOUT}s"
    assert lines_starting(result, "api: ") == [f"server {a}:4200 {passive};" for a in ordered]
    # background tasks: one primary, the others only when it fails
    assert lines_starting(result, "tasks: ") == [
        f"server 172.18.0.5:4200 {passive};", "server 172.18.0.7:4200 backup;", "server 172.18.0.12:4200 backup;"]
    assert sorted(lines_starting(result, "checked: ")) == sorted(f"http://{a}:4200/api/health" for a in ordered)
    assert lines_starting(result, "runtime: ") == ["711 root"]
    assert "prefect-ha: upstream replicas: 172.18.0.5 172.18.0.7 172.18.0.12" in result.stderr
    assert "prefect-ha: edge config gen-a" in result.stderr


def test_the_watcher_reloads_nginx_when_a_new_config_becomes_current():
    """nginx stays up; a second job's generation reaches it as a HUP, within seconds."""
    result = in_namespace(
        config_job("a", nginx_env("events {}")),
        f"(FAKE_NGINX_STAY=1 sh -c {shlex.quote(START_SCRIPT)} &)",
        f"until [ -s {RUNTIME_DIR}/{proxy.WATCH_FILE} ]; do sleep 0.1; done",
        config_job("b", nginx_env("events { }")),
        "n=0; until grep -q gen-b /tmp/hup.log 2>/dev/null || [ $n -ge 100 ]; do sleep 0.1; n=$((n+1)); done",
        "sed 's/^/log: /' /tmp/hup.log",
        f"kill $(cat {RUNTIME_DIR}/nginx.pid)",
    )
    assert lines_starting(result, "job b: ") == ["0"], result.stderr
    assert lines_starting(result, "log: ") == ["hup: gen-b"], result.stderr
