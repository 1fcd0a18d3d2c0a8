"""Building the model from the stack's config as the engine hands it over, with
one clear line per problem."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any, Mapping

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from .base import PROJECT
from .keys import group_names, is_secret
from .stack import StackConfig


class ConfigError(Exception):
    """Bad stack configuration: one line per problem, each naming the key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _constraint_message(error: Mapping[str, Any]) -> str | None:
    """pydantic's own constraints (ge, le, Literal) worded like the custom checks."""
    kind, ctx, given = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}, got {given}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']}, got {given}"
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"must be one of {', '.join(allowed)}, got {given!r}"
    return None


def _format_error(error: Mapping[str, Any]) -> list[str]:
    loc = ".".join(to_camel(str(part)) for part in error["loc"] if part != "__root__")
    message = _constraint_message(error) or error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return [f"{loc} is not a known setting of {PROJECT}; see Pulumi.yaml for the keys"]
    if not loc:
        return message.split("; ")
    if error["type"].endswith("_parsing") or error["type"].endswith("_type"):
        return [f"{loc} {message.lower()}, got {error.get('input')!r}"]
    return [f"{loc} {message}"]


def _set_command(key: str, value: Any) -> str:
    if is_secret(key):
        return f"pulumi config set --secret --path {key} <value>"  # never echo a secret
    text = value if isinstance(value, str) else json.dumps(value)
    return f"pulumi config set --path {key} {shlex.quote(text)}"


def load_config(raw: Mapping[str, Any]) -> StackConfig:
    """Build the model from the stack's config as the engine hands it over.

    Pulumi.yaml declares dotted keys (``api.replicas``), which the engine
    treats as paths into structured config: the program receives one object
    per group (``api`` = its declared defaults merged with the values set by
    ``pulumi config set --path api.replicas 3``), as JSON text or a mapping,
    and plain top-level keys (``namePrefix``) as text. A key set without
    ``--path`` arrives literally as ``api.replicas``: neither merged nor
    type-checked by the CLI, so it is refused here with the command to use.

    Raises ConfigError listing every problem, each naming the key, the value
    and what is allowed.
    """
    groups = group_names()
    problems: list[str] = []
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if "." in key:
            problems.append(
                f"{key} is set as a literal key (without --path), which Pulumi neither type-checks nor merges "
                f"into the {key.split('.', 1)[0]!r} group; remove it with `pulumi config rm {key}` and set it with "
                f"`{_set_command(key, value)}`"
            )
            continue
        if key in groups and isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError:
                value = None
        if key in groups and not isinstance(value, Mapping):
            problems.append(
                f"{key} must be a group of settings, set one by one with "
                f"`pulumi config set --path {key}.<setting> <value>`"
            )
            continue
        data[key] = value
    try:
        config = StackConfig.model_validate(data)
    except ValidationError as err:
        for error in err.errors():
            problems.extend(_format_error(error))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def nest_paths(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"api.replicas": 3}`` as the engine groups it: ``{"api": {"replicas": 3}}``."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        group, dot, leaf = key.partition(".")
        if dot:
            nested.setdefault(group, {})[leaf] = value
        else:
            nested[key] = value
    return nested


def load_paths(flat: Mapping[str, Any]) -> StackConfig:
    """load_config from path keys as `pulumi config set --path` names them (``api.replicas``)."""
    return load_config(nest_paths(flat))
