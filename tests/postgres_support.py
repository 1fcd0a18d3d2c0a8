"""A throwaway Debian Postgres for the tests that need a real server: a data
directory of its own, trusted local (socket) connections and passwords over TCP,
as the official image configures them."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest


def pg_bin() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("Debian's postgresql is not installed: run bin/test, which installs it (apt-get install postgresql)")
    return os.path.dirname(found[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(args, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, **kw)
    if result.returncode:
        pytest.fail(f"{os.path.basename(args[0])} failed ({result.returncode}): {result.stderr.strip()}")
    return result


@dataclass(frozen=True)
class Server:
    bin_dir: str
    port: int
    socket_dir: Path

    def psql(self, sql: str, *variables: str, database: str = "postgres") -> str:
        """``sql`` on stdin over the trusted socket; ``variables`` are psql -v name=value."""
        args = [f"{self.bin_dir}/psql", "-XAtq", "-h", str(self.socket_dir), "-p", str(self.port),
                "-v", "ON_ERROR_STOP=1", "-d", database]
        for variable in variables:
            args += ["-v", variable]
        return as_postgres(args, input=sql).stdout.strip()


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[Server]:
    bin_dir = pg_bin()
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("no postgres system user: Debian's postgresql package creates it")
    # Not under pytest's tmp dir: that is private to root, and Postgres runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="prefect-ha-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    shutil.chown(base, "postgres")
    shutil.chown(sock, "postgres")
    os.chmod(base, 0o755)
    as_postgres([f"{bin_dir}/initdb", "-D", str(data), "--auth-local=trust", "--auth-host=scram-sha-256", "-U", "postgres"])
    port = free_port()
    as_postgres([f"{bin_dir}/pg_ctl", "-D", str(data), "-l", str(base / "log"), "-o",
                 f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "start"])
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([f"{bin_dir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode:
            if time.monotonic() > deadline:
                pytest.fail(f"Postgres did not become ready: {(base / 'log').read_text()}")
            time.sleep(0.2)
        os.chmod(sock, 0o777)
        yield Server(bin_dir, port, sock)
    finally:
        as_postgres([f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(base, ignore_errors=True)
