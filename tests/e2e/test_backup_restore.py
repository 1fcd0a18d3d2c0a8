"""The restore drill, on the real Pulumi engine and a real Docker engine.

A stack with backups on makes 20 flow runs (some COMPLETED, some FAILED, each with
its log line), takes a backup now, is destroyed, and its Postgres volume removed;
the backups volume stays. A fresh deployment under the same names starts empty;
`bin/restore` brings the 20 runs back with their states and logs. A damaged or
missing backup is then refused before anything is stopped, and the stack keeps
serving. Figures are printed with a `[backup]` prefix.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from components import backup as bk
from harness import REPO
from testbed import deploy_or_fail, tear_down, wait_for

pytestmark = pytest.mark.timeout(2400)

NAME = "bkp"
RUNS = 20
OVERRIDES = {
    "api.replicas": 2,
    "backup.enabled": True,
    "backup.intervalMinutes": 1,  # the loop takes one a minute: the drill's own must not be pruned
    "backup.keep": 30,
}
LINE = re.compile(r"backup (?P<name>prefect-\d{8}T\d{6}Z\.dump) bytes=(?P<bytes>\d+) seconds=(?P<seconds>\d+)")


def drill_runs(stack) -> dict:
    return json.loads(stack.prefect("drill_runs.py").strip().splitlines()[-1])


def settled(stack) -> dict | None:
    """The drill's runs once every one is final and its own log line and final-state line are in."""
    runs = drill_runs(stack)
    if len(runs) != RUNS:
        return None
    for run in runs.values():
        n = run["parameters"]["n"]
        if f"restore drill run number {n}" not in run["logs"] or not any("Finished in state" in m for m in run["logs"]):
            return None
    return runs


def restore(stack, backup: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "bin" / "restore"), "--yes", stack.prefix, backup],
                          capture_output=True, text=True, timeout=900)


def started_at(stack) -> dict[str, str]:
    return {c.name: c.attrs["State"]["StartedAt"] for c in stack.containers() if c.status == "running"}


