"""Print the log messages of the given flow runs, read through the API, as one JSON object {id: [messages]}."""

import json
import sys

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

with get_client(sync_client=True) as client:
    found = {}
    for run_id in sys.argv[1:]:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200)
        found[run_id] = [log.message for log in logs]
    print(json.dumps(found))
