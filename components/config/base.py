"""What every config group shares: the model settings and the resource-limit fields."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

PROJECT = "prefect-ha"


class Group(BaseModel):
    """A group of settings, keyed ``<group>.<camelCaseField>`` in Pulumi config."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


# prefect-helm gives every workload requests and limits; Docker has limits only.
def memory_limit(default: str, workload: str):
    return Field(
        default,
        description=f"Memory cap of {workload} (Docker --memory, no swap on top); a change updates the running container.",
    )


# No CPU cap by default: the provider cannot change one in place, so adding a
# cap to running containers would replace them all at once.
def cpu_limit(default: str, workload: str):
    return Field(
        default,
        description=f"CPU cap of {workload} (Docker --cpus, e.g. 0.5); empty means none. Setting or changing it replaces the container.",
    )
