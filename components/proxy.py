"""nginx in front of the API replicas: the stack's one published edge.

Least connections and failover over the replicas; TLS, basic auth, a client
allowlist and per-client rate limiting when configured. The container's root
filesystem is read-only and Docker refuses uploads into such a container, so
nginx.conf, the certificate, its key and the htpasswd travel in environment
variables; the container's command writes them into a tmpfs directory and
execs nginx without the secret ones.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import urlsplit

import jinja2
import pulumi
import pulumi_docker as docker

from . import docker_common as dc, swarm
from .api import API_PORT, HEALTH_PATH as API_HEALTH_PATH, SERVICE_ALIAS, tasks_dns_name
from .config import API_PATH, AUTH_NGINX, TLS_OFF, ProxyConfig
from .tls import EdgeTls
from .component import StackComponent

COMPONENT = "proxy"
# What nginx (TLS, with the ports it publishes) and the edge-config job (auth,
# with the htpasswd it writes) declare for the policy pack.
TLS_LABEL = "tls"
AUTH_LABEL = "auth"
# nginx's listeners inside the container; proxy.port publishes the public one.
HTTP_PORT = 8080
HTTPS_PORT = 8443
HEALTH_PATH = "/nginx-health"

# Written at start into tmpfs; nothing on the read-only root filesystem changes.
RUNTIME_DIR = "/tmp/prefect-ha"
CONF_FILE = "nginx.conf"
CERTIFICATE_FILE = "tls.crt"
KEY_FILE = "tls.key"
HTPASSWD_FILE = "htpasswd"
# The replica set, written by the watcher below and included by the upstream blocks.
UPSTREAM_FILE = "upstream-api.conf"
TASKS_UPSTREAM_FILE = "upstream-tasks.conf"
WATCH_FILE = "watch"
MAX_FAILS = 3
FAIL_TIMEOUT = 10
# How often the watcher asks Docker's DNS for the replicas; a stale heartbeat fails the healthcheck.
WATCH_SECONDS = 1
WATCH_STALE_SECONDS = 30
# The edge config volume (see CONFIG_SCRIPT), read-only in nginx.
EDGE_DIR = "/run/prefect-ha/edge"
CURRENT_LINK = "current"
CONFIG_COMPONENT = "edge-config"

# The container's environment carries the files' contents.
CONF_ENV = "EDGE_NGINX_CONF"
CERTIFICATE_ENV = "EDGE_TLS_CERT"
KEY_ENV = "EDGE_TLS_KEY"
HTPASSWD_ENV = "EDGE_HTPASSWD"

# Writable scratch space on the read-only root: the runtime directory (under
# /tmp) and the temp directories nginx is compiled with (/var/cache/nginx in
# the official image, /var/lib/nginx in Debian's package).
TMPFS = ("/tmp", "/var/cache/nginx", "/var/lib/nginx")
# The master runs as root and creates its temp directories for the workers
# (CHOWN); the workers drop to the image's unprivileged user (SETGID, SETUID).
CAPABILITIES = ("CHOWN", "SETGID", "SETUID")

# The edge config lives in a volume, one directory per generation, and
# `current` names the live one. A rolling one-shot job (CONFIG_SCRIPT) writes a
# new generation from its environment, checks it with `nginx -t` and only then
# switches `current`; nginx's watcher sees the switch and reloads. A change of
# rate limit, allowlist, auth or certificate is therefore a new job and a
# graceful reload, never a new nginx container. The generation directory is
# traversable but not listable; the key is readable by root only (the master
# loads it), the htpasswd by the workers too (they read it on every request).
# nginx.conf names its files relative to itself, so `nginx -t` checks the new
# generation's certificate, and a reload reads the current one.
#
# The job's command holds no secret, only names of variables; the secrets
# leave its environment once written.
CONFIG_SCRIPT = f"""set -eu
umask 077
edge={EDGE_DIR}
gen=gen-$(hostname)
new="$edge/$gen"
rm -rf "$new"
mkdir -p "$new"
printenv {CONF_ENV} > "$new/{CONF_FILE}"
if [ -n "${{{CERTIFICATE_ENV}:-}}" ]; then
  printenv {CERTIFICATE_ENV} > "$new/{CERTIFICATE_FILE}"
  printenv {KEY_ENV} > "$new/{KEY_FILE}"
