"""Prefect Docker workers: flow runs in containers of their own, next to the server.

A one-shot container creates or updates the work pool (type docker, with the
stack's job defaults) once the API is healthy; the workers start after it
exited 0, so several replicas never race to create the pool.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Sequence

import pulumi
import pulumi_docker as docker

from . import docker_common as dc, swarm
from .config import WorkerConfig
from .prefect_settings import SCRATCH_DIR, WORKER_HEALTH_PORT, with_client_auth, worker_env
from .component import StackComponent

COMPONENT = "worker"
POOL_SETUP_COMPONENT = "work-pool"
ENSURE_POOL_SOURCE = Path(__file__).parent / "scripts" / "ensure_work_pool.py"
ENSURE_POOL_PATH = "/opt/prefect-ha/ensure_work_pool.py"
POOL_SPEC_ENV = "WORK_POOL_SPEC"
POOL_TYPE = "docker"
GRACE_SECONDS = 30
HEALTH_TEST = [
    "CMD",
    "python",
    "-c",
    "import sys, urllib.request; "
    f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{WORKER_HEALTH_PORT}/health', timeout=4).status == 200 else 1)",
]


class WorkPoolSetupFailed(pulumi.RunError):
    """Stops `pulumi up` before any worker starts, with the exit code and no traceback."""


def check_pool_setup(container_name: str, exit_code: int | None) -> int:
    if exit_code is None or int(exit_code) != 0:
        code = "unknown" if exit_code is None else int(exit_code)
        raise WorkPoolSetupFailed(
            f"work-pool container {container_name} exited with code {code}; no worker was started. "
            f"Read its output with: docker logs {container_name}"
        )
    return int(exit_code)


def job_defaults(worker: WorkerConfig, edge_network_name: str) -> dict:
    """Defaults of the pool's job variables: flow-run containers join a network
    on which the API answers, pull as configured, and go away when done."""
    return {
        "networks": [worker.job_network or edge_network_name],
        "image_pull_policy": worker.job_image_pull_policy,
        "auto_remove": worker.job_auto_remove,
    }


def worker_command(pool: str, name: str, limit: int) -> list[str]:
    command = ["prefect", "worker", "start", "--pool", pool, "--type", POOL_TYPE, "--name", name, "--with-healthcheck"]
    if limit:
        command += ["--limit", str(limit)]
    return command


# On Swarm each task names itself by its slot (Swarm expands templates in env).
WORKER_NAME_ENV = "STACK_WORKER_NAME"


class DockerWorkers(StackComponent):
    pool_setup: docker.Container
    containers: list[docker.Container | docker.Service]
    api_url: str

    def __init__(
        self,
        name: str,
        *,
        place: dc.Placement,
        worker: WorkerConfig,
        image: str,
        log_level: str,
        api_url: str,
        auth_string: pulumi.Output[str] | None,
        proxy_auth: bool,
        depends_on: Sequence[pulumi.Input[pulumi.Resource]] = (),
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__(name, opts)
        self.api_url = api_url
        env = with_client_auth(
            worker_env(worker, timezone=place.timezone, log_level=log_level, api_url=api_url),
            auth_string, proxy_auth=proxy_auth,
        )
        socket = worker.socket_path
        socket_mount = [docker.ContainerVolumeArgs(host_path=socket, container_path=socket, read_only=True)] if socket else []
        spec = place.edge.name.apply(
            lambda edge: json.dumps({
                "name": worker.pool,
                "concurrency_limit": worker.pool_concurrency_limit or None,
                "job_defaults": job_defaults(worker, edge),
            }, sort_keys=True)
        )
        self.pool_setup = dc.rolling_container(
            f"{name}-pool",
            place=place,
            role=POOL_SETUP_COMPONENT,
            parent=self,
            depends_on=depends_on,
            image=image,
            command=["python", ENSURE_POOL_PATH],
            envs=pulumi.Output.all(spec, env).apply(lambda values: [f"{POOL_SPEC_ENV}={values[0]}", *values[1]]),
            uploads=[docker.ContainerUploadArgs(file=ENSURE_POOL_PATH, content=ENSURE_POOL_SOURCE.read_text())],
            networks_advanced=dc.network_attachment(place.edge),
            **dc.one_shot(),
            # Not read-only: Docker refuses uploads into a read-only container.
            **dc.hardening(read_only=False),
            **dc.limits(worker),
            labels=dc.labels(place.stack, POOL_SETUP_COMPONENT),
            **place.log_args(),
        )
        pool_ready = dc.passed(self.pool_setup, pulumi.Output.all(self.pool_setup.name, self.pool_setup.exit_code).apply(
            lambda v: check_pool_setup(v[0], v[1])
        ))

        self.containers = []
        if place.swarm:
            # Each task runs flow runs on its own node's engine (the socket bound
            # from the node); they join the attachable edge overlay to reach the API.
            name_slot = "__WORKER_NAME__"
            command = shlex.join(worker_command(worker.pool, name_slot, worker.limit)).replace(
                name_slot, f'"${WORKER_NAME_ENV}"')
            plain = worker_env(worker, timezone=place.timezone, log_level=log_level, api_url=api_url)
            auth = with_client_auth([], auth_string, proxy_auth=proxy_auth)
            self.containers.append(swarm.service(
                f"{name}-service", place=place, role=COMPONENT, parent=self, depends_on=[*depends_on, pool_ready],
                labels=swarm.labels(place.stack, COMPONENT, pool=worker.pool),
                spec=swarm.ServiceSpec(
                    image=image,
                    command=["sh", "-c", f"exec {command}"],
                    env=[*plain, f"{WORKER_NAME_ENV}={place.name('worker')}-{{{{.Task.Slot}}}}",
                         *([auth] if auth_string is not None else [])],
                    replicas=worker.replicas,
                    healthcheck=swarm.healthcheck(HEALTH_TEST, interval=10, timeout=5, retries=6,
                                                  start_period=180 if worker.extra_pip_packages else 30),
                    networks=[(place.edge, [])], tmpfs=[SCRATCH_DIR], read_only=not worker.extra_pip_packages,
                    binds=[(socket, socket)] if socket else [], grace_seconds=GRACE_SECONDS,
                    memory_mb=dc.limits(worker)["memory"], cpus=worker.cpu_limit,
                ),
            ))
            self.register_outputs({"pool": worker.pool, "service_name": self.containers[0].name})
            return
        for index in range(1, worker.replicas + 1):
            # The worker's name in Prefect stays when its container is rolled.
            worker_name = place.name(f"worker-{index}")
            self.containers.append(
                dc.rolling_container(
                    f"{name}-{index}",
                    place=place,
                    role=f"worker-{index}",
                    parent=self,
                    depends_on=[*depends_on, pool_ready],
                    image=image,
                    command=worker_command(worker.pool, worker_name, worker.limit),
                    envs=env,
                    # Whoever can use the Docker socket controls the host (see README):
                    # read-only stops writes to the socket file, not API calls.
                    volumes=socket_mount,
                    networks_advanced=dc.network_attachment(place.edge),
                    healthcheck=dc.healthcheck(
                        HEALTH_TEST, interval=10, timeout=5, retries=6,
                        # installing EXTRA_PIP_PACKAGES at start takes a while
                        start_period=180 if worker.extra_pip_packages else 30,
                    ),
                    restart="unless-stopped",
                    **dc.limits(worker),
                    wait=True,
                    wait_timeout=place.wait_timeout,
                    # pip installs EXTRA_PIP_PACKAGES into the image's site-packages at start.
                    **dc.hardening(read_only=not worker.extra_pip_packages, tmpfs=[SCRATCH_DIR]),
                    labels=dc.labels(place.stack, COMPONENT, replica=str(index), pool=worker.pool),
                    # SIGTERM first: the worker stops polling; flow runs live in their own containers.
                    destroy_grace_seconds=GRACE_SECONDS,
                    **place.log_args(),
                )
            )
        self.register_outputs({"pool": worker.pool, "container_names": [c.name for c in self.containers]})
