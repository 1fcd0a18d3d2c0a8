"""Submit N runs of a deployment at once, wait (bounded) until all are final; print one JSON line.

Usage: run_many.py <flow/deployment> <n> <timeout-seconds>
Each run gets parameter n=<index>, so its log line can be found afterwards.
"""

import asyncio
import json
import sys
import time

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


async def main(name: str, count: int, timeout: float) -> None:
    started = time.monotonic()
    runs = await asyncio.gather(*[
        run_deployment(name, parameters={"n": i}, timeout=0) for i in range(count)
    ])
    submitted = time.monotonic() - started
    ids = {str(run.id): i for i, run in enumerate(runs)}
    states: dict[str, str | None] = {}
    finished: dict[str, float] = {}
    infrastructure: dict[str, str | None] = {}
    async with get_client() as client:
        while time.monotonic() - started < timeout:
            for run_id in ids:
                if run_id in finished:
                    continue
                run = await client.read_flow_run(run_id)
                states[run_id] = run.state.type.value if run.state else None
                # prefect-docker records "<engine url>:<container id>"
                infrastructure[run_id] = run.infrastructure_pid
                if states[run_id] in FINAL:
                    finished[run_id] = time.monotonic() - started
            if len(finished) == len(ids):
                break
            await asyncio.sleep(1)
    print(json.dumps({
        "submitted_s": round(submitted, 2),
        "runs": [{"id": run_id, "n": n, "state": states.get(run_id), "final_after_s": finished.get(run_id),
                  "container": (infrastructure.get(run_id) or "").rsplit(":", 1)[-1] or None}
                 for run_id, n in ids.items()],
    }))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
