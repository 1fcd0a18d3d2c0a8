"""Register Prefect's block types once, right after the migration.

API replicas start with block registration switched off: when
several of them register blocks on a fresh database at once they race on the
unique block-type slug and some exit. This runs the same registration the
server's startup would, in the one-shot migration container.
"""

import asyncio

from prefect.server.database import provide_database_interface
from prefect.server.models.block_registration import run_block_auto_registration


async def main() -> None:
    db = provide_database_interface()
    session = await db.session()
    async with session:
        await run_block_auto_registration(session=session)
    print("prefect-ha: block types registered")


if __name__ == "__main__":
    asyncio.run(main())