def test_restore_drill(docker_client):
    first = deploy_or_fail(docker_client, NAME, OVERRIDES)
    second = None
    try:
        prefix = first.prefix
        volume = f"{prefix}-backups"
        backups = first.outputs["backups"]
        assert backups["volume"] == volume and backups["keep"] == 30 and backups["interval_minutes"] == 1, backups
        agent = first.container("backup")
        assert backups["container"] == agent.name
        assert backups["now"] == f"docker exec {agent.name} sh {bk.SCRIPT_PATH} now"
        info = docker_client.api.inspect_container(agent.name)
        assert info["HostConfig"]["ReadonlyRootfs"] is True and info["HostConfig"]["CapDrop"] == ["ALL"]
        # the first backup is taken at start; the healthcheck sees it
        wait_for(lambda: docker_client.api.inspect_container(agent.name)["State"]["Health"]["Status"] == "healthy",
                 timeout=240, interval=3, what=f"{agent.name} healthy (its first backup)",
                 detail=lambda: agent.logs(tail=20).decode(errors="replace"))
        assert LINE.search(agent.logs().decode(errors="replace")), agent.logs(tail=20)

        made = json.loads(first.prefect("make_runs.py", str(RUNS), timeout=600).strip().splitlines()[-1])
        assert len(made) == RUNS
        before = wait_for(lambda: settled(first), timeout=120, interval=3, what=f"the {RUNS} drill runs and their logs")
        states = sorted(r["state"] for r in before.values())
        assert states == ["COMPLETED"] * 16 + ["FAILED"] * 4, states

        # Take one now, as the README says (the `now` command of the backups output).
        started = time.monotonic()
        taken = subprocess.run(backups["now"].split(), capture_output=True, text=True, timeout=600)
        backup_wall = time.monotonic() - started
        assert taken.returncode == 0, taken.stdout + taken.stderr
        found = LINE.search(taken.stdout)
        assert found, taken.stdout
        backup, size, seconds = found["name"], int(found["bytes"]), int(found["seconds"])
        listed = subprocess.run(backups["list"].split(), capture_output=True, text=True, timeout=60).stdout
        assert backup in listed, listed
        # and a copy off the host, as the README says
        copies = Path(tempfile.mkdtemp(prefix="prefect-ha-bkp-copy-"))
        subprocess.run(["docker", "cp", f"{agent.name}:{bk.BACKUP_DIR}/{backup}", str(copies)], check=True, timeout=120)
        assert (copies / backup).stat().st_size == size

        # Gone: the stack, and its Postgres volume; the backups volume outlives the stack.
        left = first.destroy()
        assert left == sorted([f"{prefix}-postgres-data", volume]), left
        docker_client.volumes.get(f"{prefix}-postgres-data").remove(force=True)

        second = deploy_or_fail(docker_client, NAME, OVERRIDES)
        assert second.prefix == prefix
        assert drill_runs(second) == {}, "the fresh stack should start without the drill's runs"

        started = time.monotonic()
        result = restore(second, backup)
        restore_wall = time.monotonic() - started
        assert result.returncode == 0, f"bin/restore failed:\n{result.stdout}\n{result.stderr}"
        assert "restored " in result.stdout, result.stdout

        after = drill_runs(second)
        assert after == before, "the restored runs differ from the ones backed up"
        health = requests.get(f"{second.base}/api/health", timeout=10)
        assert health.status_code == 200
        print(f"\n[backup] {RUNS} flow runs: backup {backup} of {size} bytes ({size / 1024:.0f} KiB) "
              f"in {seconds} s by its own count, {backup_wall:.1f} s with docker exec; "
              f"restore (bin/restore: check, stop, restore, migrate, start healthy) {restore_wall:.1f} s")
        print("[backup] " + result.stdout.strip().splitlines()[-1])

        # A damaged backup, a non-archive and a missing one are refused; nothing stops.
        agent = second.container("backup")
        cut = agent.exec_run(["sh", "-c", f"head -c {size - 100} /backups/{backup} > /backups/prefect-truncated.dump"])
        assert cut.exit_code == 0, cut.output
        with tempfile.NamedTemporaryFile(suffix=".dump", delete=False) as garbage:
            garbage.write(b"PGDMP but not really a dump\n" * 100)
        before_refusals = started_at(second)
        refusals = {
            # cut short: pg_restore fails on the table of contents or, past it, on the data
            "prefect-truncated.dump": "is damaged|is not a readable pg_dump archive",
            garbage.name: "is not a readable pg_dump archive",
            "prefect-19700101T000000Z.dump": "not found in prefect-ha-bkp's backups",
            "/nonexistent/prefect.dump": "not found: no such file",
        }
        for wanted, reason in refusals.items():
            refused = restore(second, wanted)
            assert refused.returncode != 0, f"{wanted} was restored:\n{refused.stdout}"
            assert re.search(reason, refused.stderr) and "nothing was changed" in refused.stderr, refused.stderr
            assert "stopping" not in refused.stdout, refused.stdout
            print(f"[backup] refused {Path(wanted).name}: {refused.stderr.strip()[:200]}")
        Path(garbage.name).unlink()
        assert started_at(second) == before_refusals, "a refused restore restarted a container"
        assert requests.get(f"{second.base}/api/health", timeout=10).status_code == 200
        assert drill_runs(second) == before

        # The copy on this machine restores too, and so does `latest` (the loop's newest, taken
        # after the restore above).
        for wanted in (str(copies / backup), "latest"):
            again = restore(second, wanted)
            assert again.returncode == 0, f"bin/restore {wanted} failed:\n{again.stdout}\n{again.stderr}"
            assert drill_runs(second) == before, wanted
            print(f"[backup] restore of {Path(wanted).name}: " + again.stdout.strip().splitlines()[-1])
        shutil.rmtree(copies, ignore_errors=True)
    finally:
        if second is not None:
            tear_down(second)
        tear_down(first)  # the backups volume carries the first run's label: its sweep removes it
