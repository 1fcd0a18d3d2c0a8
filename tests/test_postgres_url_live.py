"""The program's percent-encoded database URL against a real Postgres, as Prefect connects.

Debian's postgresql runs in a temporary data directory started here; its role
has a hostile password. SQLAlchemy + asyncpg is the path Prefect takes.
"""

import asyncio
import os
import re
import subprocess
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from components.prefect_settings import DATABASE_URL
from components.urls import postgres_url
from harness import REPO, StackMocks, run_program
from postgres_support import throwaway_postgres
from support import env_of, replica

HOSTILE_PASSWORDS = [
    "p@ss:/?#%& wörd+=!$*",
    "@@@:::///???###",
    "%41%2F+ +%",
    "ünï©ødé 密码 🙂",
]


@pytest.fixture(scope="module")
def postgres():
    """A throwaway Postgres on 127.0.0.1 with one role per hostile password."""
    with throwaway_postgres() as server:
        users = {}
        for index, password in enumerate(HOSTILE_PASSWORDS):
            user = f"prefect{index}"
            # psql quotes :'pw' itself, so the password never meets a shell or SQL literal here.
            server.psql(f"CREATE ROLE {user} LOGIN PASSWORD :'pw';\nCREATE DATABASE {user} OWNER {user};\n",
                        f"pw={password}")
            users[password] = user
        yield server.port, users


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


CHECK_SCRIPT = REPO / "components" / "scripts" / "check_postgres_version.py"


def check_version(url: str, minimum: int | None = None) -> subprocess.CompletedProcess:
    """The migration job's version check, run as the job runs it (the URL in the setting it names)."""
    source = CHECK_SCRIPT.read_text()
    if minimum is not None:  # a server "older" than the floor, without an old Postgres at hand
        source = source.replace("MINIMUM = 140009", f"MINIMUM = {minimum}")
    return subprocess.run([sys.executable, "-c", source, DATABASE_URL], env={**os.environ, DATABASE_URL: url},
                          capture_output=True, text=True, timeout=60)


def test_the_version_check_passes_postgres_15_through_the_encoded_url(postgres):
    port, users = postgres
    password = HOSTILE_PASSWORDS[0]
    result = check_version(postgres_url(users[password], password, "127.0.0.1", port, users[password]))
    assert result.returncode == 0, result.stderr
    assert re.search(r"Postgres 1[5-9]\.\d+ \(>= 14\.9\)", result.stdout), result.stdout
    assert password not in result.stdout + result.stderr


def test_the_version_check_stops_the_migration_on_an_older_server(postgres):
    port, users = postgres
    password = HOSTILE_PASSWORDS[0]
    result = check_version(postgres_url(users[password], password, "127.0.0.1", port, users[password]),
                           minimum=990000)
    assert result.returncode == 4
    assert "older than 14.9" in result.stderr and "nothing was migrated" in result.stderr
