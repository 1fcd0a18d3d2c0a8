"""Pulumi.yaml's `config:` block and the README's table, generated from the model.

    python -m components.config yaml    # the config: block of Pulumi.yaml
    python -m components.config readme  # the README's configuration table
"""

from __future__ import annotations

import json
from typing import Any

from .keys import config_keys, declared_default


def _declared_type(annotation: Any) -> str:
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "integer"
    if getattr(annotation, "__origin__", None) is tuple:
        return "array"
    return "string"


def pulumi_yaml_declarations() -> str:
    """The `config:` block of Pulumi.yaml."""
    lines = ["config:"]
    for key, field in config_keys().items():
        kind = _declared_type(field.annotation)
        lines.append(f"  {key}:")
        lines.append(f"    type: {kind}")
        if kind == "array":
            lines.append("    items:")
            lines.append("      type: string")
        lines.append(f"    default: {json.dumps(declared_default(field))}")
        lines.append(f"    description: {json.dumps(field.description)}")
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    """The README's configuration table."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for key, field in config_keys().items():
        default = declared_default(field)
        shown = '""' if default == "" else json.dumps(default) if isinstance(default, list) else (
            str(default).lower() if isinstance(default, bool) else str(default))
        meaning = field.description.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
        rows.append(f"| `{key}` | `{shown}` | {meaning} |")
    return "\n".join(rows) + "\n"
