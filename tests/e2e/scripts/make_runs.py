"""Run the flow `restore-drill` N times in this process against PREFECT_API_URL; print the run ids as JSON.

Usage: make_runs.py <n>
Run n logs `restore drill run number n`; every fifth run (n = 4, 9, ...) fails on purpose,
so the runs come back with more than one final state.
"""

import json
import sys

from prefect import flow, get_run_logger


@flow(name="restore-drill")
def drill(n: int) -> int:
    get_run_logger().info(f"restore drill run number {n}")
    if n % 5 == 4:
        raise ValueError(f"restore drill run {n} fails on purpose")
    return n


ids = []
for n in range(int(sys.argv[1])):
    state = drill(n, return_state=True)
    ids.append(str(state.state_details.flow_run_id))
print(json.dumps(ids))
