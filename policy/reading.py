"""Reading resource props without tripping over unknown or secret values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Iterable, Iterator

from pulumi_policy import PolicyResource, Secret
from pulumi_policy.proxy import UnknownValueError

from program_facts import COMPONENT_LABEL

CONTAINER = "docker:index/container:Container"
# On a swarm the API, services, workers and nginx are services, labelled like containers.
SERVICE = "docker:index/service:Service"
VOLUME = "docker:index/volume:Volume"

# Values that are unknown during preview arrive as these sentinels; the
# pulumi_policy proxies raise UnknownValueError when one is read.
_UNKNOWN_SENTINELS = frozenset({
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # boolean
    "3eeb2bf0-c639-47a8-9e75-3b44932eb421",  # number
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # string
    "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",  # array
    "030794c1-ac77-496b-92df-f27374a8bd58",  # asset
    "e48ece36-62e2-4504-bad9-02848725956a",  # archive
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",  # object
})


class _Marker:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNKNOWN = _Marker("UNKNOWN")
"""A value that cannot be seen (yet): skip the evidence that needs it."""
MISSING = _Marker("MISSING")
"""A key that is not there at all."""


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        value = value.value
    if isinstance(value, str) and value in _UNKNOWN_SENTINELS:
        return UNKNOWN
    return value


def get(mapping: Any, key: str) -> Any:
    """``mapping[key]``, or MISSING, or UNKNOWN; never raises."""
    mapping = _plain(mapping)
    if mapping is UNKNOWN:
        return UNKNOWN
    if not isinstance(mapping, Mapping):
        return MISSING
    try:
        return _plain(mapping[key])
    except KeyError:
        return MISSING
    except UnknownValueError:
        return UNKNOWN


def items(sequence: Any) -> Iterator[Any]:
    """The elements of a list, each possibly UNKNOWN; nothing for a missing list.

    The caller checks ``sequence`` itself for UNKNOWN first when that matters.
    """
    sequence = _plain(sequence)
    if not isinstance(sequence, Sequence) or isinstance(sequence, (str, bytes)):
        return
    for index in range(len(sequence)):
        try:
            yield _plain(sequence[index])
        except UnknownValueError:
            yield UNKNOWN


def labels_of(props: Any) -> dict[str, Any]:
    """A container's labels (a list of {label, value}) as a dict; values may be UNKNOWN."""
    found: dict[str, Any] = {}
    for entry in items(get(props, "labels")):
        key = get(entry, "label")
        if isinstance(key, str):
            value = get(entry, "value")
            found[key] = None if value is MISSING else value
    return found


def component_of(props: Any) -> Any:
    return labels_of(props).get(COMPONENT_LABEL)


def stack_of(urn: str) -> str:
    """The stack name from ``urn:pulumi:<stack>::<project>::<type>::<name>``."""
    head = urn.split("::", 1)[0]
    return head[len("urn:pulumi:"):] if head.startswith("urn:pulumi:") else ""


def is_prod_stack(urn: str) -> bool:
    return stack_of(urn).startswith("prod")


def describe(name: str, props: Any) -> str:
    """How messages name a container or service: the Pulumi resource and the Docker name."""
    docker_name = get(props, "name")
    kind = "service" if get(props, "taskSpec") is not MISSING else "container"
    if isinstance(docker_name, str) and docker_name != name:
        return f"{name} ({kind} {docker_name})"
    return name


def image_of(props: Any) -> Any:
    """A container's image, or a service's (taskSpec.containerSpec.image)."""
    image = get(props, "image")
    if image is MISSING:
        image = get(get(get(props, "taskSpec"), "containerSpec"), "image")
    return image



def containers(resources: Iterable[PolicyResource], component: str | None = None) -> list[PolicyResource]:
    """The stack's containers and Swarm services (of ``component``)."""
    found = [r for r in resources if r.resource_type in (CONTAINER, SERVICE)]
    if component is not None:
        found = [r for r in found if component_of(r.props) == component]
    return found