fi
if [ -n "${{{HTPASSWD_ENV}:-}}" ]; then
  printenv {HTPASSWD_ENV} > "$new/{HTPASSWD_FILE}"
  chmod 644 "$new/{HTPASSWD_FILE}"
fi
unset {KEY_ENV} {HTPASSWD_ENV}
chmod 711 "$new"
# nginx -t reads the replica files nginx's watcher writes; any address will do.
mkdir -p {RUNTIME_DIR}
echo 'server 127.0.0.1:{API_PORT};' > {RUNTIME_DIR}/{UPSTREAM_FILE}
echo 'server 127.0.0.1:{API_PORT};' > {RUNTIME_DIR}/{TASKS_UPSTREAM_FILE}
nginx -q -t -e stderr -c "$new/{CONF_FILE}"
previous=$(readlink "$edge/{CURRENT_LINK}" 2>/dev/null || true)
ln -sfn "$gen" "$edge/.{CURRENT_LINK}.new"
mv -T "$edge/.{CURRENT_LINK}.new" "$edge/{CURRENT_LINK}"
# The previous generation stays until the next switch: nginx serves it until it reloaded.
for old in "$edge"/gen-*; do
  case "${{old##*/}}" in "$gen"|"$previous") ;; *) rm -rf "$old" ;; esac
done
echo "prefect-ha: edge config $gen is current (previous: ${{previous:-none}})"
"""

# nginx's command. nginx resolves upstream names once, when it loads its
# config, so the replica set is not in nginx.conf: a watcher asks Docker's DNS
# every second for the IPv4 addresses of the replicas' shared alias (`getent
# hosts`: gethostbyname lists every address; `ahostsv4` would filter by
# AI_ADDRCONFIG), admits an address once its health check answers, writes the
# upstream files into tmpfs and reloads nginx gracefully (HUP) when the set or
# the current edge config changed. Scaling or replacing replicas therefore
# never replaces nginx. An empty answer keeps the last set (nginx's passive
# health and retries cover a replica that is going away). The watcher ends
# with nginx.
def start_script(replicas_name: str = SERVICE_ALIAS, edge_dir: str = EDGE_DIR) -> str:
    """nginx's command, finding the replicas under ``replicas_name``."""
    return f"""set -eu
umask 077
dir={RUNTIME_DIR}
edge={edge_dir}
mkdir -p "$dir"
chmod 711 "$dir"
members=""
healthy() {{ curl -fsS -o /dev/null -m 2 "http://$1:{API_PORT}{API_HEALTH_PATH}" 2>/dev/null; }}
refresh() {{
  found=""
  for addr in $(getent hosts {replicas_name} | awk '$1 ~ /^[0-9.]+$/ {{print $1}}' | sort -u); do
    if printf '%s\\n' "$members" | grep -qx "$addr" || healthy "$addr"; then
      found="$found $addr"
    fi
  done
  found=$(printf '%s\\n' $found | sort -t . -k1,1n -k2,2n -k3,3n -k4,4n | tr '\\n' ' ' | sed 's/ *$//')
  if [ -z "$found" ] || [ "$found" = "$members" ]; then return 1; fi
  members=$found
  api="" tasks="" first=1
  for addr in $members; do
    api="${{api}}server $addr:{API_PORT} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT}s;\\n"
    if [ "$first" = 1 ]; then
      tasks="${{tasks}}server $addr:{API_PORT} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT}s;\\n"
      first=0
    else
      tasks="${{tasks}}server $addr:{API_PORT} backup;\\n"
    fi
  done
  printf "$api" > "$dir/{UPSTREAM_FILE}.new" && mv "$dir/{UPSTREAM_FILE}.new" "$dir/{UPSTREAM_FILE}"
  printf "$tasks" > "$dir/{TASKS_UPSTREAM_FILE}.new" && mv "$dir/{TASKS_UPSTREAM_FILE}.new" "$dir/{TASKS_UPSTREAM_FILE}"
  echo "prefect-ha: upstream replicas: $members" >&2
}}
# nginx starts with at least one healthy replica (nginx depends on them).
until refresh; do sleep {WATCH_SECONDS}; done
loaded=$(readlink "$edge/{CURRENT_LINK}")
echo "prefect-ha: edge config $loaded" >&2
date +%s > "$dir/{WATCH_FILE}"
(
  while kill -0 $$ 2>/dev/null; do
    sleep {WATCH_SECONDS}
    reload=0
    if refresh; then reload=1; fi
    current=$(readlink "$edge/{CURRENT_LINK}" 2>/dev/null || echo "$loaded")
    if [ "$current" != "$loaded" ]; then
      loaded=$current reload=1
      echo "prefect-ha: edge config $loaded" >&2
    fi
    if [ "$reload" = 1 ] && [ -s "$dir/nginx.pid" ]; then kill -HUP "$(cat "$dir/nginx.pid")"; fi
    date +%s > "$dir/{WATCH_FILE}"
  done
) &
exec nginx -e stderr -c "$edge/{CURRENT_LINK}/{CONF_FILE}" -g 'daemon off;'
"""


