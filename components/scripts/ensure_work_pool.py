"""Create or update the stack's Docker work pool, once, before any worker starts.

Run in the one-shot work-pool container with the worker image (it needs
prefect-docker for the pool type's default base job template). The pool spec
arrives as JSON in the environment; only the job variables named there get
their defaults set, so edits a user made to other variables survive.
Exits non-zero with one line on stderr when the pool cannot be set up.
"""

import asyncio
import json
import os
import sys

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect_docker.worker import DockerWorker

SPEC_ENV = "WORK_POOL_SPEC"


def with_defaults(template: dict, job_defaults: dict) -> dict:
    properties = template["variables"]["properties"]
    for key, value in job_defaults.items():
        if key not in properties:
            raise SystemExit(f"prefect-ha: the docker job template has no variable {key!r}")
        properties[key]["default"] = value
    return template


async def main() -> None:
    spec = json.loads(os.environ[SPEC_ENV])
    name, limit = spec["name"], spec["concurrency_limit"]
    async with get_client() as client:
        try:
            pool = await client.read_work_pool(name)
        except ObjectNotFound:
            template = with_defaults(DockerWorker.get_default_base_job_template(), spec["job_defaults"])
            try:
                await client.create_work_pool(
                    WorkPoolCreate(name=name, type=DockerWorker.type, base_job_template=template,
                                   concurrency_limit=limit)
                )
                print(f"prefect-ha: created work pool {name!r}")
                return
            except ObjectAlreadyExists:  # another stack or a user made it meanwhile
                pool = await client.read_work_pool(name)
        if pool.type != DockerWorker.type:
            raise SystemExit(
                f"prefect-ha: work pool {name!r} exists with type {pool.type!r}, not {DockerWorker.type!r}; "
                "choose another worker.pool or delete that pool"
            )
        template = pool.base_job_template or DockerWorker.get_default_base_job_template()
        await client.update_work_pool(
            name, WorkPoolUpdate(base_job_template=with_defaults(template, spec["job_defaults"]),
                                 concurrency_limit=limit)
        )
        print(f"prefect-ha: updated work pool {name!r}")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except SystemExit:
        raise
    except Exception as err:  # one line for `docker logs`, no traceback wall
        print(f"prefect-ha: work pool set-up failed: {err!r}", file=sys.stderr)
        sys.exit(1)
