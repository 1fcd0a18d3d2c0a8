"""The real-Docker test bed: shared pieces of the end-to-end tests.

Deployments are `pulumi up` of a shipped stack file (prod unless told otherwise)
by the real Pulumi engine with the provider-plugin doubles (tests/engine.py); each
is a `Deployment`, whatever made it (prepare, deploy, deploy_or_fail). Everything a
test run makes carries its run label (testbed/run_label.py); the program's own
containers are found by their component label within it. Client scripts run in
the Prefect stand-in image on the host network, against the stack's outputs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import shlex
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import pulumi_random
import requests
from pulumi import automation as auto
from pulumi.type_token import get_type_token

from components.docker_common import COMPONENT_LABEL, LABEL_PREFIX
from engine import EngineStack, plain_state, shared_engine
from harness import REPO

sys.path.append(str(REPO / "testbed"))  # shared with the provider doubles' plugin processes
from run_label import RUN_ENV, RUN_LABEL, run_labels, run_selector  # noqa: E402

PREFECT_IMAGE = "prefect-ha-test/prefect:3.8.8"
IMAGES = {
    "prefect.image": PREFECT_IMAGE,
    "postgres.image": "prefect-ha-test/postgres:15",
    "redis.image": "prefect-ha-test/redis:7",
    "proxy.image": "prefect-ha-test/nginx:1.22",
}
SCRIPTS = REPO / "tests" / "e2e" / "scripts"
# The prod stack file turns on TLS, auth, CSRF and rate limiting; the tests that
# measure routing and failover through nginx turn them off (test_secure_edge.py
# covers them).
PLAIN_EDGE = {
    "tls.enabled": False,
    "tls.httpPort": 0,
    "auth.mode": "none",
    "api.csrfProtection": False,
    "proxy.rateLimit": 0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(script: str) -> None:
    result = subprocess.run(["bash", str(REPO / "testbed" / script)], capture_output=True, text=True)
    if result.returncode:
        pytest.fail(f"testbed/{script} failed ({result.returncode}):\n{result.stderr[-4000:]}")


TEST_LABEL = RUN_LABEL
# The type the program's SDK registers its generated passwords as (and the random double serves).
PASSWORD = get_type_token(pulumi_random.RandomPassword)


def run_containers(client: docker.DockerClient, run_id: str, component: str | None = None,
                   **labels: str) -> list:
    """The containers (running or not) of the run `run_id`; with `component`, only the program's
    containers of that component (its prefect-ha.component label: api, services, proxy,
    postgres, redis, migration, work-pool, worker), and with `replica=N` that replica."""
    wanted = [f"{RUN_LABEL}={run_id}"]
    if component is not None:
        wanted.append(f"{COMPONENT_LABEL}={component}")
    wanted += [f"{LABEL_PREFIX}.{key}={value}" for key, value in labels.items()]
    return sorted(client.containers.list(all=True, filters={"label": wanted}), key=lambda c: c.name)


@dataclass
class Deployment:
    """A stack of the program for one test run: what `prepare` set up and `deploy` brought up."""

    stack: EngineStack
    run_id: str
    client: docker.DockerClient
    port: int
    prefix: str
    outputs: dict[str, Any] = field(default_factory=dict)
    up_result: auto.UpResult | None = None  # of the `pulumi up` deploy() ran, when it succeeded
    host: str = "127.0.0.1"  # where nginx's port is published (a swarm node's address on a swarm)
    # The engine client scripts run on (they mount tests/e2e/scripts from this machine): `client`'s
    # unless that is another machine's, as a swarm node's is.
    scripts_client: docker.DockerClient | None = None

    def passwords(self) -> list[str]:
        """The generated passwords, from the stack's state."""
        return [plain_state(r["outputs"])["result"] for r in self.stack.state().get("resources", [])
                if r["type"] == PASSWORD]

    def destroy(self) -> list[str]:
        """`pulumi destroy`; returns the names of this run's volumes still there."""
        self.stack.destroy()
        return sorted(v.name for v in self.client.volumes.list(filters=run_selector(self.run_id)))

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def containers(self, component: str | None = None, **labels: str) -> list:
        """This run's containers, or the program's of one component (see run_containers)."""
        return run_containers(self.client, self.run_id, component, **labels)

    def container(self, component: str, replica: int | None = None):
        """The one container of `component` (of its replica `replica`), found by its labels."""
        found = self.containers(component, **({} if replica is None else {"replica": str(replica)}))
        assert len(found) == 1, f"{component} replica {replica}: {[c.name for c in found]}"
        return found[0]

    def prefect(self, script: str, *args: str, timeout: int = 300, env: dict | None = None,
                image: str = PREFECT_IMAGE, command: list[str] | None = None, workdir: str | None = None,
                volumes: dict | None = None) -> str:
        """Run a client script (or ``command``) in the Prefect image on the host
        network, as a user would: with the stack output client_env (API URL
        through nginx, credentials when auth is on). Returns its stdout."""
        container = (self.scripts_client or self.client).containers.run(
            image,
            command or ["python", f"/e2e/{script}", *args],
            network_mode="host",
            volumes={str(SCRIPTS): {"bind": "/e2e", "mode": "ro"}, **(volumes or {})},
            environment={**self.outputs["client_env"], **(env or {})},
            labels=run_labels(self.run_id),
            working_dir=workdir,
            detach=True,
        )
        try:
            status = container.wait(timeout=timeout)
            logs = container.logs().decode(errors="replace")
            what = script or " ".join(command or [])
            assert status["StatusCode"] == 0, f"{what} exited {status['StatusCode']}:\n{logs[-4000:]}"
            return container.logs(stderr=False).decode(errors="replace")
        finally:
            container.remove(force=True)


