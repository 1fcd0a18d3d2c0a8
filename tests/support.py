"""What the tests look things up by in a recorded run, spelled once.

- Type tokens of the provider resources the program registers. A component's
  token is its class's ``TYPE`` (``from components.postgres import Postgres;
  Postgres.TYPE``); tls_mocks.TYPES names the pulumi-tls ones.
- Containers by the component label the program puts on each of them
  (``prefect-ha.component``: api, services, migration, postgres, redis, proxy,
  worker, work-pool), never by a container name's suffix.
- A container's env list as a dict.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable

from components.docker_common import COMPONENT_LABEL, GENERATION_BYTES, LABEL_PREFIX

if TYPE_CHECKING:
    from harness import Registration, Run

# --- type tokens ---------------------------------------------------------------------------------

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
RANDOM_ID = "random:index/randomId:RandomId"
STACK = "pulumi:pulumi:Stack"

# --- labels --------------------------------------------------------------------------------------

REPLICA_LABEL = f"{LABEL_PREFIX}.replica"


def labels_of(reg: Registration) -> dict[str, str]:
    """A container registration's labels as a dict."""
    return {item["label"]: item.get("value") for item in reg.inputs.get("labels") or []}


def component_of(reg: Registration) -> str | None:
    return labels_of(reg).get(COMPONENT_LABEL)


# --- names ---------------------------------------------------------------------------------------

ROLLING_DIGEST = re.compile(rf"-[0-9a-f]{{{2 * GENERATION_BYTES}}}$")


def without_digest(name: str) -> str:
    """A rolling container's name without its generation (prefect-ha-dev-api-1)."""
    return ROLLING_DIGEST.sub("", name)


def digest_of(name: str) -> str | None:
    found = ROLLING_DIGEST.search(name)
    return found.group(0)[1:] if found else None


# --- containers ----------------------------------------------------------------------------------


def _registrations(source: Run | Iterable[Registration]) -> Iterable[Registration]:
    return getattr(source, "registrations", source)


def containers(source: Run | Iterable[Registration], component: str | None = None) -> list[Registration]:
    """The containers of ``component`` (every container if None), in registration order.

    ``source`` is a run or a list of registrations (a mutated copy, say)."""
    return [
        r for r in _registrations(source)
        if r.type == CONTAINER and (component is None or component_of(r) == component)
    ]


def container(source: Run | Iterable[Registration], component: str) -> Registration:
    """The one container of ``component``."""
    found = containers(source, component)
    assert len(found) == 1, f"expected one {component} container, got {[r.name for r in found]}"
    return found[0]


def replica(source: Run | Iterable[Registration], component: str, index: int) -> Registration:
    """Replica ``index`` (1-based, as labelled) of a replicated component: api, services, worker."""
    found = [r for r in containers(source, component) if labels_of(r).get(REPLICA_LABEL) == str(index)]
    assert len(found) == 1, f"expected one {component} replica {index}, got {[r.name for r in found]}"
    return found[0]


def replicas(source: Run | Iterable[Registration], component: str) -> list[Registration]:
    """A replicated component's containers ordered by their replica label."""
    return sorted(containers(source, component), key=lambda r: int(labels_of(r)[REPLICA_LABEL]))


def assert_counts(source: Run | Iterable[Registration], expected: dict[str, int]) -> None:
    """Exactly ``expected[component]`` containers of each component named."""
    found = {component: len(containers(source, component)) for component in expected}
    assert found == expected, f"containers per component: {found}, expected {expected}"


# --- env -----------------------------------------------------------------------------------------


def env_of(reg: Registration) -> dict[str, str]:
    """A container registration's env list (``KEY=value`` entries) as a dict."""
    return dict(entry.split("=", 1) for entry in reg.inputs.get("envs") or [])


# --- resource limits ---------------------------------------------------------------------------

# component label -> the config group whose memoryLimit/cpuLimit its containers take
LIMITS_GROUP = {
    "postgres": "postgres", "redis": "redis", "migration": "migration", "api": "api",
    "services": "services", "proxy": "proxy", "edge-config": "proxy", "worker": "worker", "work-pool": "worker",
    "postgres-credentials": "postgres", "backup": "backup",
}
