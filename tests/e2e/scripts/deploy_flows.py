"""Create the work pool and the deployments through the API (PREFECT_API_URL), print their ids as JSON."""

import json

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound

POOL = "e2e-pool"


def ensure_pool() -> None:
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(POOL)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))


def main() -> None:
    ensure_pool()
    hello = flow.from_source(source="/e2e", entrypoint="flows.py:hello")
    tick = flow.from_source(source="/e2e", entrypoint="flows.py:tick")
    ids = {
        "hello": str(hello.deploy(name="hello", work_pool_name=POOL, print_next_steps=False)),
        "tick": str(tick.deploy(name="every-minute", work_pool_name=POOL, interval=60, print_next_steps=False)),
    }
    print(json.dumps(ids))


if __name__ == "__main__":
    main()
