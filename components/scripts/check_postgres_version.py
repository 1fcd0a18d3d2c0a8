"""Run by the migration job before any DDL: Prefect needs Postgres 14.9 or newer.

The database URL's setting name comes as the first argument (prefect_settings
spells it); the URL itself is only read from the environment, never printed.
Exit 4 when the server is older, so the migration job's exit code stops `pulumi up`.
"""

import asyncio
import os
import sys

import asyncpg

MINIMUM = 140009  # server_version_num of 14.9
TOO_OLD = 4


async def server_version(url: str) -> int:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=30)
    try:
        return int(await connection.fetchval("SHOW server_version_num"))
    finally:
        await connection.close()


def main() -> int:
    version = asyncio.run(server_version(os.environ[sys.argv[1]]))
    shown = f"{version // 10000}.{version % 10000}"
    if version < MINIMUM:
        print(f"prefect-ha: Postgres {shown} is older than 14.9, which Prefect needs; nothing was migrated", file=sys.stderr)
        return TOO_OLD
    print(f"prefect-ha: Postgres {shown} (>= 14.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
