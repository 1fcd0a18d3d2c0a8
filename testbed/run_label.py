"""How a test run marks what it makes on the Docker engine: one place for both sides of the test bed.

The tests (tests/e2e/testbed.py and the modules using it, bench/bench.py) put a run id in
RUN_ENV for the engine, label the containers they start themselves with RUN_LABEL, and sweep
by it. The docker provider double (testbed/providers/docker_provider.py, run by the engine as
a plugin process) reads RUN_ENV and stamps RUN_LABEL on every network, volume and container
the program makes. Plain Python, no imports: the plugin process loads it by its path.
"""

RUN_LABEL = "prefect-ha-test.run"
RUN_ENV = "PREFECT_HA_TEST_RUN"


def run_labels(run_id: str) -> dict[str, str]:
    """Labels of an object made for the run `run_id`."""
    return {RUN_LABEL: run_id}


def run_selector(run_id: str) -> dict[str, str]:
    """Docker SDK filters for what the run `run_id` made."""
    return {"label": f"{RUN_LABEL}={run_id}"}
