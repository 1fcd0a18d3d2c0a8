"""Backups: the config group, the backup container under mocks, the backup script against a
real Postgres, and bin/restore's refusals that need no stack.

The restore drill itself (back up, destroy, deploy fresh, restore) runs on the engine:
tests/e2e/test_backup_restore.py.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from pathlib import Path

import pytest

from components import backup as bk
from components.config import ConfigError, load_paths
from harness import REPO, StackMocks, run_program
from postgres_support import throwaway_postgres
from support import VOLUME, component_of, container, containers, env_of, labels_of

PASSWORD = StackMocks().password
SCRIPT = REPO / "components" / "scripts" / "backup.sh"
RESTORE = REPO / "bin" / "restore"
LINE = re.compile(r"backup (prefect-\d{8}T\d{6}Z\.dump) bytes=(\d+) seconds=(\d+) ")


# --- config ----------------------------------------------------------------------------------


def test_backups_are_off_by_default_and_on_in_prod():
    assert load_paths({}).backup.enabled is False
    assert load_paths({}).backup.keep == 7 and load_paths({}).backup.interval_minutes == 1440
    dev, prod = run_program("dev"), run_program("prod")
    assert dev.error is None and prod.error is None
    assert containers(dev, bk.COMPONENT) == [] and "backups" not in dev.outputs
    assert not [r for r in dev.of_type(VOLUME) if r.inputs["name"].endswith("-backups")]
    assert len(containers(prod, bk.COMPONENT)) == 1 and "backups" in prod.outputs


@pytest.mark.parametrize("raw, expected", [
    ({"backup.keep": "0"}, "backup.keep must be 1-1000 backups, got 0"),
    ({"backup.intervalMinutes": "0"}, "backup.intervalMinutes must be 1-10080 minutes, got 0"),
    ({"backup.hostPath": "backups"}, "backup.hostPath must be empty (the named volume <prefix>-backups) or an absolute"),
    ({"backup.hostPath": "/"}, "got '/'"),
    ({"backup.hostPath": "/srv/a:b"}, "got '/srv/a:b'"),
    ({"backup.hostPath": "/srv/../etc"}, "got '/srv/../etc'"),
    ({"backup.memoryLimit": "2m"}, "backup.memoryLimit must be at least 6m"),
    ({"backup.every": "1"}, "backup.every is not a known setting"),
])
def test_bad_backup_settings_name_the_key_and_the_value(raw, expected):
    with pytest.raises(ConfigError) as err:
        load_paths(raw)
    assert any(expected in p for p in err.value.problems), err.value.problems


def test_a_host_path_is_accepted():
    assert load_paths({"backup.hostPath": "/srv/prefect-backups"}).backup.host_path == "/srv/prefect-backups"


# --- the backup container (prod stack file, backups on) -------------------------------------


@pytest.fixture(scope="module")
def prod():
    run = run_program("prod")
    assert run.error is None, run.error
    return run


def test_the_backup_container_runs_the_script_from_the_postgres_image_on_the_backend(prod):
    reg = container(prod, bk.COMPONENT)
    inputs = reg.inputs
    pg = container(prod, "postgres").inputs
    assert re.fullmatch(r"prefect-ha-prod-backup-[0-9a-f]{8}", inputs["name"]), inputs["name"]
    assert inputs["image"] == pg["image"]
    assert inputs["command"] == bk.COMMAND
    assert [n["name"] for n in inputs["networksAdvanced"]] == ["prefect-ha-prod-backend"]
    assert not inputs.get("ports")
    env = env_of(reg)
    assert env["PGHOST"] == "postgres" and env["PGUSER"] == "prefect" and env["PGDATABASE"] == "prefect"
    assert env["BACKUP_DIR"] == bk.BACKUP_DIR and env["BACKUP_KEEP"] == "7" and env["BACKUP_INTERVAL"] == "86400"
    assert env["BACKUP_MAX_AGE"] == str(2 * 86400 + bk.STALE_MARGIN_SECONDS)
    assert env[bk.SCRIPT_ENV] == SCRIPT.read_text()
    assert inputs["restart"] == "unless-stopped"
    assert inputs["healthcheck"]["tests"] == ["CMD", "sh", bk.SCRIPT_PATH, "health"]
    assert inputs["memory"] == 512 and inputs["memorySwap"] == 512


def test_the_backup_container_is_hardened(prod):
    inputs = container(prod, bk.COMPONENT).inputs
    assert inputs["readOnly"] is True and "/tmp" in inputs["tmpfs"]
    assert inputs["capabilities"]["drops"] == ["ALL"] and not inputs["capabilities"].get("adds")
    assert inputs["securityOpts"] == ["no-new-privileges:true"] and inputs["privileged"] is False
    assert labels_of(container(prod, bk.COMPONENT))["prefect-ha.backup-location"] == "volume:prefect-ha-prod-backups"


def test_the_postgres_password_reaches_the_container_only_as_a_secret(prod):
    reg = container(prod, bk.COMPONENT)
    assert reg.input_is_secret("envs")
    assert env_of(reg)["PGPASSWORD"] == PASSWORD
    for key in ("command", "labels", "healthcheck", "volumes", "name"):
        assert PASSWORD not in str(reg.inputs.get(key)), key
    assert not prod.output_is_secret("backups")
    assert PASSWORD not in str(prod.outputs["backups"])


def test_backups_go_to_a_named_volume_kept_on_destroy(prod):
    [volume] = [r for r in prod.of_type(VOLUME) if r.inputs["name"] == "prefect-ha-prod-backups"]
    assert volume.retain_on_delete is True
    assert volume.parent == prod.named("prefect-backups").urn
    mounts = container(prod, bk.COMPONENT).inputs["volumes"]
    assert mounts == [{"volumeName": "prefect-ha-prod-backups", "containerPath": bk.BACKUP_DIR}]


def test_the_backup_container_starts_after_postgres_is_healthy_and_the_migration_passed(prod):
    deps = container(prod, bk.COMPONENT).all_dependencies()
    assert container(prod, "postgres").urn in deps
    assert container(prod, "migration").urn in deps
    # and nothing waits for it
    urn = container(prod, bk.COMPONENT).urn
    assert not [r.name for r in prod.registrations if urn in r.all_dependencies()]


def test_the_backups_output_says_where_how_often_and_how_to_take_one(prod):
    out = prod.outputs["backups"]
    name = container(prod, bk.COMPONENT).inputs["name"]
    assert out == {
        "location": "volume:prefect-ha-prod-backups",
        "volume": "prefect-ha-prod-backups",
        "container": name,
        "interval_minutes": 1440,
        "keep": 7,
        "now": f"docker exec {name} sh /tmp/prefect-backup now",
        "list": f"docker exec {name} sh /tmp/prefect-backup list",
    }


def test_a_host_path_is_bind_mounted_and_no_volume_is_made():
    run = run_program("dev", {"backup.enabled": True, "backup.hostPath": "/srv/prefect-backups",
                              "backup.intervalMinutes": 60, "backup.keep": 3, "backup.cpuLimit": "0.5"})
    assert run.error is None, run.error
    reg = container(run, bk.COMPONENT)
    assert reg.inputs["volumes"] == [{"hostPath": "/srv/prefect-backups", "containerPath": bk.BACKUP_DIR}]
    assert not [r for r in run.of_type(VOLUME) if r.inputs["name"].endswith("-backups")]
    assert env_of(reg)["BACKUP_INTERVAL"] == "3600" and env_of(reg)["BACKUP_KEEP"] == "3"
    assert reg.inputs["cpus"] == "0.5"
    assert run.outputs["backups"]["location"] == "/srv/prefect-backups"
    assert "volume" not in run.outputs["backups"]


# --- the script, against a real Postgres ------------------------------------------------------


@pytest.fixture(scope="module")
def live_postgres():
    """A throwaway Postgres on 127.0.0.1 (password auth over TCP) holding a small table."""
    with throwaway_postgres() as server:
        server.psql("CREATE ROLE prefect LOGIN PASSWORD :'pw'; CREATE DATABASE prefect OWNER prefect;",
                    "pw=p@ss:/?#% word")
        server.psql("SET ROLE prefect; CREATE TABLE flow_run (id int PRIMARY KEY, name text); "
                    "INSERT INTO flow_run SELECT g, 'run ' || g FROM generate_series(1, 500) g", database="prefect")
        yield {"PGHOST": "127.0.0.1", "PGPORT": str(server.port), "PGUSER": "prefect", "PGDATABASE": "prefect",
               "PGPASSWORD": "p@ss:/?#% word", "bin": server.bin_dir}


def script_env(pg: dict, work: Path, **env: str) -> dict[str, str]:
    """The container's environment, with the backups in work/backups and the per-container
    state (tmpfs in the container) in work/state."""
    for sub in ("backups", "state"):
        (work / sub).mkdir(exist_ok=True)
    return {"PATH": f"{pg['bin']}:/usr/bin:/bin", "BACKUP_DIR": str(work / "backups"),
            "BACKUP_STATE_DIR": str(work / "state"), **{k: v for k, v in pg.items() if k != "bin"}, **env}


def run_script(pg: dict, work: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(SCRIPT), *args], env=script_env(pg, work, **env), capture_output=True,
                          text=True, timeout=120)


def dumps(work: Path) -> list[str]:
    return sorted(p.name for p in (work / "backups").iterdir())


def test_the_script_takes_a_verified_backup_and_logs_its_name_size_and_seconds(live_postgres, tmp_path):
    result = run_script(live_postgres, tmp_path, "now")
    assert result.returncode == 0, result.stdout + result.stderr
    found = LINE.search(result.stdout)
    assert found, result.stdout
    name, size = found.group(1), int(found.group(2))
    assert dumps(tmp_path) == [name]  # no partial file left behind
    assert (tmp_path / "backups" / name).stat().st_size == size > 0
    listing = subprocess.run([f"{live_postgres['bin']}/pg_restore", "--list", str(tmp_path / "backups" / name)],
                             capture_output=True, text=True, check=True).stdout
    assert "TABLE DATA public flow_run" in listing
    assert PASSWORD not in result.stdout and live_postgres["PGPASSWORD"] not in result.stdout + result.stderr
    listed = run_script(live_postgres, tmp_path, "list")
    assert listed.returncode == 0 and listed.stdout.startswith(f"{name}\t{size} bytes\t"), listed.stdout
    assert run_script(live_postgres, tmp_path, "health").returncode == 0


def test_the_script_keeps_only_the_newest(live_postgres, tmp_path):
    names = []
    for _ in range(3):
        result = run_script(live_postgres, tmp_path, "now", BACKUP_KEEP="2")
        assert result.returncode == 0, result.stderr
        names.append(LINE.search(result.stdout).group(1))
    assert len(set(names)) == 3, names  # one per second at most, never overwritten
    assert dumps(tmp_path) == sorted(names[1:])
    assert f"pruned {names[0]}" in result.stdout


def test_a_failed_dump_leaves_no_file_and_fails(live_postgres, tmp_path):
    result = run_script(live_postgres, tmp_path, "now", PGPASSWORD="wrong")
    assert result.returncode == 1
    assert "FAILED: pg_dump" in result.stdout and "password authentication failed" in result.stderr
    assert dumps(tmp_path) == []
    health = run_script(live_postgres, tmp_path, "health")
    assert health.returncode == 1 and "the last backup failed: pg_dump of database prefect" in health.stdout, health.stdout
    # the next good one clears it
    assert run_script(live_postgres, tmp_path, "now").returncode == 0
    assert run_script(live_postgres, tmp_path, "health").returncode == 0


def test_the_healthcheck_fails_once_the_newest_backup_is_stale(live_postgres, tmp_path):
    assert run_script(live_postgres, tmp_path, "now").returncode == 0
    old = time.time() - 3600
    for path in (tmp_path / "backups").iterdir():
        os.utime(path, (old, old))
    stale = run_script(live_postgres, tmp_path, "health", BACKUP_MAX_AGE="1800")
    assert stale.returncode == 1 and "s old (more than 1800 s)" in stale.stdout, stale.stdout
    assert run_script(live_postgres, tmp_path, "health", BACKUP_MAX_AGE="7200").returncode == 0
    # a loop that started recently is taking its first one: healthy meanwhile
    (tmp_path / "state" / "prefect-backup.started").write_text(f"{int(time.time()) - 60}\n")
    assert run_script(live_postgres, tmp_path, "health", BACKUP_MAX_AGE="1800").returncode == 0


def test_a_fresh_loop_is_healthy_until_its_first_backup_is_due(live_postgres, tmp_path):
    assert run_script(live_postgres, tmp_path, "health").returncode == 1  # no loop, no backup
    (tmp_path / "state" / "prefect-backup.started").write_text(f"{int(time.time())}\n")
    assert run_script(live_postgres, tmp_path, "health", BACKUP_MAX_AGE="600").returncode == 0
    (tmp_path / "state" / "prefect-backup.started").write_text(f"{int(time.time()) - 700}\n")
    late = run_script(live_postgres, tmp_path, "health", BACKUP_MAX_AGE="600")
    assert late.returncode == 1 and "no backup in" in late.stdout, late.stdout


def test_the_loop_takes_one_at_start_and_stops_on_sigterm(live_postgres, tmp_path):
    environment = script_env(live_postgres, tmp_path, BACKUP_INTERVAL="3600")
    loop = subprocess.Popen(["sh", str(SCRIPT), "loop"], env=environment, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not dumps(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(dumps(tmp_path)) == 1
        assert (tmp_path / "state" / "prefect-backup.started").exists()
        loop.terminate()
        assert loop.wait(timeout=10) == 0
    finally:
        loop.kill()
    assert "stopping" in loop.stdout.read()


# --- bin/restore: refusals that need no stack ------------------------------------------------


def restore(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RESTORE), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_restore_is_executable_and_explains_its_usage():
    assert os.stat(RESTORE).st_mode & stat.S_IXUSR
    result = restore()
    assert result.returncode == 2 and "bin/restore [--yes] STACK BACKUP" in result.stderr


def test_restore_refuses_without_a_docker_engine():
    result = restore("prod", "latest", DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert result.returncode == 1
    assert "cannot reach the Docker engine" in result.stderr


def test_restore_refuses_an_unknown_stack(tmp_path):
    # A docker CLI that answers like an engine without any prefect-ha stack.
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\ncase \"$1\" in info) exit 0 ;; ps) exit 0 ;; *) echo \"unexpected: $*\" >&2; exit 9 ;; esac\n")
    fake.chmod(0o755)
    result = restore("--yes", "no-such-stack", "latest", PATH=f"{tmp_path}:{os.environ['PATH']}")
    assert result.returncode == 1
    assert "no prefect-ha stack 'no-such-stack'" in result.stderr, result.stderr
    assert "unexpected" not in result.stderr
