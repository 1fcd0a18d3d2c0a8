"""Print every flow run the API knows, as JSON lines: id, deployment, state, auto_scheduled, created."""

import json

from prefect.client.orchestration import get_client

with get_client(sync_client=True) as client:
    offset = 0
    while True:
        runs = client.read_flow_runs(limit=200, offset=offset)
        for run in runs:
            print(json.dumps({
                "id": str(run.id),
                "deployment_id": str(run.deployment_id) if run.deployment_id else None,
                "state": run.state.type.value if run.state else None,
                "auto_scheduled": run.auto_scheduled,
                "created": run.created.isoformat() if run.created else None,
            }))
        if len(runs) < 200:
            break
        offset += 200
