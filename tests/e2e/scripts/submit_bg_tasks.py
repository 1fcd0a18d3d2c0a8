"""Submit N background tasks with .delay() and wait (bounded) for their task runs to finish.

Prints JSON: how many completed, and every final state seen.
"""

import json
import sys
import time

from prefect.client.orchestration import get_client

sys.path.insert(0, "/e2e")
from bg_tasks import double  # noqa: E402

count, timeout = int(sys.argv[1]), float(sys.argv[2])
started = time.monotonic()
futures = [double.delay(i) for i in range(count)]
states: dict[str, str] = {}
with get_client(sync_client=True) as client:
    while time.monotonic() - started < timeout:
        states = {str(f.task_run_id): client.read_task_run(f.task_run_id).state.type.value for f in futures}
        if all(s in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for s in states.values()):
            break
        time.sleep(0.5)
print(json.dumps({
    "completed": sum(s == "COMPLETED" for s in states.values()),
    "total": count,
    "states": sorted(set(states.values())),
    "seconds": round(time.monotonic() - started, 2),
}))