def deploy_flow(deployment: "Deployment", name: str) -> str:
    """`prefect deploy` of the test flow as the stack output ``deploy_command`` says, run where
    the flow code is (the flows image); returns ``<flow>/<name>`` for run_deployment."""
    from images import FLOW_ENTRYPOINT, FLOWS_IMAGE

    path, flow = FLOW_ENTRYPOINT.rsplit(":", 1)
    workdir, filename = path.rsplit("/", 1)  # /opt/prefect: where `prefect deploy` says runs start
    command = (
        deployment.outputs["deploy_command"]
        .replace("<path/to/flows.py>:<flow>", f"{filename}:{flow}")
        .replace("<deployment>", name)
        .replace("<image holding your flow code>", FLOWS_IMAGE)
    )
    assert "<" not in command, command
    deployment.prefect("", image=FLOWS_IMAGE, command=shlex.split(command), workdir=workdir)
    return f"{flow}/{name}"


def changes(summary: dict[str, int] | None) -> dict[str, int]:
    """What an up or preview did to resources, without the unchanged ones (and reads)."""
    return {op: n for op, n in (summary or {}).items() if op not in ("same", "read")}


def new_run_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def stand_in(name: str, *, secure: bool) -> dict[str, Any]:
    """Config paths for a test deployment: stand-in images, own names, free ports.
    ``secure`` keeps the prod edge as shipped (TLS with a redirect port, auth,
    CSRF, rate limit); otherwise a plain HTTP edge."""
    port = free_port()
    edge = {"proxy.publicUrl": f"https://127.0.0.1:{port}", "tls.httpPort": free_port()} if secure else {
        "proxy.publicUrl": f"http://127.0.0.1:{port}", **PLAIN_EDGE}
    return {**IMAGES, "namePrefix": f"prefect-ha-{name}", "proxy.port": port, "waitTimeout": 180, **edge}


def prepare(client, name: str, overrides: dict | None = None, *, stack: str = "prod", secure: bool = False,
            run_id: str | None = None, docker_host: str | None = None, host: str = "127.0.0.1",
            **engine_options) -> Deployment:
    """A new stack ``stack`` (a shipped stack file) with stand-in images on free ports, not
    brought up yet. ``secure`` keeps the prod edge as shipped (TLS with a redirect port, auth,
    CSRF, rate limit); ``docker_host`` is the engine the provider talks to (DOCKER_HOST, as a
    user sets it; ``client`` must talk to the same one) and ``host`` where nginx is reached;
    ``engine_options`` go to Engine.stack (secrets, literal, stack_file)."""
    run_id = run_id or new_run_id(name)
    config = {**stand_in(name, secure=secure), **(overrides or {})}
    work_dir = Path(tempfile.mkdtemp(prefix=f"prefect-ha-{name}-"))
    env = {RUN_ENV: run_id, **({"DOCKER_HOST": docker_host} if docker_host else {})}
    made = shared_engine().stack(stack, work_dir, overrides=config, env=env, **engine_options)
    return Deployment(made, run_id, client, config["proxy.port"], config["namePrefix"], host=host)


def deploy(client, name: str, overrides: dict | None = None, *, stack: str = "prod", secure: bool = False,
           run_id: str | None = None) -> tuple[Deployment, auto.CommandError | None]:
    """`pulumi up` of a prepared stack (the prod stack file unless ``stack`` says otherwise).
    Returns the deployment and the error `up` stopped with, if any."""
    deployment = prepare(client, name, overrides, stack=stack, secure=secure, run_id=run_id)
    try:
        deployment.up_result = deployment.stack.up()
    except auto.CommandError as err:
        return deployment, err
    deployment.outputs = deployment.stack.outputs()
    return deployment, None


def sweep(client: docker.DockerClient, run_id: str) -> dict[str, list[str]]:
    """Remove what is left with this run's label; returns the names found, by kind."""
    selector = run_selector(run_id)
    left = {"containers": [], "networks": [], "volumes": []}
    for c in client.containers.list(all=True, filters=selector):
        left["containers"].append(c.name)
        c.remove(force=True)
    for n in client.networks.list(filters=selector):
        left["networks"].append(n.name)
        n.remove()
    for v in client.volumes.list(filters=selector):
        left["volumes"].append(v.name)
        v.remove(force=True)
    return left


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition", detail=None):
    """Poll until predicate() is truthy; returns its value or fails naming what it waited for
    (and what ``detail()`` says then, when given)."""
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
    shown = f": {detail()}" if detail is not None else f" (last: {last!r})"
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{shown}")


