"""prefect-ha's policies, as importable code: ``POLICIES`` is what ``__main__.py`` serves.

Every policy is mandatory. Resource policies (resource_policies.py) see one
resource's inputs; stack policies (stack_policies.py) see every resource's
outputs with its dependencies, which is what the checks that relate two
resources (a container and its volume, a replica and the migration it must
wait for, nginx and the API replicas behind it) need.

During ``pulumi preview`` values that depend on resources not created yet are
unknown, and secret values (the containers' env lists) may be among them. No
check reads an unknown value (reading.py): it skips what it cannot see and
judges the rest, so a preview never fails on a policy error instead of a real
violation.

Names the program defines (labels, modes, ports, the image-reference parser)
come from program_facts.py, generated from ``components`` (the pack ships
alone, so it cannot import the program; the suite fails when the copy is stale).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

from program_facts import image_tag, pin_problem  # noqa: F401 - the pack's API for its tests
from reading import *  # noqa: F401,F403
from resource_policies import *  # noqa: F401,F403
from resource_policies import images_pinned, no_data_ports_in_prod, no_privileged_containers
from stack_policies import *  # noqa: F401,F403
from stack_policies import postgres_volume_retained, prod_tls_and_auth, replicas_wait_for_migration

PACK_NAME = "prefect-ha-policies"

MANDATORY = EnforcementLevel.MANDATORY


@dataclass(frozen=True)
class _Spec:
    name: str
    description: str
    validate: Callable[..., None]
    stack: bool = False


_SPECS = (
    _Spec("images-pinned",
          "Every container image is pinned to a version tag (not latest or *-latest) or an @sha256: digest.",
          images_pinned),
    _Spec("no-privileged-containers",
          "No container is privileged or adds the ALL or SYS_ADMIN capabilities.",
          no_privileged_containers),
    _Spec("postgres-volume-retained",
          "The volume holding the Postgres data directory survives a delete (retain_on_delete or protect).",
          postgres_volume_retained, stack=True),
    _Spec("prod-tls-and-auth",
          "In prod stacks nginx serves TLS and the API requires credentials.",
          prod_tls_and_auth, stack=True),
    _Spec("no-data-ports-in-prod",
          "In prod stacks Postgres and Redis publish no host ports.",
          no_data_ports_in_prod),
    _Spec("replicas-wait-for-migration",
          "Every API replica and background-services container depends on the migration container.",
          replicas_wait_for_migration, stack=True),
)


def _policy(spec: _Spec) -> ResourceValidationPolicy | StackValidationPolicy:
    if spec.stack:
        return StackValidationPolicy(
            name=spec.name, description=spec.description, validate=spec.validate, enforcement_level=MANDATORY)
    return ResourceValidationPolicy(
        name=spec.name, description=spec.description, validate=spec.validate, enforcement_level=MANDATORY)


POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [_policy(spec) for spec in _SPECS]
