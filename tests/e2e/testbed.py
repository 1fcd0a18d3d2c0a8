"""The real-Docker test bed: shared pieces of the end-to-end tests.

Deployments run the real program under DockerMocks; client scripts run in
the Prefect stand-in image on the host network, against the stack's outputs.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from dataclasses import dataclass

import docker
import pytest
import requests

from docker_mocks import DockerMocks
from harness import REPO, Run, run_program

PREFECT_IMAGE = "prefect-ha-test/prefect:3.8.8"
IMAGES = {
    "prefect.image": PREFECT_IMAGE,
    "postgres.image": "prefect-ha-test/postgres:15",
    "redis.image": "prefect-ha-test/redis:7",
    "proxy.image": "prefect-ha-test/nginx:1.22",
}
SCRIPTS = REPO / "tests" / "e2e" / "scripts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(script: str) -> None:
    result = subprocess.run(["bash", str(REPO / "testbed" / script)], capture_output=True, text=True)
    if result.returncode:
        pytest.fail(f"testbed/{script} failed ({result.returncode}):\n{result.stderr[-4000:]}")


@dataclass
class Deployment:
    run: Run
    mocks: DockerMocks
    client: docker.DockerClient
    port: int
    prefix: str

    @property
    def outputs(self):
        return self.run.outputs

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def container(self, suffix: str):
        return self.client.containers.get(f"{self.prefix}-{suffix}")

    def prefect(self, script: str, *args: str, timeout: int = 300, env: dict | None = None) -> str:
        """Run a client script in the Prefect image on the host network, against
        the stack output api_url (through nginx). Returns its stdout."""
        container = self.client.containers.run(
            PREFECT_IMAGE,
            ["python", f"/e2e/{script}", *args],
            network_mode="host",
            volumes={str(SCRIPTS): {"bind": "/e2e", "mode": "ro"}},
            environment={"PREFECT_API_URL": self.outputs["api_url"], **(env or {})},
            labels={"prefect-ha-test.run": self.mocks.run_id},
            detach=True,
        )
        try:
            status = container.wait(timeout=timeout)
            logs = container.logs().decode(errors="replace")
            assert status["StatusCode"] == 0, f"{script} exited {status['StatusCode']}:\n{logs[-4000:]}"
            return container.logs(stderr=False).decode(errors="replace")
        finally:
            container.remove(force=True)


def deploy(client, name: str, overrides: dict | None = None, tamper=None) -> tuple[Run, DockerMocks, int, str]:
    run_id = f"{name}-{uuid.uuid4().hex[:8]}"
    port = free_port()
    prefix = f"prefect-ha-{name}"
    mocks = DockerMocks(run_id, client, tamper=tamper)
    config = {
        **IMAGES,
        "namePrefix": prefix,
        "proxy.port": port,
        "proxy.publicUrl": f"http://127.0.0.1:{port}",
        "waitTimeout": 180,
        **(overrides or {}),
    }
    run = run_program("prod", config, mocks=mocks)
    return run, mocks, port, prefix


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    """Poll until predicate() is truthy; returns its value or fails naming what it waited for."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (requests.RequestException, docker.errors.APIError) as err:
            last = err
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
