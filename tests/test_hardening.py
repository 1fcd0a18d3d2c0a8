"""Networks, container hardening, credentials and where secrets may go, under mocks for both stacks."""

import pytest

from components.prefect_settings import CLIENT_AUTH_STRING, SERVER_AUTH_STRING
from components.proxy import CONFIG_COMPONENT
from harness import StackMocks, run_program
from support import RANDOM_PASSWORD, assert_counts, component_of, container, containers, env_of, replica

PASSWORD = StackMocks().password  # every generated password under plain mocks
# Workers that pip-install prefect-docker at start cannot be (tests/test_worker.py).
READ_ONLY = ("api", "services", "proxy")
# Prefect needs no capability; nginx does (tests/test_proxy_container.py).
NO_CAPABILITIES = ("api", "services", "worker", "migration")


def test_every_container_is_hardened(stack_run):
    _, run = stack_run
    for reg in containers(run):
        name, inputs = reg.inputs["name"], reg.inputs
        assert inputs["securityOpts"] == ["no-new-privileges:true"], name
        assert inputs["capabilities"]["drops"] == ["ALL"], name
        assert "ALL" not in (inputs["capabilities"].get("adds") or []), name
        assert inputs["privileged"] is False, name
        if component_of(reg) in READ_ONLY:
            assert inputs["readOnly"] is True, f"{name} should have a read-only root filesystem"
            assert "/tmp" in inputs["tmpfs"], name
        if component_of(reg) in NO_CAPABILITIES:
            assert not inputs["capabilities"].get("adds"), f"{name}: Prefect needs no capability"


def test_no_secret_in_command_labels_or_non_secret_outputs(stack_run):
    _, run = stack_run
    for reg in containers(run):
        name = reg.inputs["name"]
        for key in ("command", "entrypoints", "labels"):
            assert PASSWORD not in str(reg.inputs.get(key, "")), f"{name} carries a secret in {key}"
            assert not reg.input_is_secret(key), f"{name}: {key} is secret, so it must be holding one"
    for key, value in run.outputs.items():
        if not run.output_is_secret(key):
            assert PASSWORD not in str(value), f"output {key} leaks a secret"
    assert run.output_is_secret("client_env")


def test_data_stores_live_on_the_backend_which_is_internal_unless_their_ports_are_published(stack_run):
    stack, run = stack_run
    backend = run.named("prefect-network-backend").inputs
    edge = run.named("prefect-network-edge").inputs
    # dev publishes Postgres and Redis for debugging, which needs a route to the host
    assert backend.get("internal", False) is (stack == "prod")
    assert not edge.get("internal", False)
    published = [r.inputs["name"] for r in containers(run) if r.inputs.get("ports")]
    if stack == "prod":
        assert published == [container(run, "proxy").inputs["name"]]


def test_prefect_auth_puts_the_auth_string_on_the_server_and_in_client_env():
    run = run_program("prod")  # auth.mode prefect
    assert run.error is None, run.error
    for reg in (replica(run, "api", 1), replica(run, "api", 3), replica(run, "services", 1)):
        name = reg.inputs["name"]
        assert env_of(reg)[SERVER_AUTH_STRING] == f"prefect:{PASSWORD}", name
        assert SERVER_AUTH_STRING in reg.secret_envs(), name
    nginx_env = str(container(run, "proxy").inputs["envs"]) + str(container(run, CONFIG_COMPONENT).inputs["envs"])
    assert "auth_basic" not in run.outputs["nginx_conf"]
    assert PASSWORD not in nginx_env
    assert run.outputs["client_env"][CLIENT_AUTH_STRING] == f"prefect:{PASSWORD}"


def test_nginx_auth_leaves_the_servers_alone_and_delivers_a_bcrypt_htpasswd():
    run = run_program("prod", {"auth.mode": "nginx", "auth.username": "ops"})
    assert run.error is None, run.error
    assert SERVER_AUTH_STRING not in env_of(replica(run, "api", 1))
    assert "auth_basic" in run.outputs["nginx_conf"]
    nginx = container(run, CONFIG_COMPONENT)
    htpasswd = [k for k, v in env_of(nginx).items() if v.startswith("ops:$2a$")]
    assert htpasswd, "no htpasswd line for nginx"
    assert set(htpasswd) <= nginx.secret_envs()
    assert run.outputs["client_env"][CLIENT_AUTH_STRING] == f"ops:{PASSWORD}"


def test_no_auth_means_no_credentials_anywhere():
    run = run_program("dev")
    assert run.error is None, run.error
    assert len(run.of_type(RANDOM_PASSWORD)) == 3  # Postgres (and its init password), Redis
    assert CLIENT_AUTH_STRING not in run.outputs["client_env"]
    for reg in containers(run):
        assert SERVER_AUTH_STRING not in env_of(reg), reg.inputs["name"]


@pytest.mark.parametrize("stack, enabled", [("prod", "true"), ("dev", "false")])
def test_csrf_protection_is_on_in_prod(stack, enabled):
    run = run_program(stack)
    assert run.error is None, repr(run.error)
    assert_counts(run, {"api": 3 if stack == "prod" else 1})  # Pulumi.<stack>.yaml's api.replicas
    for reg in containers(run, "api"):
        assert env_of(reg).get("PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED") == enabled, reg.inputs["name"]


def test_nginx_auth_gives_clients_the_credentials_for_websockets_too():
    """Prefect sends its auth string on one websocket only; behind nginx's basic auth
    every websocket needs it, so client_env adds it as a custom header."""
    import base64
    import json

    run = run_program("prod", {"auth.mode": "nginx", "worker.enabled": True, "worker.apiUrl": "https://prefect.example.internal/api"})
    assert run.error is None, run.error
    token = base64.b64encode(f"prefect:{PASSWORD}".encode()).decode()
    headers = json.loads(run.outputs["client_env"]["PREFECT_CLIENT_CUSTOM_HEADERS"])
    assert headers == {"Authorization": f"Basic {token}"}
    worker = replica(run, "worker", 1)
    assert json.loads(env_of(worker)["PREFECT_CLIENT_CUSTOM_HEADERS"]) == headers
    assert "PREFECT_CLIENT_CUSTOM_HEADERS" in worker.secret_envs()
    prefect_mode = run_program("prod")
    assert "PREFECT_CLIENT_CUSTOM_HEADERS" not in prefect_mode.outputs["client_env"]


def test_read_only_prefect_containers_write_only_to_their_tmpfs(stack_run):
    from components.prefect_settings import HOME_DIR, SCRATCH_DIR, UI_STATIC_DIR

    _, run = stack_run
    for reg in containers(run, "api") + containers(run, "services"):
        name, env = reg.inputs["name"], env_of(reg)
        assert SCRATCH_DIR in reg.inputs["tmpfs"], name
        assert env["PREFECT_HOME"] == HOME_DIR and HOME_DIR.startswith(SCRATCH_DIR + "/"), name
        if component_of(reg) == "api":
            # the UI bundle is copied before it is served
            assert env["PREFECT_SERVER_UI_STATIC_DIRECTORY"] == UI_STATIC_DIR
            assert UI_STATIC_DIR.startswith(SCRATCH_DIR + "/")
