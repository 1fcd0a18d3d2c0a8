"""The flow the end-to-end tests deploy to a Docker work pool (baked into prefect-ha-test/flows:1).

Entrypoint /opt/prefect/flows.py:hello. No network, no randomness: the log line carries the run's
parameter, so a test can find each run's line through the API.
"""

from prefect import flow, get_run_logger


@flow
def hello(n: int = 0) -> str:
    message = f"hello from flow run number {n}"
    get_run_logger().info(message)
    return message
