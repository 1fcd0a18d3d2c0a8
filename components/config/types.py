"""Constraint types the config groups share: a pinned image, a port, a size, a CPU count.

Each carries its own message, worded like the rest of the config's: what is
allowed and what was given.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from ..images import leading_major, pin_problem, reference_problem

_SIZE_RE = re.compile(r"^[1-9][0-9]*[kmg]$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_CPUS_RE = re.compile(r"^(?:[0-9]+(?:\.[0-9]{1,2})?|\.[0-9]{1,2})$")
_MB = {"k": 1 / 1024, "m": 1, "g": 1024}


def _pinned(image: str) -> str:
    problem = reference_problem(image)
    if problem:
        raise ValueError(f"{problem}, got {image!r}")
    if pin_problem(image):
        raise ValueError(
            f"must be pinned to a version tag or digest (not latest or untagged), got {image!r}"
        )
    return image


def _optional_pinned(image: str) -> str:
    return _pinned(image) if image else image


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be 1-65535, got {value}")
    return value


def _host_port(value: int) -> int:
    if value != 0 and not 1 <= value <= 65535:
        raise ValueError(f"must be 0 (not published) or 1-65535, got {value}")
    return value


def _size(value: str) -> str:
    if not _SIZE_RE.match(value):
        raise ValueError(f"must be a size such as 10m, got {value!r}")
    return value


def _docker_name(value: str) -> str:
    if value and not _NAME_RE.match(value):
        raise ValueError(f"must be lower-case letters, digits, '.', '_' or '-', got {value!r}")
    return value


def _cpus(value: str) -> str:
    if value and (not _CPUS_RE.match(value) or float(value) <= 0):
        raise ValueError(f"must be a number of CPUs such as 0.5 or 2 (empty for no cap), got {value!r}")
    return value


def major_at_least(minimum: int, example: str, product: str, why: str = "") -> AfterValidator:
    """An image whose tag starts with a major version of at least ``minimum``."""
    because = f" ({why})" if why else ""

    def check(image: str) -> str:
        major = leading_major(image)
        if major is None:
            raise ValueError(f"tag must start with the {product} major version (e.g. {example}), got {image!r}")
        if major < minimum:
            raise ValueError(f"{product} major must be >= {minimum}{because}, got {major} in {image!r}")
        return image

    return AfterValidator(check)


def size_in_mb(size: str) -> int:
    """A size such as 512m or 2g in whole MB, as the Docker provider takes memory."""
    return max(1, int(int(size[:-1]) * _MB[size[-1]]))


PinnedImage = Annotated[str, AfterValidator(_pinned)]
OptionalPinnedImage = Annotated[str, AfterValidator(_optional_pinned)]
Port = Annotated[int, AfterValidator(_port)]
HostPort = Annotated[int, AfterValidator(_host_port)]
Size = Annotated[str, BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v), AfterValidator(_size)]
DockerName = Annotated[str, AfterValidator(_docker_name)]
# `pulumi config set --path api.cpuLimit 0.5` stores a number, and the engine
# passes a numeric-looking default inside a group object as one too.
Cpus = Annotated[
    str,
    BeforeValidator(lambda v: format(v, "g") if isinstance(v, (int, float)) and not isinstance(v, bool) else v),
    AfterValidator(_cpus),
]