class RequestLoop:
    """A bounded request loop through nginx: `threads` clients, at most `limit` requests or `seconds`.

    Every other request is GET /api/health, the rest POST /api/flow_runs/filter (read-only,
    so nginx may retry it on another replica). With ``auth`` (user, password) and ``verify``
    (a CA file) it runs against the secure edge: basic credentials on every request and,
    for Prefect's CSRF protection, a token per client fetched once from /api/csrf-token.
    """

    def __init__(self, base: str, threads: int = 4, limit: int = 4000, seconds: float = 90, *,
                 auth: tuple[str, str] | None = None, verify: str | None = None, interval: float = 0.0):
        self.base, self.threads, self.limit, self.seconds = base, threads, limit, seconds
        self.auth, self.verify, self.interval = auth, verify, interval
        self.done = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._headers: dict[int, dict[str, str]] = {}

    def _csrf(self, client: int) -> dict[str, str]:
        if self.auth is None or client in self._headers:
            return self._headers.get(client, {})
        name = f"request-loop-{client}"
        token = requests.get(f"{self.base}/api/csrf-token", params={"client": name}, auth=self.auth,
                             verify=self.verify, timeout=10)
        token.raise_for_status()
        self._headers[client] = {"Prefect-Csrf-Token": token.json()["token"], "Prefect-Csrf-Client": name}
        return self._headers[client]

    def _one(self, session: requests.Session, n: int, client: int) -> None:
        # (verify per request: a Session's verify loses to $REQUESTS_CA_BUNDLE when that is set)
        options = {"timeout": 10, "auth": self.auth, "verify": self.verify if self.verify else True}
        if n % 2:
            r = session.post(f"{self.base}/api/flow_runs/filter", json={"limit": 5},
                             headers=self._csrf(client), **options)
        else:
            r = session.get(f"{self.base}/api/health", **options)
        if r.status_code != 200:
            raise RuntimeError(f"{r.request.method} {r.url} -> {r.status_code}")

    def _worker(self, client: int) -> None:
        session = requests.Session()
        deadline = time.monotonic() + self.seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self.done >= self.limit:
                    return
                n = self.done
                self.done += 1
            try:
                self._one(session, n, client)
            except Exception as err:  # noqa: BLE001 every failure counts
                with self._lock:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {err!r}")
            if self.interval:
                self.stop.wait(self.interval)

    def run_while(self, action) -> None:
        workers = [threading.Thread(target=self._worker, args=(i,)) for i in range(self.threads)]
        for w in workers:
            w.start()
        try:
            wait_for(lambda: self.done >= 200, timeout=30, interval=0.05, what="200 requests before the fault")
            action()
            wait_for(lambda: self.done >= self.limit or self.stop.is_set(), timeout=self.seconds, interval=0.2,
                     what=f"{self.limit} requests")
        finally:
            self.stop.set()
            for w in workers:
                w.join(timeout=30)

    def during(self, action, *, tail: float = 3.0):
        """Requests before, during and for ``tail`` seconds after ``action()`` (also when it
        raises); returns what it returned. ``self.action_seconds`` is how long it took."""
        workers = [threading.Thread(target=self._worker, args=(i,)) for i in range(self.threads)]
        for w in workers:
            w.start()
        try:
            wait_for(lambda: self.done >= 20, timeout=30, interval=0.05, what="20 requests before the change")
            started = time.monotonic()
            try:
                return action()
            finally:  # the tail runs after a failed action too: what it left must serve
                self.action_seconds = time.monotonic() - started
                self.stop.wait(tail)
        finally:
            self.stop.set()
            for w in workers:
                w.join(timeout=30)


def crash_process(client: docker.DockerClient, name: str) -> None:
    """SIGKILL the container's main process from the host, as a crash or OOM kill would.

    `docker kill` counts as a deliberate stop for Docker's restart policy (the
    container stays down), so it cannot show the policy bringing a replica back.
    """
    pid = client.api.inspect_container(name)["State"]["Pid"]
    os.kill(pid, signal.SIGKILL)


def deploy_or_fail(client, name: str, overrides: dict | None = None, *, stack: str = "prod",
                   secure: bool = False) -> Deployment:
    """deploy(), or fail the test with the engine's output and the containers' logs
    after removing what was made."""
    deployment, error = deploy(client, name, overrides, stack=stack, secure=secure)
    if error is not None:
        logs = "\n".join(
            f"--- {c.name}\n{c.logs(tail=40).decode(errors='replace')}"
            for c in deployment.containers() if c.status != "running"
        )
        tear_down(deployment)
        pytest.fail(f"deployment failed:\n{str(error)[-6000:]}\n{logs}")
    return deployment


def tear_down(deployment: Deployment) -> None:
    try:
        deployment.stack.destroy()
    except auto.CommandError:
        pass  # what destroy could not remove, the sweep does
    sweep(deployment.client, deployment.run_id)