START_SCRIPT = start_script()
# On Swarm the edge config arrives as Swarm configs and secrets in one directory
# (a new config is a new service spec, which rolls nginx start-first); `current`
# is a link to it in tmpfs, so the same START_SCRIPT serves both platforms.
SWARM_FILES_DIR = "/etc/prefect-ha/edge"
SWARM_EDGE_DIR = f"{RUNTIME_DIR}-edge"
SWARM_PRELUDE = f"mkdir -p {SWARM_EDGE_DIR} && ln -sfn {SWARM_FILES_DIR} {SWARM_EDGE_DIR}/{CURRENT_LINK}\n"
# Healthy: nginx answers its own health location and the watcher is alive.
HEALTH_TEST = [
    "CMD-SHELL",
    f"curl -fsS -o /dev/null http://127.0.0.1:{HTTP_PORT}{HEALTH_PATH} && "
    f"[ $(( $(date +%s) - $(cat {RUNTIME_DIR}/{WATCH_FILE}) )) -lt {WATCH_STALE_SECONDS} ]",
]

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)
# What may stand in an nginx argument unquoted (and inside double quotes):
# no whitespace, quotes, ';', braces, '$' (a variable) or '\'.
_NGINX_LITERAL = re.compile(r"^[A-Za-z0-9._~:/\[\]@!&()*+,=%-]+$")


def public_listen_port(tls: bool) -> int:
    """The container port proxy.port publishes: HTTPS with TLS, else plain HTTP."""
    return HTTPS_PORT if tls else HTTP_PORT


def _nginx_literal(value: str, what: str) -> str:
    if not _NGINX_LITERAL.match(value):
        raise ValueError(f"{what} {value!r} has characters nginx.conf cannot carry literally")
    return value


def render_nginx_conf(
    proxy: ProxyConfig,
    stack: str,
    *,
    tls: bool,
    basic_auth: bool,
    runtime_dir: str = RUNTIME_DIR,
) -> str:
    """nginx.conf for the stack; it names files under ``runtime_dir`` but holds no secret."""
    public_url = _nginx_literal(proxy.public_url, "proxy.publicUrl")
    return _TEMPLATES.get_template("nginx.conf.j2").render(
        stack=stack,
        upstream_file=f"{runtime_dir}/{UPSTREAM_FILE}",
        tasks_upstream_file=f"{runtime_dir}/{TASKS_UPSTREAM_FILE}",
        api_path=API_PATH,
        http_port=HTTP_PORT,
        https_port=HTTPS_PORT,
        runtime_dir=runtime_dir,
        client_max_body_size=proxy.client_max_body_size,
        health_path=HEALTH_PATH,
        public_url=public_url,
        upstream_host=_nginx_literal(urlsplit(public_url).netloc, "proxy.publicUrl's host"),
        tls=tls,
        # Relative: nginx reads them next to nginx.conf, in the same generation.
        certificate_path=CERTIFICATE_FILE,
        key_path=KEY_FILE,
        auth_basic=basic_auth,
        htpasswd_path=HTPASSWD_FILE,
        allow_cidrs=list(proxy.allow_cidrs),
        rate_limit=proxy.rate_limit,
        rate_limit_burst=proxy.rate_limit_burst,
        runtime_files=[CONF_FILE]
        + ([CERTIFICATE_FILE, KEY_FILE] if tls else [])
        + ([HTPASSWD_FILE] if basic_auth else []),
    )


def nginx_env(
    nginx_conf: str,
    *,
    certificate: str | None = None,
    private_key: str | None = None,
    htpasswd: str | None = None,
    timezone: str = "UTC",
) -> dict[str, str]:
    """The edge-config job's environment: what CONFIG_SCRIPT writes into a generation."""
    if (certificate is None) != (private_key is None):
        raise ValueError("a certificate and its key come together")
    env = {"TZ": timezone, CONF_ENV: nginx_conf}
    if certificate is not None:
        env[CERTIFICATE_ENV] = certificate
        env[KEY_ENV] = private_key  # type: ignore[assignment]
    if htpasswd is not None:
        env[HTPASSWD_ENV] = htpasswd
    return env


