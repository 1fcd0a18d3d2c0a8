"""Constraint types the config groups share: a pinned image, a port, a size, a CPU count.

Each carries its own message, worded like the rest of the config's: what is
allowed and what was given.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Callable

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


def _size(what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not _SIZE_RE.match(value):
            raise ValueError(f"must be {what} such as 10m, got {value!r}")
        return value

    return check


def _memory(value: str) -> str:
    if size_in_mb(value) < DOCKER_MIN_MEMORY_MB:
        raise ValueError(f"must be at least {DOCKER_MIN_MEMORY_MB}m (Docker's smallest memory cap), got {value!r}")
    return value


def _docker_name(what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value and not _NAME_RE.match(value):
            raise ValueError(f"must be {what}, got {value!r}")
        return value

    return check


def checked(allowed: Callable[[Any], bool], message: str) -> AfterValidator:
    """A constraint with its own wording; ``message`` takes the value as ``{}``."""

    def check(value: Any) -> Any:
        if not allowed(value):
            raise ValueError(message.format(value))
        return value

    return AfterValidator(check)


def matching(pattern: str, message: str) -> AfterValidator:
    """Text that matches ``pattern`` whole; ``message`` takes the value as ``{!r}``."""
    compiled = re.compile(pattern)
    return checked(lambda value: compiled.fullmatch(value) is not None, message)


def one_of(allowed: tuple[str, ...], normalize: Callable[[str], str] = str) -> BeforeValidator:
    """Text normalised (e.g. upper-cased) then checked against ``allowed``; the
    message shows what was given, not the normalised form."""

    def check(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if normalize(value) not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")
        return normalize(value)

    return BeforeValidator(check)


def _cpus(value: str) -> str:
    if value and (not _CPUS_RE.match(value) or float(value) <= 0):
        raise ValueError(f"must be a number of CPUs such as 0.5 or 2 (empty for no cap), got {value!r}")
    return value


def major_at_least(minimum: int, example: str, product: str, why: str = "") -> AfterValidator:
    """An image whose tag starts with a major version of at least ``minimum``."""
    wanted = f"{product} >= {minimum}" + (f" ({why})" if why else "")

    def check(image: str) -> str:
        major = leading_major(image)
        if major is None:
            raise ValueError(f"must be {wanted} with the major version leading the tag (e.g. {example}), got {image!r}")
        if major < minimum:
            raise ValueError(f"must be {wanted}, got {major} in {image!r}")
        return image

    return AfterValidator(check)


def size_in_mb(size: str) -> int:
    """A size such as 512m or 2g in whole MB (rounded up), as the Docker provider takes memory."""
    return math.ceil(int(size[:-1]) * _MB[size[-1]])


DOCKER_MIN_MEMORY_MB = 6


PinnedImage = Annotated[str, AfterValidator(_pinned)]
OptionalPinnedImage = Annotated[str, AfterValidator(_optional_pinned)]
Port = Annotated[int, AfterValidator(_port)]
HostPort = Annotated[int, AfterValidator(_host_port)]
_lower = BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)
Size = Annotated[str, _lower, AfterValidator(_size("a size"))]
NginxSize = Annotated[str, _lower, AfterValidator(_size("an nginx size"))]
MemorySize = Annotated[str, _lower, AfterValidator(_size("a size")), AfterValidator(_memory)]
DockerName = Annotated[str, AfterValidator(_docker_name("lower-case letters, digits, '.', '_' or '-'"))]
DockerNetwork = Annotated[str, AfterValidator(_docker_name("a Docker network name"))]
# `pulumi config set --path api.cpuLimit 0.5` stores a number, and the engine
# passes a numeric-looking default inside a group object as one too.
Cpus = Annotated[
    str,
    BeforeValidator(lambda v: str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v),
    AfterValidator(_cpus),
]
