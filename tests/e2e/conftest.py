"""Fixtures of the real-Docker test bed: engine, stand-in images, and a deployed stack.

Set-up provides what it needs (tests/e2e never skip): testbed/dockerd.sh starts
a Docker engine when none answers, testbed/build_images.sh builds the local
stand-ins for the official images (reused when their inputs are unchanged).
"""

import time

import docker
import pytest

from images import TEST_IMAGES
from testbed import IMAGES, deploy_or_fail, sh, tear_down


@pytest.fixture(scope="session")
def docker_client():
    sh("dockerd.sh")
    sh("build_images.sh")
    client = docker.from_env(timeout=300)
    for image in (*IMAGES.values(), *TEST_IMAGES):
        client.images.get(image)  # raises with the name if the build did not make it
    return client


@pytest.fixture(scope="module")
def deployment(docker_client):
    """The prod stack file (3 API replicas) with stand-in images and a plain edge, deployed for real."""
    started = time.monotonic()
    stack = deploy_or_fail(docker_client, "e2e")
    print(f"\n[e2e] deployed in {time.monotonic() - started:.1f} s")
    yield stack
    tear_down(stack)