def _env_list(env: Mapping[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in env.items()]


class EdgeConfigFailed(pulumi.RunError):
    """The edge-config job did not exit 0: nginx keeps the config it has."""


def check_config_job(container_name: str, exit_code: int | None) -> int:
    """0, or raise: a config nginx refuses is never switched to."""
    if exit_code is None or int(exit_code) != 0:
        code = "unknown" if exit_code is None else int(exit_code)
        raise EdgeConfigFailed(
            f"edge config job {container_name} exited with code {code}; nginx keeps the config it has. "
            f"see `docker logs {container_name}`"
        )
    return 0


class Proxy(StackComponent):
    container: docker.Container | docker.Service
    """The nginx container, or on Swarm the nginx service."""
    config_job: docker.Container
    nginx_conf: str
    """The rendered nginx.conf; no secret in it, so the stack exports it for review."""

    def __init__(
        self,
        name: str,
        *,
        place: dc.Placement,
        proxy: ProxyConfig,
        upstreams: Sequence[docker.Container],
        tls: EdgeTls | None,
        http_redirect_port: int,
        auth_mode: str,
        htpasswd: pulumi.Output[str] | None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """``tls`` is the certificate to serve (None: plain HTTP), ``htpasswd`` the
        basic-auth file when nginx checks credentials; ``auth_mode`` is declared
        in a label for the policy pack."""
        super().__init__(name, opts)
        # The auth label is what the policy pack trusts: it must say what is wired.
        if (auth_mode == AUTH_NGINX) != (htpasswd is not None):
            raise ValueError(f"auth mode {auth_mode!r} and the htpasswd handed to Proxy disagree")
        self.nginx_conf = render_nginx_conf(
            proxy, place.stack, tls=tls is not None, basic_auth=htpasswd is not None
        )

        conf, timezone = self.nginx_conf, place.timezone
        if tls is None and htpasswd is None:
            envs: pulumi.Input[list[str]] = _env_list(nginx_env(conf, timezone=timezone))
        else:
            # The key and the htpasswd are secrets, which makes the whole list one.
            envs = pulumi.Output.all(
                tls.certificate if tls else None, tls.private_key if tls else None, htpasswd
            ).apply(lambda v: _env_list(nginx_env(
                conf, certificate=v[0], private_key=v[1], htpasswd=v[2], timezone=timezone
            )))

        ports = dc.published(public_listen_port(tls is not None), proxy.port)
        if tls is not None:
            ports += dc.published(HTTP_PORT, http_redirect_port)
        labels = {TLS_LABEL: tls.mode if tls else TLS_OFF, AUTH_LABEL: auth_mode}

        self.config_volume = place.volume(f"{name}-config", CONFIG_COMPONENT, self)
        # Rolled like the migration: a new config is a new job, nginx stays.
        self.config_job = dc.rolling_container(
            f"{name}-config-job",
            place=place,
            role=CONFIG_COMPONENT,
            parent=self,
            image=proxy.image,
            command=["sh", "-c", CONFIG_SCRIPT],
            envs=envs,
            volumes=[docker.ContainerVolumeArgs(volume_name=self.config_volume.name, container_path=EDGE_DIR)],
            **dc.one_shot(),
            **dc.hardening(read_only=True, tmpfs=TMPFS, cap_add=CAPABILITIES),
            **dc.limits(proxy),
            # Who checks credentials is part of the config (auth_basic or not), so a
            # change of auth mode is a new job and a reload, not a new nginx.
            labels=dc.labels(place.stack, CONFIG_COMPONENT, **{AUTH_LABEL: auth_mode}),
            **place.log_args(),
        )
        self.config_written = pulumi.Output.all(self.config_job.name, self.config_job.exit_code).apply(
            lambda v: check_config_job(v[0], v[1])
        )
        if place.swarm:
            # On a swarm the job only checks the config (`nginx -t`, on the data node)
            # before any nginx task gets it: Swarm has no convergence check for a
            # global service, so a config nginx refuses would otherwise surface only
            # as failed tasks after `pulumi up` succeeded.
            self._swarm_service(name, place, proxy, [*upstreams, dc.passed(self.config_job, self.config_written)],
                                tls, htpasswd, ports, labels)
            return

        self.container, self.fingerprint = dc.fixed_container(
            f"{name}-container",
            parent=self,
            name=place.name("nginx"),
            image=proxy.image,
            # A command other than `nginx` also skips the official image's
            # entrypoint hooks, which would write into /etc/nginx.
            command=["sh", "-c", START_SCRIPT],
            envs=[f"TZ={place.timezone}"],
            volumes=[docker.ContainerVolumeArgs(
                volume_name=self.config_volume.name, container_path=EDGE_DIR, read_only=True)],
            networks_advanced=dc.network_attachment(place.edge, "nginx"),
            ports=ports,
            healthcheck=dc.healthcheck(HEALTH_TEST, interval=5, timeout=3, retries=3, start_period=5),
            restart="unless-stopped",
            **dc.limits(proxy),
            wait=True,
            wait_timeout=place.wait_timeout,
            labels=dc.labels(place.stack, COMPONENT, **{TLS_LABEL: tls.mode if tls else TLS_OFF}),
            **dc.hardening(read_only=True, tmpfs=TMPFS, cap_add=CAPABILITIES),
            **place.log_args(),
            # Started after the first replicas are healthy and the first config is
            # written; later replica sets and configs reach it through the watcher
            # (START_SCRIPT), so nothing here names them.
            depends_on=[*upstreams, dc.passed(self.config_job, self.config_written)],
        )
        self.register_outputs({"container_name": self.container.name, "config_job": self.config_job.name})

    def _swarm_service(self, name, place, proxy, upstreams, tls, htpasswd, ports, labels) -> None:
        """nginx as a global Swarm service: one task on every node, each publishing
        proxy.port on its node (host mode; a load balancer or DNS in front spreads
        clients over the nodes). Its config files are Swarm configs and secrets named
        by their content, so a new config rolls the tasks node by node (stop-first:
        a node's port holds one task), after the edge-config job passed `nginx -t` on it."""
        files = [swarm.Mounted(swarm.content_config(f"{name}-conf", place=place, role="nginx-conf",
                                                    content=self.nginx_conf, parent=self),
                               f"{SWARM_FILES_DIR}/{CONF_FILE}", 0o444)]
        if tls is not None:
            files.append(swarm.Mounted(swarm.content_secret(f"{name}-certificate", place=place, role="nginx-cert",
                                                            content=tls.certificate, parent=self),
                                       f"{SWARM_FILES_DIR}/{CERTIFICATE_FILE}", 0o444))
            # Read by the master (root) only.
            files.append(swarm.Mounted(swarm.content_secret(f"{name}-key", place=place, role="nginx-key",
                                                            content=tls.private_key, parent=self),
                                       f"{SWARM_FILES_DIR}/{KEY_FILE}", 0o400))
        if htpasswd is not None:
            # The workers read it on every request.
            files.append(swarm.Mounted(swarm.content_secret(f"{name}-htpasswd", place=place, role="nginx-htpasswd",
                                                            content=htpasswd, parent=self),
                                       f"{SWARM_FILES_DIR}/{HTPASSWD_FILE}", 0o444))
        self.container = swarm.service(
            f"{name}-service", place=place, role="nginx", parent=self, depends_on=list(upstreams),
            labels=swarm.labels(place.stack, COMPONENT, **labels),
            spec=swarm.ServiceSpec(
                image=proxy.image,
                command=["sh", "-c", SWARM_PRELUDE + start_script(tasks_dns_name(place), SWARM_EDGE_DIR)],
                env=[f"TZ={place.timezone}"], replicas=0,
                healthcheck=swarm.healthcheck(HEALTH_TEST, interval=5, timeout=3, retries=3, start_period=5),
                networks=[(place.edge, ["nginx"])], files=files, tmpfs=TMPFS, cap_add=CAPABILITIES,
                ports=[(p.internal, p.external) for p in ports], grace_seconds=10,
                memory_mb=dc.limits(proxy)["memory"], cpus=proxy.cpu_limit,
            ),
        )
        # Updated by Swarm node by node, never replaced: no stack-wide downtime to announce
        # (each node's nginx restarts in turn; a load balancer in front sends clients elsewhere).
        self.fingerprint = pulumi.Output.from_input({})
        self.register_outputs({"service_name": self.container.name, "config_job": self.config_job.name})
