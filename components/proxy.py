"""nginx in front of the API replicas: one published port, least connections, failover."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jinja2
import pulumi
import pulumi_docker as docker

from . import docker_common as dc
from .config import StackConfig
from .prefect_settings import API_PORT

LISTEN_PORT = 8080
CONFIG_PATH = "/etc/nginx/nginx.conf"
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def render_nginx_conf(config: StackConfig, stack: str, upstream_hosts: Sequence[str]) -> str:
    if not upstream_hosts:
        raise ValueError("nginx needs at least one upstream host")
    return _TEMPLATES.get_template("nginx.conf.j2").render(
        stack=stack,
        upstream_hosts=list(upstream_hosts),
        api_port=API_PORT,
        listen_port=LISTEN_PORT,
        client_max_body_size=config.proxy.client_max_body_size,
        max_fails=3,
        fail_timeout=10,
        # Every replica gets a chance before the client sees an error.
        next_upstream_tries=max(2, len(upstream_hosts)),
    )


class Proxy(pulumi.ComponentResource):
    container: docker.Container
    nginx_conf: str

    def __init__(
        self,
        name: str,
        *,
        place: dc.Placement,
        upstream_hosts: Sequence[str],
        upstreams: Sequence[docker.Container],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("prefect-ha:index:Proxy", name, None, opts)
        config = place.config
        self.nginx_conf = render_nginx_conf(config, place.stack, upstream_hosts)
        self.container = docker.Container(
            f"{name}-container",
            name=place.name("nginx"),
            image=config.proxy.image,
            command=["nginx", "-g", "daemon off;"],
            uploads=[docker.ContainerUploadArgs(file=CONFIG_PATH, content=self.nginx_conf)],
            envs=[f"TZ={config.timezone}"],
            networks_advanced=dc.network_attachment(place.edge, "nginx"),
            ports=dc.published(LISTEN_PORT, config.proxy.port),
            healthcheck=dc.healthcheck(
                ["CMD", "curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{LISTEN_PORT}/nginx-health"],
                interval=5, timeout=3, retries=3, start_period=2,
            ),
            restart="unless-stopped",
            wait=True,
            wait_timeout=config.wait_timeout,
            # nginx resolves upstream names once, at start: a replaced replica has a
            # new address, so its new ID here replaces nginx after it.
            labels=dc.labels(
                place.stack, "proxy",
                upstreams=pulumi.Output.all(*[u.id for u in upstreams]).apply(",".join),
            ),
            **dc.log_args(config),
            opts=dc.container_opts(self, depends_on=upstreams),
        )
        self.register_outputs({"container_name": self.container.name})
