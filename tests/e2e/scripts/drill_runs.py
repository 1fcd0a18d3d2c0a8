"""Print every run of the flow `restore-drill` with its state and log messages, as one JSON object.

{run id: {"name", "state", "state_name", "parameters", "logs": [messages, sorted]}}
"""

import json

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, LogFilter, LogFilterFlowRunId

with get_client(sync_client=True) as client:
    runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["restore-drill"])), limit=200)
    found = {}
    for run in runs:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])), limit=200)
        found[str(run.id)] = {
            "name": run.name,
            "state": run.state.type.value if run.state else None,
            "state_name": run.state.name if run.state else None,
            "parameters": run.parameters,
            "logs": sorted(log.message for log in logs),
        }
print(json.dumps(found, sort_keys=True))
