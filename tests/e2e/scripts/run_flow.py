"""Run a small flow in this process against PREFECT_API_URL (with whatever credentials and CA
the environment gives) and print, as JSON, what the API recorded for it."""

import json

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client


@flow(name="secure-edge-check")
def secure_edge_check() -> int:
    get_run_logger().info("running through the secure edge")
    return 42


state = secure_edge_check(return_state=True)
with get_client(sync_client=True) as client:
    run = client.read_flow_run(state.state_details.flow_run_id)
print(json.dumps({"id": str(run.id), "name": run.name, "state": run.state.type.value,
                  "created": run.created.isoformat(), "result": state.result()}))
