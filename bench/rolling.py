"""Zero-downtime updates on the stand-in images: prints figures, asserts nothing.

    .ci/cache/venv/bin/python bench/rolling.py [--changes 1,2,6] [--keep]

Deploys one stack the way tests/e2e/test_rolling_updates.py's `stack` fixture does (the prod
stack file, `pulumi up` by the real engine with the provider doubles, a plain edge, 1 API
replica, a Docker worker running the Prefect image with prefect-docker from the image's wheels
and jobImagePullPolicy Never), then applies these changes in order, each as
`pulumi config set --path` + `pulumi up` under a request loop through nginx (2 clients, one
request every 50 ms each, half GET /api/health, half POST /api/flow_runs/filter):

  1. api.replicas 1 -> 3 (scale out)
  2. api.replicas 3 -> 2 (scale in)
  3. prefect.logLevel INFO -> WARNING (a server setting: rolls the replicas and the services)
  4. worker.limit 0 -> 3 (a worker setting)
  5. proxy.rateLimit 0 -> 50, proxy.rateLimitBurst -> 100 (an nginx setting: a reload)
  6. prefect.image 3.8.8 -> 3.9.1 (an upgrade with a real migration)

For each change: `pulumi up` seconds, requests served (200) and failed (anything else,
including timeouts and connection errors; each failure is printed), the resource changes,
and the update time as a multiple of one API replica's boot time. That boot time is measured
from Docker on the deployed stack: for each API container, State.StartedAt to the end of its
first healthy healthcheck probe (State.Health.Log); the median over the replicas present
after the first change applied (change 1 normally). Docker keeps only a container's last 5
probes, so a thread samples the API containers every second until then.
At the end: a Markdown table of all rows. The stack is torn down in every case (also on
Ctrl-C), unless --keep.

Needs the Docker engine and the stand-in images that bin/test's set-up provides
(bash testbed/dockerd.sh && bash testbed/build_images.sh, which also builds the next Prefect
image change 6 moves to) and the venv bin/test creates (.ci/cache/venv).
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import statistics
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import docker
import pytest
from pulumi import automation as auto

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "e2e")]

import engine  # noqa: E402
from engine import _text  # noqa: E402
from images import NEXT_PREFECT_IMAGE, PREFECT_DOCKER_REQUIREMENT  # noqa: E402
from testbed import (IMAGES, PREFECT_IMAGE, RUN_LABEL, Deployment, RequestLoop, changes, prepare, run_containers, sweep,
                     tear_down)  # noqa: E402

NAME = "bench-roll"  # containers: prefect-ha-bench-roll-*; run ids: bench-roll-<hex>
# The loop of test_rolling_updates.py: 2 clients, each one request every 50 ms.
CLIENTS, INTERVAL = 2, 0.05
# test_rolling_updates.py's `stack` fixture, on top of testbed's stand-ins and plain edge.
OVERRIDES = {
    "api.replicas": 1,
    "worker.enabled": True,
    "worker.image": "",
    "worker.extraPipPackages": PREFECT_DOCKER_REQUIREMENT,
    "worker.jobImagePullPolicy": "Never",
}
# (number, what it is, settings), applied in this order.
CHANGES = [
    (1, "scale out", {"api.replicas": 3}),
    (2, "scale in", {"api.replicas": 2}),
    (3, "server setting", {"prefect.logLevel": "WARNING"}),
    (4, "worker setting", {"worker.limit": 3}),
    (5, "nginx setting", {"proxy.rateLimit": 50, "proxy.rateLimitBurst": 100}),
    (6, "upgrade, real migration", {"prefect.image": NEXT_PREFECT_IMAGE}),
]
# What a key is when the stack's config does not set it (the program's defaults).
DEFAULTS = {"prefect.logLevel": "INFO", "worker.limit": 0, "proxy.rateLimit": 0, "proxy.rateLimitBurst": 20}
HEALTH_LOG_ENTRIES = 5  # Docker keeps a container's last 5 healthcheck results


def parse_time(text: str) -> datetime:
    """A Docker timestamp (RFC 3339 with nanoseconds) as an aware datetime."""
    text = text.replace("Z", "+00:00")
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text))


class BootTimes:
    """Each API container's boot: State.StartedAt to the End of its first healthy probe.

    Docker keeps only the last 5 probes (25 s at the API's 5 s interval), so `start()` runs a
    thread that looks at the API containers every second. A first healthy probe counts when
    the log it was seen in was still complete (fewer than 5 entries), or when the container had
    been seen before without a healthy probe; otherwise the container is marked unknown.
    """

    def __init__(self, client: docker.DockerClient, run_id: str, every: float = 1.0):
        self.client, self.run_id, self.every = client, run_id, every
        self.seconds: dict[str, float] = {}  # container id -> boot seconds
        self.unknown: set[str] = set()
        self._not_yet: set[str] = set()  # seen running without a healthy probe
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        try:
            found = run_containers(self.client, self.run_id, "api")
        except docker.errors.APIError:  # a container went between list and inspect
            return
        for c in found:
            if c.id in self.seconds or c.id in self.unknown:
                continue
            state = c.attrs["State"]
            if not state.get("Running"):
                continue
            log = (state.get("Health") or {}).get("Log") or []
            healthy = next((e for e in log if e.get("ExitCode") == 0), None)
            if healthy is None:
                self._not_yet.add(c.id)
            elif len(log) < HEALTH_LOG_ENTRIES or c.id in self._not_yet:
                self.seconds[c.id] = (parse_time(healthy["End"]) - parse_time(state["StartedAt"])).total_seconds()
            else:
                self.unknown.add(c.id)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="boot-times")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.sample()


def current_value(deployment: Deployment, key: str):
    try:
        return deployment.stack.stack.get_config(key, path=True).value
    except auto.CommandError:  # not set in the stack: the program's default
        return DEFAULTS.get(key, "?")


def shown(key: str, value) -> str:
    return str(value).rsplit(":", 1)[-1] if key.endswith(".image") else str(value)


def label(deployment: Deployment, what: str, settings: dict) -> str:
    moves = ", ".join(f"{key} {shown(key, current_value(deployment, key))} -> {shown(key, value)}"
                      for key, value in settings.items())
    return f"{moves} ({what})"


def configure(deployment: Deployment, settings: dict) -> None:
    """`pulumi config set --path` of each setting (test_rolling_updates.configure)."""
    deployment.stack.stack.set_all_config({k: auto.ConfigValue(_text(v)) for k, v in settings.items()}, path=True)


def summary(result: auto.UpResult) -> str:
    changed = changes(result.summary.resource_changes)
    return ", ".join(f"{k} {v}" for k, v in sorted(changed.items())) or "none"


def apply(deployment: Deployment, number: int, what: str, settings: dict) -> dict:
    """One change under the request loop; its row."""
    row = {"number": number, "change": label(deployment, what, settings)}
    configure(deployment, settings)
    loop = RequestLoop(deployment.base, threads=CLIENTS, interval=INTERVAL, limit=10**6, seconds=900)
    try:
        result = loop.during(deployment.stack.up)
        row["changes"] = summary(result)
        deployment.up_result = result
        deployment.outputs = deployment.stack.outputs()
    except auto.CommandError as err:
        row["changes"] = "`pulumi up` FAILED"
        row["error"] = str(err)
    except pytest.fail.Exception as err:  # the loop's own wait (no 20 requests before the change)
        row["changes"] = "request loop FAILED"
        row["error"] = str(err)
    row["seconds"] = getattr(loop, "action_seconds", None)
    row["failures"] = list(loop.failures)
    row["failed"] = len(loop.failures)
    row["served"] = loop.done - row["failed"]
    return row


def fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def ratio(row: dict, boot: float | None) -> str:
    if row.get("seconds") is None or not boot:
        return "-"
    return f"{row['seconds'] / boot:.2f}"


def print_row(row: dict, boot: float | None) -> None:
    print(f"[{row['number']}] {row['change']}: pulumi up {fmt_seconds(row['seconds'])}, "
          f"{row['served']} served, {row['failed']} failed, changes: {row['changes']}, "
          f"update / replica boot: {ratio(row, boot)}", flush=True)
    for failure in row["failures"]:
        print(f"    failed: {failure}", flush=True)
    if "error" in row:
        print(f"    `pulumi up` error (tail):\n{row['error'][-4000:]}", flush=True)


def print_table(rows: list[dict], boot: float | None) -> None:
    print("\n| change | `pulumi up` | requests served | failed | resource changes | update / one replica's boot |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['number']}. {row['change']} | {fmt_seconds(row['seconds'])} | {row['served']:,} | "
              f"{row['failed']} | {row['changes']} | {ratio(row, boot)} |")


class DeployFailed(Exception):
    pass


def deploy(deployment: Deployment, boots: BootTimes) -> float:
    """`pulumi up` of the prepared stack (deploy_or_fail() of test_rolling_updates.py's `stack`),
    with the boot sampler running; its seconds."""
    boots.start()
    started = time.monotonic()
    try:
        deployment.up_result = deployment.stack.up()
    except auto.CommandError as err:
        logs = "\n".join(f"--- {c.name}\n{c.logs(tail=40).decode(errors='replace')}"
                         for c in deployment.containers() if c.status != "running")
        raise DeployFailed(f"deployment failed:\n{str(err)[-6000:]}\n{logs}") from None
    deployment.outputs = deployment.stack.outputs()
    return time.monotonic() - started


def boot_time(deployment: Deployment, boots: BootTimes, after: str) -> float | None:
    boots.stop()
    present = deployment.containers("api")
    known = [(c.name, boots.seconds[c.id]) for c in present if c.id in boots.seconds]
    missing = [c.name for c in present if c.id not in boots.seconds]
    if not known:
        print(f"one API replica's boot: no replica present after {after} has a known boot time ({missing})")
        return None
    median = statistics.median(s for _, s in known)
    each = ", ".join(f"{name} {s:.1f} s" for name, s in known)
    print(f"one API replica's boot (State.StartedAt to its first healthy probe), median of the "
          f"{len(known)} replicas present after {after}: {median:.1f} s ({each})"
          + (f"; unknown (health log already truncated): {missing}" if missing else ""), flush=True)
    return median


def shielded_tear_down(deployment: Deployment) -> None:
    """tear_down() (`pulumi destroy`, then a sweep of the run's label), with Ctrl-C only
    reported: a Ctrl-C still stops `pulumi destroy` (same process group), which leaves the rest
    to the sweep."""
    previous = signal.signal(signal.SIGINT, lambda *_: print("tearing down; please wait", file=sys.stderr))
    try:
        print(f"tearing down {deployment.run_id} ...", flush=True)
        tear_down(deployment)
        # An interrupted `pulumi up` finishes the operations it had started after its SIGINT:
        # sweep again what appears within a while.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(sweep(deployment.client, deployment.run_id).values()):
            time.sleep(2)
        shutil.rmtree(deployment.stack.work_dir, ignore_errors=True)
        left = deployment.containers()
        print(f"torn down; containers left with {RUN_LABEL}={deployment.run_id}: {[c.name for c in left]}",
              flush=True)
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupt(signum, frame) -> None:
    """SIGTERM as Ctrl-C: either way main()'s finally tears down."""
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", default=",".join(str(n) for n, _, _ in CHANGES),
                        help="which changes to apply, by number, comma-separated (default: all, in order)")
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    args = parser.parse_args()
    try:
        chosen = {int(n) for n in args.changes.split(",") if n.strip()}
    except ValueError:
        parser.error(f"--changes: numbers 1-{len(CHANGES)}, comma-separated, got {args.changes!r}")
    if not chosen or not chosen <= {n for n, _, _ in CHANGES}:
        parser.error(f"--changes: numbers 1-{len(CHANGES)}, got {args.changes!r}")
    changes = [c for c in CHANGES if c[0] in chosen]

    signal.signal(signal.SIGTERM, interrupt)

    client = docker.from_env(timeout=300)
    needed = [*IMAGES.values(), *([NEXT_PREFECT_IMAGE] if 6 in chosen else [])]
    for image in needed:
        client.images.get(image)  # raises with the name when build_images.sh did not make it
    assert IMAGES["prefect.image"] == PREFECT_IMAGE

    run_started = time.monotonic()
    deployment: Deployment | None = None
    boots: BootTimes | None = None
    rows: list[dict] = []
    boot: float | None = None
    status = 0
    try:
        deployment = prepare(client, NAME, OVERRIDES)
        boots = BootTimes(client, deployment.run_id)
        try:
            seconds = deploy(deployment, boots)
        except DeployFailed as err:
            print(err, file=sys.stderr)
            return 1
        print(f"deployed {deployment.run_id} (1 API replica, worker) in {seconds:.1f} s; "
              f"nginx at {deployment.base}", flush=True)
        for number, what, settings in changes:
            row = apply(deployment, number, what, settings)
            rows.append(row)
            if len(rows) == 1:  # the replicas present after the first change applied
                boot = boot_time(deployment, boots, f"change {number}")
            print_row(row, boot)
            if "error" in row:
                print("stopping: the stack is not where the next changes expect it", file=sys.stderr)
                status = 1
                break
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        status = 130
    finally:
        if boots is not None:
            boots.stop()
        if rows:
            print_table(rows, boot)
        if boot is not None:
            print(f"\none API replica's boot: {boot:.1f} s (median of the replicas after the first change)")
        print(f"total run (deploy and changes): {time.monotonic() - run_started:.0f} s", flush=True)
        if deployment is not None:
            if args.keep:
                print(f"\n--keep: the stack stays up (nginx at {deployment.base}). To remove it:\n"
                      f"  docker rm -f $(docker ps -aq --filter label={RUN_LABEL}={deployment.run_id})\n"
                      f"  docker network rm $(docker network ls -q --filter label={RUN_LABEL}={deployment.run_id})\n"
                      f"  docker volume rm $(docker volume ls -q --filter label={RUN_LABEL}={deployment.run_id})\n"
                      f"(Pulumi state: {deployment.stack.work_dir})")
            else:
                shielded_tear_down(deployment)
        if not args.keep and engine._SHARED is not None:
            # this process's own engine install (the Pulumi home with the plugin doubles)
            engine_root = engine._SHARED.home.parent
            if engine_root.name.startswith("prefect-ha-engine-"):
                shutil.rmtree(engine_root, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
