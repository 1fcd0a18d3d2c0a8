"""The config model: pure validation, no Pulumi runtime."""

import typing

import pytest
import yaml

from components.config import (
    CONNECTIONS_PER_PREFECT_PROCESS,
    POSTGRES_CONNECTION_MARGIN,
    ConfigError,
    StackConfig,
    config_keys,
    declared_default,
    load_config,
    group_names,
    load_paths,
    readme_table,
)
from pydantic import SecretStr
from harness import REPO


def problems(raw):
    with pytest.raises(ConfigError) as err:
        load_paths(raw)
    return err.value.problems


def test_every_model_key_is_declared_in_pulumi_yaml_with_the_same_default():
    declared = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    keys = config_keys()
    assert set(declared) == set(keys)
    types = {int: "integer", bool: "boolean", str: "string", SecretStr: "string", tuple[str, ...]: "array"}
    for key, field in keys.items():
        kind = "string" if typing.get_origin(field.annotation) is typing.Literal else types[field.annotation]
        assert declared[key]["type"] == kind, key
        assert declared[key]["default"] == declared_default(field), key
        assert declared[key]["description"] == field.description, key
        assert field.description, f"{key} has no description"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_shipped_stack_files_validate_and_hold_no_plaintext_secret(stack):
    raw = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]
    groups = group_names()
    for key, value in raw.items():
        assert key.startswith("prefect-ha:"), key
        name = key.split(":", 1)[1]
        # Nested, as `pulumi config set --path` writes it: no literal dotted key.
        assert "." not in name, f"{key} is a literal dotted key; the stack file must nest it under its group"
        if isinstance(value, dict) and "secure" not in value:
            assert name in groups, f"{key} holds a structured value but is no config group"
            for leaf, leaf_value in value.items():
                assert "password" not in leaf.lower() and "key" != leaf or "secure" in leaf_value, f"{name}.{leaf}"
    config = load_config({k.split(":", 1)[1]: v for k, v in raw.items()})
    if stack == "prod":
        assert config.api.replicas == 3
        assert config.postgres.host_port == 0 and config.redis.host_port == 0
    else:
        assert config.api.replicas == 1
        assert config.postgres.host_port and config.redis.host_port


def test_defaults_are_a_valid_config():
    config = load_paths({})
    assert config == StackConfig()
    assert config.prefix("dev") == "prefect-ha-dev"


def test_values_arrive_as_strings_like_the_cli_gives_them():
    config = load_paths({"api.replicas": "3", "postgres.retainVolume": "false", "proxy.port": "8443"})
    assert config.api.replicas == 3
    assert config.postgres.retain_volume is False
    assert config.proxy.port == 8443


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"api.replicas": "0"}, "api.replicas must be >= 1, got 0"),
        ({"services.replicas": "0"}, "services.replicas must be >= 1, got 0"),
        ({"api.replicas": "three"}, "api.replicas input should be a valid integer"),
        ({"proxy.port": "70000"}, "proxy.port must be 1-65535, got 70000"),
        ({"postgres.hostPort": "-1"}, "postgres.hostPort must be 0 (not published) or 1-65535, got -1"),
        ({"postgres.image": "postgres:13.9"}, "postgres.image must be Postgres >= 14"),
        ({"postgres.image": "postgres"}, "postgres.image must be pinned to a version tag or digest"),
        ({"prefect.image": "prefecthq/prefect:latest"}, "prefect.image must be pinned"),
        ({"prefect.image": "prefecthq/prefect:3-latest"}, "prefect.image must be pinned"),
        ({"proxy.image": "nginx"}, "proxy.image must be pinned"),
        ({"redis.image": "redis:6.2"}, "redis.image must be Redis >= 7"),
        ({"proxy.publicUrl": "ftp://example.com"}, "proxy.publicUrl must be an http(s) URL"),
        ({"proxy.publicUrl": "http://0.0.0.0:4200"}, "not a wildcard bind address"),
        ({"proxy.publicUrl": "localhost:4200"}, "proxy.publicUrl must be an http(s) URL"),
        ({"postgres.user": "Pre fect"}, "postgres.user must be a lower-case Postgres identifier"),
        ({"api.keepaliveTimeout": "5"}, "api.keepaliveTimeout must be > 60 seconds"),
        ({"apiReplicas": "3"}, "apiReplicas is not a known setting of prefect-ha"),
        ({"proxy.port": "5432", "postgres.hostPort": "5432"}, "both publish host port 5432"),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_allowed(raw, expected):
    found = problems(raw)
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once():
    found = problems({"api.replicas": "0", "proxy.port": "0", "redis.image": "redis"})
    assert len(found) == 3, found


def test_connection_budget_is_refused_when_max_connections_is_set_too_low():
    found = problems({"api.replicas": "5", "services.replicas": "2", "postgres.maxConnections": "100"})
    need = 7 * CONNECTIONS_PER_PREFECT_PROCESS + POSTGRES_CONNECTION_MARGIN
    assert any(f"postgres.maxConnections must be >= {need}" in p and "got 100" in p for p in found), found


def test_connection_budget_raises_max_connections_when_left_automatic():
    small = load_paths({"api.replicas": "1"})
    assert small.postgres_max_connections == 100
    big = load_paths({"api.replicas": "8", "services.replicas": "2"})
    assert big.postgres_max_connections == 10 * CONNECTIONS_PER_PREFECT_PROCESS + POSTGRES_CONNECTION_MARGIN
    assert big.postgres_max_connections > 100


def test_public_url_trailing_slash_is_dropped():
    assert load_paths({"proxy.publicUrl": "https://prefect.example.com/"}).proxy.public_url == "https://prefect.example.com"


def test_readme_documents_every_key_with_its_default():
    readme = (REPO / "README.md").read_text()
    # Regenerate with: python -m components.config readme
    assert readme_table() in readme, "README's config table differs from the model"
    for key in config_keys():
        assert f"| `{key}` |" in readme, f"README's config table is missing {key}"
