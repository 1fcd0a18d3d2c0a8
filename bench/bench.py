"""Benchmarks on the stand-in images: prints figures, asserts nothing.

    .ci/cache/venv/bin/python bench/bench.py [--requests 2000] [--concurrency 4]

1. Cold deploy until nginx's /api/health answers: this program (prod stack file,
   3 API replicas, `pulumi up` by the real engine with the provider doubles) against seed 001's
   docker-compose file (Debian's docker-compose, same stand-in images), as a ratio.
2. Requests per second and p50/p99 latency through nginx over 3 replicas, against
   one Prefect API server of the same stack addressed directly.
3. Failed requests while an API replica crashes (SIGKILL of its process) under load.

Needs the Docker engine and images that bin/test's set-up provides
(testbed/dockerd.sh, testbed/build_images.sh) and Debian's docker-compose.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "e2e")]

from testbed import IMAGES, Deployment, RequestLoop, crash_process, deploy, free_port, run_labels, tear_down  # noqa: E402

COMPOSE = REPO / "bench" / "seed001-compose.yml"


def wait_health(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")


def cold_deploy_program(client) -> tuple[float, Deployment]:
    started = time.monotonic()
    deployment, error = deploy(client, "bench")
    if error is not None:
        tear_down(deployment)
        raise RuntimeError(f"deployment failed: {str(error)[-4000:]}")
    wait_health(deployment.outputs["health_url"])
    return time.monotonic() - started, deployment


def cold_deploy_compose() -> float:
    compose = shutil.which("docker-compose")
    if not compose:
        raise SystemExit("bench: Debian's docker-compose is not installed (apt-get install docker-compose)")
    port = free_port()
    env = {**os.environ, "SEED_PORT": str(port)}
    base = [compose, "-p", "prefect-ha-seed001", "-f", str(COMPOSE)]
    subprocess.run([*base, "down", "-v", "--remove-orphans"], env=env, capture_output=True)
    started = time.monotonic()
    try:
        up = subprocess.run([*base, "up", "-d"], env=env, capture_output=True, text=True)
        if up.returncode:
            raise RuntimeError(f"docker-compose up failed:\n{up.stderr[-3000:]}")
        wait_health(f"http://127.0.0.1:{port}/api/health")
        return time.monotonic() - started
    finally:
        subprocess.run([*base, "down", "-v", "--remove-orphans"], env=env, capture_output=True)


def load(base: str, total: int, concurrency: int) -> dict:
    """`total` read requests (half GET /api/health, half POST /api/flow_runs/filter)."""
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    counter = iter(range(total))

    def worker() -> None:
        nonlocal failures
        session = requests.Session()
        for n in counter:
            t0 = time.perf_counter()
            try:
                if n % 2:
                    ok = session.post(f"{base}/api/flow_runs/filter", json={"limit": 5}, timeout=10).status_code == 200
                else:
                    ok = session.get(f"{base}/api/health", timeout=10).status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                failures += not ok

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": total,
        "failed": failures,
        "rps": round(total / wall, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
    }


def single_server(deployment: Deployment) -> tuple[object, str]:
    """One more API server of the stack, configured as its first replica, published on the host
    (through the edge network; the backend one, which reaches Postgres and Redis, is internal)."""
    client, networks = deployment.client, deployment.outputs["services"]["networks"]
    api1 = deployment.container("api", replica=1).attrs
    port = free_port()
    container = client.containers.create(
        api1["Config"]["Image"], api1["Config"]["Cmd"],
        environment=api1["Config"]["Env"], network=networks["edge"],
        ports={"4200/tcp": ("127.0.0.1", port)}, labels=run_labels(deployment.run_id),
        name=f"{deployment.prefix}-bench-direct",
    )
    client.networks.get(networks["backend"]).connect(container)
    container.start()
    base = f"http://127.0.0.1:{port}"
    wait_health(f"{base}/api/health", timeout=120)
    return container, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    client = docker.from_env(timeout=300)
    for image in IMAGES.values():
        client.images.get(image)
    figures: dict = {}

    seed = cold_deploy_compose()
    program_seconds, deployment = cold_deploy_program(client)
    figures["cold_deploy_s"] = {"prefect-ha": round(program_seconds, 1), "seed001_compose": round(seed, 1),
                                "ratio": round(program_seconds / seed, 2)}
    try:
        base = deployment.base
        load(base, 200, args.concurrency)  # warm-up: connections, caches
        figures["through_nginx_3_replicas"] = load(base, args.requests, args.concurrency)
        direct, direct_base = single_server(deployment)
        try:
            load(direct_base, 200, args.concurrency)
            figures["one_server_direct"] = load(direct_base, args.requests, args.concurrency)
        finally:
            direct.remove(force=True)
        loop = RequestLoop(base, threads=args.concurrency, limit=4000, seconds=120)
        victim = deployment.container("api", replica=2).name
        loop.run_while(lambda: crash_process(client, victim))
        figures["replica_crash_under_load"] = {"requests": loop.done, "failed": len(loop.failures)}
    finally:
        tear_down(deployment)

    print(json.dumps(figures, indent=2))
    c = figures["cold_deploy_s"]
    n, d = figures["through_nginx_3_replicas"], figures["one_server_direct"]
    print(f"cold deploy to healthy nginx: prefect-ha {c['prefect-ha']} s, seed-001 compose "
          f"{c['seed001_compose']} s (ratio {c['ratio']})")
    print(f"nginx + 3 replicas: {n['rps']} req/s, p50 {n['p50_ms']} ms, p99 {n['p99_ms']} ms, {n['failed']} failed")
    print(f"one server direct:  {d['rps']} req/s, p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms, {d['failed']} failed")
    f = figures["replica_crash_under_load"]
    print(f"replica crash under load: {f['failed']} of {f['requests']} requests failed")


if __name__ == "__main__":
    main()
