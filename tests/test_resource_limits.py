"""Every workload's memory and CPU caps, from its config group, under mocks for both stacks."""

import pytest

from components.config import load_paths, size_in_mb
from harness import run_program
from support import LIMITS_GROUP, component_of


def test_every_container_has_its_groups_memory_cap_without_swap_and_its_cpu_cap(stack_run):
    stack, run = stack_run
    config = load_paths({})  # both shipped stacks keep the declared limits
    seen = set()
    for name, reg in run.containers().items():
        component = component_of(reg)
        group = getattr(config, LIMITS_GROUP[component])
        seen.add(component)
        assert reg.inputs["memory"] == size_in_mb(group.memory_limit), name
        assert reg.inputs["memorySwap"] == reg.inputs["memory"], f"{name}: swap beyond the cap"
        assert reg.inputs.get("cpus") == (group.cpu_limit or None), name
    expected = {"postgres", "redis", "migration", "api", "services", "proxy", "edge-config", "postgres-credentials"}
    if stack == "dev":
        expected |= {"worker", "work-pool"}
    else:
        expected |= {"backup"}  # backups are on in prod
    assert seen == expected


def test_a_groups_limits_reach_only_its_own_containers():
    run = run_program("dev", {"api.memoryLimit": "2g", "api.cpuLimit": "0.5"})
    assert run.error is None, run.error
    by_component = {}
    for reg in run.containers().values():
        by_component.setdefault(component_of(reg), []).append(reg.inputs)
    assert [(i["memory"], i["cpus"]) for i in by_component["api"]] == [(2048, "0.5")]
    assert by_component["redis"][0].get("cpus") is None  # no CPU cap by default
    assert by_component["services"][0]["memory"] == 1024


@pytest.mark.parametrize("given, stored", [(1, "1"), (0.5, "0.5"), ("1.5", "1.5"), (2.0, "2.0")])
def test_cpu_caps_set_as_numbers_become_docker_cpus_strings(given, stored):
    # `pulumi config set --path api.cpuLimit 0.5` stores a number, not text.
    assert load_paths({"api.cpuLimit": given}).api.cpu_limit == stored


@pytest.mark.parametrize("size, mb", [("512m", 512), ("1g", 1024), ("2G", 2048), ("8192k", 8), ("6500k", 7)])
def test_sizes_convert_to_the_providers_megabytes(size, mb):
    assert size_in_mb(load_paths({"api.memoryLimit": size}).api.memory_limit) == mb


@pytest.mark.parametrize("key, value, message", [
    ("api.memoryLimit", "1t", "api.memoryLimit must be a size such as 10m, got '1t'"),
    ("api.cpuLimit", "0", "api.cpuLimit must be a number of CPUs such as 0.5 or 2 (empty for no cap), got '0'"),
    ("api.memoryLimit", "4m", "api.memoryLimit must be at least 6m (Docker's smallest memory cap), got '4m'"),
    ("worker.cpuLimit", "two", "worker.cpuLimit must be a number of CPUs"),
])
def test_bad_limits_are_refused_naming_the_key(key, value, message):
    from components.config import ConfigError

    with pytest.raises(ConfigError) as err:
        load_paths({key: value})
    assert any(message in p for p in err.value.problems), err.value.problems
