"""Memory and CPU caps reach Docker as configured, and a memory change is applied
to the running containers: same container, new cap, no replacement."""

import pytest
from pulumi import automation as auto

from components.config import load_paths, size_in_mb
from support import LIMITS_GROUP
from testbed import COMPONENT_LABEL, deploy_or_fail, tear_down

pytestmark = pytest.mark.timeout(900)
MIB = 1024 * 1024
OVERRIDES = {"api.cpuLimit": "0.5", "api.memoryLimit": "640m"}


@pytest.fixture(scope="module")
def limited(docker_client):
    deployment = deploy_or_fail(docker_client, "e2elimits", OVERRIDES)
    yield deployment
    tear_down(deployment)


def host_configs(deployment, component: str | None = None) -> dict[str, tuple[str, dict]]:
    """Container ID -> (component, HostConfig) of the program's containers in this run."""
    return {c.id: (c.labels[COMPONENT_LABEL], c.attrs["HostConfig"])
            for c in deployment.containers(component) if COMPONENT_LABEL in c.labels}


def test_every_container_runs_with_its_groups_caps(limited):
    config = load_paths({**OVERRIDES})  # the prod stack file sets no limits of its own
    seen = set()
    for cid, (component, host) in host_configs(limited).items():
        group = getattr(config, LIMITS_GROUP[component])
        seen.add(component)
        assert host["Memory"] == size_in_mb(group.memory_limit) * MIB, component
        assert host["MemorySwap"] == host["Memory"], f"{component}: swap beyond the memory cap"
        cpus = float(group.cpu_limit) if group.cpu_limit else 0
        assert host["NanoCpus"] == round(cpus * 1e9), component
    assert seen == set(LIMITS_GROUP) - {"worker", "work-pool"}  # the prod stack runs no worker


def test_a_memory_change_updates_the_replicas_in_place(limited):
    before = host_configs(limited, "api")
    assert len(before) == 3 and {h["Memory"] for _, h in before.values()} == {640 * MIB}
    limited.stack.stack.set_config("api.memoryLimit", auto.ConfigValue("768m"), path=True)
    result = limited.stack.up()
    after = host_configs(limited, "api")
    assert set(after) == set(before), "the replicas were replaced, not updated"
    assert {h["Memory"] for _, h in after.values()} == {768 * MIB}
    assert {h["MemorySwap"] for _, h in after.values()} == {768 * MIB}
    assert result.summary.resource_changes.get("update") == 3, result.summary.resource_changes
    assert "replace" not in result.summary.resource_changes, result.summary.resource_changes
    limited.stack.preview(expect_no_changes=True)
