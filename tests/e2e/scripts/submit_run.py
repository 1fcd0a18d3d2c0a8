"""Submit one run of deployment <flow/deployment>, scheduled <delay> seconds from now; print its id as JSON.

Usage: submit_run.py <flow/deployment> <delay-seconds>
"""

import json
import sys
from datetime import datetime, timedelta, timezone

from prefect.deployments import run_deployment

name, delay = sys.argv[1], float(sys.argv[2])
run = run_deployment(name, timeout=0, scheduled_time=datetime.now(timezone.utc) + timedelta(seconds=delay))
print(json.dumps({"id": str(run.id)}))
