"""Fixtures of the real-Docker test bed: engine, stand-in images, and a deployed stack.

Set-up provides what it needs (tests/e2e never skip): testbed/dockerd.sh starts
a Docker engine when none answers, testbed/build_images.sh builds the local
stand-ins for the official images (reused when their inputs are unchanged).
"""

import time

import docker
import pytest

from docker_mocks import cleanup_by_label
from testbed import IMAGES, Deployment, deploy, sh


@pytest.fixture(scope="session")
def docker_client():
    sh("dockerd.sh")
    sh("build_images.sh")
    client = docker.from_env(timeout=300)
    for image in IMAGES.values():
        client.images.get(image)  # raises with the name if the build did not make it
    return client


@pytest.fixture(scope="module")
def deployment(docker_client):
    """The prod stack file (3 API replicas) with stand-in images and a plain edge, deployed for real."""
    started = time.monotonic()
    run, mocks, port, prefix = deploy(docker_client, "e2e")
    if run.error is not None:
        logs = "\n".join(f"--- {n}\n{l[-2000:]}" for n, l in mocks.attach_logs.items())
        mocks.destroy(run)
        cleanup_by_label(docker_client, mocks.run_id)
        pytest.fail(f"deployment failed: {run.error!r}\n{logs}")
    print(f"\n[e2e] deployed in {time.monotonic() - started:.1f} s")
    yield Deployment(run, mocks, docker_client, port, prefix)
    mocks.destroy(run)
    cleanup_by_label(docker_client, mocks.run_id)
