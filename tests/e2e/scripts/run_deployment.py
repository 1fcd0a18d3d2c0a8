"""Start a run of deployment <flow/deployment> and wait (bounded) for a final state; print it as JSON."""

import json
import sys

from prefect.deployments import run_deployment

name, timeout = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 180
run = run_deployment(name, timeout=timeout, poll_interval=1)
print(json.dumps({"id": str(run.id), "state": run.state.type.value if run.state else None}))
