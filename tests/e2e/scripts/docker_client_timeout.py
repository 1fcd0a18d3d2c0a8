"""The Docker client a prefect-docker worker would use, as it builds it; print one JSON line.

Runs in a worker container (the Docker socket mounted, DOCKER_CLIENT_TIMEOUT set
or not). Constructs DockerWorker the way `prefect worker start --type docker`
does before it starts (no API is contacted until then) and calls its
_get_client(), then reports the client's own timeout and the engine's version,
which it can read only through the mounted socket.
"""

import json
import os

import docker
import docker.constants
import prefect_docker
from prefect_docker.worker import DockerWorker

worker = DockerWorker(work_pool_name="docker-client-timeout-check")
client = worker._get_client()
try:
    engine = client.version()
    print(json.dumps({
        "timeout": client.api.timeout,
        "engine_version": engine["Version"],
        "base_url": client.api.base_url,
        "docker_default_timeout": docker.constants.DEFAULT_TIMEOUT_SECONDS,
        "env": os.environ.get("DOCKER_CLIENT_TIMEOUT"),
        "prefect_docker": prefect_docker.__version__,
        "docker_sdk": docker.__version__,
    }))
finally:
    client.close()
