"""The program's percent-encoded database URL against a real Postgres, as Prefect connects.

Debian's postgresql runs in a temporary data directory started here; its role
has a hostile password. SQLAlchemy + asyncpg is the path Prefect takes.
"""

import asyncio
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from components.urls import postgres_url
from harness import StackMocks, run_program
from support import env_of, replica

HOSTILE_PASSWORDS = [
    "p@ss:/?#%& wörd+=!$*",
    "@@@:::///???###",
    "%41%2F+ +%",
    "ünï©ødé 密码 🙂",
]


def _pg_bin() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("Debian's postgresql is not installed: run bin/test, which installs it (apt-get install postgresql)")
    return os.path.dirname(found[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(args, **kw):
    result = subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, **kw)
    if result.returncode:
        pytest.fail(f"{os.path.basename(args[0])} failed ({result.returncode}): {result.stderr.strip()}")
    return result


@pytest.fixture(scope="module")
def postgres():
    """A throwaway Postgres on 127.0.0.1 with one role per hostile password."""
    bin_dir = _pg_bin()
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
    _as_postgres([f"{bin_dir}/initdb", "-D", str(data), "--auth-local=trust", "--auth-host=scram-sha-256", "-U", "postgres"])
    port = _free_port()
    _as_postgres([f"{bin_dir}/pg_ctl", "-D", str(data), "-l", str(base / "log"), "-o",
                  f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "start"])
    deadline = time.monotonic() + 30
    while subprocess.run([f"{bin_dir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode:
        if time.monotonic() > deadline:
            pytest.fail(f"Postgres did not become ready: {(base / 'log').read_text()}")
        time.sleep(0.2)
    users = {}
    for index, password in enumerate(HOSTILE_PASSWORDS):
        user = f"prefect{index}"
        # psql quotes :'pw' itself, so the password never meets a shell or SQL literal here.
        _as_postgres([f"{bin_dir}/psql", "-h", str(sock), "-p", str(port), "-v", "ON_ERROR_STOP=1",
                      "-v", f"pw={password}", "-d", "postgres"],
                     input=f"CREATE ROLE {user} LOGIN PASSWORD :'pw';\nCREATE DATABASE {user} OWNER {user};\n")
        users[password] = user
    yield port, users
    _as_postgres([f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"])
    shutil.rmtree(base, ignore_errors=True)


async def _select_one(url: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("select 1"))).scalar_one()
    finally:
        await engine.dispose()


def connect(url: str) -> int:
    return asyncio.run(_select_one(url))


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
def test_encoded_url_connects(postgres, password):
    port, users = postgres
    user = users[password]
    assert connect(postgres_url(user, password, "127.0.0.1", port, user)) == 1


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS[:2])
def test_raw_unencoded_url_fails(postgres, password):
    port, users = postgres
    user = users[password]
    assert connect(postgres_url(user, password, "127.0.0.1", port, user)) == 1
    raw = f"postgresql+asyncpg://{user}:{password}@127.0.0.1:{port}/{user}"
    with pytest.raises(Exception):
        connect(raw)


def test_the_url_the_program_hands_prefect_connects(postgres):
    """The exact env value from the program's API replica, pointed at this server."""
    port, users = postgres
    password = HOSTILE_PASSWORDS[0]
    run = run_program("prod", {"postgres.user": users[password], "postgres.database": users[password]},
                      mocks=StackMocks(password=password))
    env = env_of(replica(run, "api", 1))
    url = env["PREFECT_SERVER_DATABASE_CONNECTION_URL"].replace("@postgres:5432/", f"@127.0.0.1:{port}/")
    assert connect(url) == 1
