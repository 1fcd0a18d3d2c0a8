"""Changes that cannot avoid downtime, said in the preview.

Postgres, Redis and nginx keep fixed names (their clients and the published port
find them by it), so a change of an input that replaces them is a stop-then-start:
the one thing a rolling update cannot hide. Each of them publishes a fingerprint
(a short digest per replacing input, nothing secret); the stack exports them,
reads the previous deployment's back through a StackReference to itself, and
warns for every container whose fingerprint moved, before anything happens.
"""

from __future__ import annotations

from typing import Any, Mapping

import pulumi
OUTPUT = "downtime_fingerprints"
# What a replacement costs while it happens, per fixed container.
CONSEQUENCES = {
    "postgres": "Postgres will be replaced: Prefect's API answers 503 and the background services stop "
                "until it is healthy again (the data volume is kept)",
    "redis": "Redis will be replaced: events, logs and the services' coordination pause until it is back "
             "(its AOF volume is kept)",
    "nginx": "nginx will be replaced: the published port is closed until the new nginx is healthy",
}


def warnings(previous: Mapping[str, Mapping[str, str]] | None, current: Mapping[str, Mapping[str, str]]) -> list[str]:
    """One sentence per fixed container whose replacing inputs changed since ``previous``
    (nothing on a first deployment)."""
    found = []
    for component, now in current.items():
        before = (previous or {}).get(component)
        if not before:
            continue
        changed = sorted(key for key in {*before, *now} if before.get(key) != now.get(key))
        if changed:
            found.append(f"{CONSEQUENCES[component]}; changed: {', '.join(changed)}.")
    return found


def warn_about_replacements(
    name: str, current: Mapping[str, pulumi.Output[dict[str, str]]], parent: pulumi.Resource
) -> pulumi.Output[dict[str, dict[str, str]]]:
    """Warn (in preview and up) for each fixed container this deployment replaces;
    returns the fingerprints to export under OUTPUT for the next deployment."""
    own = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    previous = pulumi.StackReference(f"{name}-previous", stack_name=own, opts=pulumi.ResourceOptions(parent=parent))
    exported = pulumi.Output.all(**current)

    def warn(values: list) -> None:
        for message in warnings(values[0], values[1]):
            pulumi.log.warn(message)

    pulumi.Output.all(previous.get_output(OUTPUT), exported).apply(warn)
    return exported
