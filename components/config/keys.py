"""The Pulumi config keys the model reads, derived from the models themselves."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.alias_generators import to_camel

from .stack import StackConfig


def config_keys(model: type[BaseModel] = StackConfig, prefix: str = "") -> dict[str, Any]:
    """Every Pulumi config key the model reads, with its field: ``{"api.replicas": field}``."""
    keys: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = prefix + to_camel(name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.update(config_keys(annotation, key + "."))
        else:
            keys[key] = field
    return keys


def group_names(model: type[BaseModel] = StackConfig) -> dict[str, type[BaseModel]]:
    """Config groups by key (``api``, ``postgres``, ...) and their models."""
    return {
        to_camel(name): field.annotation
        for name, field in model.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }


def is_secret(key: str) -> bool:
    field = config_keys().get(key)
    return field is not None and field.annotation is SecretStr


def declared_default(field: Any) -> Any:
    """A field's default as Pulumi.yaml and the README show it."""
    default = field.default
    if isinstance(default, SecretStr):
        return default.get_secret_value()
    if isinstance(default, tuple):
        return list(default)
    return default
