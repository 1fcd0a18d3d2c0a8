"""Wait (bounded) until the given flow runs are final; print their states and end times as JSON.

Usage: wait_runs.py <timeout-seconds> <flow-run-id> [...]
"""

import json
import sys
import time

from prefect.client.orchestration import get_client

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
timeout, ids = float(sys.argv[1]), sys.argv[2:]
deadline = time.monotonic() + timeout
with get_client(sync_client=True) as client:
    while True:
        runs = [client.read_flow_run(run_id) for run_id in ids]
        states = [run.state.type.value if run.state else None for run in runs]
        if all(state in FINAL for state in states) or time.monotonic() > deadline:
            break
        time.sleep(1)
print(json.dumps({str(run.id): {"state": state, "end": run.end_time.isoformat() if run.end_time else None}
                  for run, state in zip(runs, states)}))
