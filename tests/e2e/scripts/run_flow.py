"""Run a small flow in this process against PREFECT_API_URL and print, as JSON, the state the API recorded."""

import json

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client


@flow(name="secure-edge-check")
def secure_edge_check() -> int:
    get_run_logger().info("running through the secure edge")
    return 42


state = secure_edge_check(return_state=True)
with get_client(sync_client=True) as client:
    recorded = client.read_flow_run(state.state_details.flow_run_id)
print(json.dumps({"result": state.result(), "state": recorded.state.type.value}))
