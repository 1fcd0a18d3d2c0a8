"""Changes that cannot avoid downtime, said in the preview.

Postgres, Redis and nginx keep fixed names (their clients and the published port
find them by it), so a change of an input that replaces them is a stop-then-start:
the one thing a rolling update cannot hide. Each of them publishes a fingerprint
(a short digest per replacing input, nothing secret) and the stack exports them:
a preview shows the output's diff, naming the container and the inputs that
replace it, before anything happens. (A warning from the program would need the
previous deployment's outputs; reading them through a StackReference to the stack
itself raced with the engine writing that same checkpoint: "failed to load
checkpoint: EOF" on a first `up`.)
"""

from __future__ import annotations

from typing import Mapping

import pulumi

OUTPUT = "downtime_fingerprints"


def exported(current: Mapping[str, pulumi.Output[dict[str, str]]]) -> pulumi.Output[dict[str, dict[str, str]]]:
    """The fingerprints to export under OUTPUT."""
    return pulumi.Output.all(**current)
