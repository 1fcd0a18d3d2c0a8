"""The program under the real Pulumi engine, onto the real Docker engine.

The CLI (built from the Go module proxy) reads Pulumi.yaml and the stack file,
checks and encrypts config, diffs, plans creates and replacements, refreshes
and destroys; the providers are the plugin doubles in testbed/providers/.
Each shipped stack goes through what a user does on day one: `up`, a preview
that must show no change, `refresh` and again no change, `destroy` that keeps
only the Postgres volume. Bad config must stop `up` before any resource.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import docker
import pytest
import requests
from pulumi import automation as auto

from components import downtime
from engine import EngineStack, plain_state, shared_engine
from harness import REPO, Registration
from testbed import Deployment, changes, deploy, free_port, prepare, run_selector, sweep
from policy_support import evaluate, of



@pytest.fixture(scope="session")
def engine(docker_client):
    started = time.monotonic()
    built = shared_engine()
    print(f"\n[engine] CLI and plugins {built.plugins} ready in {time.monotonic() - started:.1f} s")
    return built


def labelled(client: docker.DockerClient, run_id: str) -> dict[str, list[str]]:
    selector = run_selector(run_id)
    return {
        "containers": sorted(c.name for c in client.containers.list(all=True, filters=selector)),
        "networks": sorted(n.name for n in client.networks.list(filters=selector)),
        "volumes": sorted(v.name for v in client.volumes.list(filters=selector)),
    }


def new_stack(client: docker.DockerClient, stack: str, name: str, overrides: dict | None = None,
              **engine_options) -> Deployment:
    """A shipped stack file, not brought up: the prod edge as shipped (TLS, auth), dev's plain."""
    return prepare(client, name, overrides, stack=stack, secure=stack == "prod", **engine_options)


# --- day one, for both shipped stacks ---------------------------------------------


@pytest.fixture(scope="module", params=["dev", "prod"])
def lifecycle(request, engine, docker_client) -> Deployment:
    started = time.monotonic()
    deployment, error = deploy(docker_client, f"eng{request.param}", stack=request.param,
                               secure=request.param == "prod")
    if error is not None:
        sweep(docker_client, deployment.run_id)
        pytest.fail(f"{request.param}: first `pulumi up` failed:\n{str(error)[-6000:]}")
    print(f"\n[engine] {request.param}: first up in {time.monotonic() - started:.1f} s, "
          f"{deployment.up_result.summary.resource_changes}")
    yield deployment
    try:
        deployment.stack.destroy()
    except auto.CommandError:
        pass  # the destroy test reports its own failure; this only tidies up
    sweep(docker_client, deployment.run_id)


def test_first_up_creates_every_resource_and_nginx_serves(lifecycle, docker_client):
    result = lifecycle.up_result
    assert result.summary.result == "succeeded"
    assert set(changes(result.summary.resource_changes)) == {"create"}
    outputs = lifecycle.outputs
    made = labelled(docker_client, lifecycle.run_id)
    reported = {n for names in outputs["containers"].values() for n in ([names] if isinstance(names, str) else names)}
    assert reported and reported <= set(made["containers"]), (outputs["containers"], made)
    for container in (c for c in lifecycle.containers() if c.status == "running"):
        health = container.attrs["State"].get("Health", {}).get("Status")
        assert health in (None, "healthy"), f"{container.name}: {health}"
    # nginx answers at the URL the stack reports (health needs no credentials).
    response = requests.get(outputs["health_url"], verify=False, timeout=10)
    assert response.status_code == 200, response.text[:300]


def test_preview_right_after_up_shows_no_change(lifecycle):
    preview = lifecycle.stack.preview(expect_no_changes=True, diff=True)
    assert changes(preview.change_summary) == {}, preview.change_summary
    assert "will be replaced" not in preview.stdout, preview.stdout[-3000:]


def test_a_preview_says_when_a_change_replaces_nginx(lifecycle):
    """A published port that moves replaces nginx: the preview's output diff names it
    (downtime_fingerprints: nginx, ports); nothing is applied."""
    stack = lifecycle.stack.stack
    port = stack.get_config("proxy.port", path=True).value
    stack.set_config("proxy.port", auto.ConfigValue(str(free_port())), path=True)
    try:
        preview = lifecycle.stack.preview(diff=True)
    finally:
        stack.set_config("proxy.port", auto.ConfigValue(port), path=True)
    assert changes(preview.change_summary) == {"replace": 1}, preview.change_summary
    said = preview.stdout[preview.stdout.index(f"~ {downtime.OUTPUT}"):]  # the outputs come last
    assert "~ nginx" in said and "~ ports" in said, said
    assert "~ postgres" not in said and "~ redis" not in said, said


def test_refresh_reads_back_what_was_written_and_then_no_change(lifecycle):
    stack = lifecycle.stack
    events = []
    refreshed = stack.stack.refresh(color="never", on_event=events.append)
    updated = {e.res_outputs_event.metadata.type for e in events
               if e.res_outputs_event and e.res_outputs_event.metadata.op not in ("same", "read", "refresh")}
    assert updated == set(), (updated, refreshed.summary.resource_changes)
    preview = stack.preview(expect_no_changes=True, diff=True)
    assert changes(preview.change_summary) == {}, preview.change_summary


def engine_resources(stack: EngineStack) -> list[Registration]:
    """The checkpoint's resources as the engine hands them to a policy pack:
    inputs for resource policies, outputs for stack policies (secrets in plain)."""
    found = []
    for seq, res in enumerate(stack.state()["resources"]):
        if res["type"].startswith("pulumi:providers:"):
            continue
        outputs = plain_state(res.get("outputs") or {})
        found.append(Registration(
            seq=seq, type=res["type"], name=res["urn"].rsplit("::", 1)[-1], urn=res["urn"],
            parent=res.get("parent", ""), inputs=outputs, raw_inputs=outputs,
            dependencies=res.get("dependencies", []), property_dependencies=res.get("propertyDependencies", {}),
            delete_before_replace=False, replace_on_changes=[], retain_on_delete=bool(res.get("retainOnDelete")),
            protect=bool(res.get("protect")), custom=bool(res.get("custom")),
        ))
    return found


def test_policy_pack_judges_what_the_engine_sends(lifecycle):
    """The engine gives each named-volume mount "hostPath": "" (the pack once took
    that for a bind mount and so never checked the Postgres volume)."""
    resources = engine_resources(lifecycle.stack)
    postgres = next(r for r in resources if r.type.endswith("container:Container")
                    and {"label": "prefect-ha.component", "value": "postgres"} in r.inputs["labels"])
    # the data volume and the socket's (shared with the credentials job)
    assert [m["hostPath"] for m in postgres.inputs["volumes"]] == ["", ""], postgres.inputs["volumes"]
    assert evaluate(resources) == [], "the shipped stack as deployed must pass every policy"
    # What postgres.retainVolume false changes on the Postgres container: its declaration.
    postgres.inputs["labels"] = [
        {"label": "prefect-ha.data-volume", "value": "disposable"} if l["label"] == "prefect-ha.data-volume" else l
        for l in postgres.inputs["labels"]
    ]
    found = of(evaluate(resources), "postgres-volume-retained")
    assert len(found) == 1 and "retainVolume" in found[0].message, found


def test_destroy_keeps_the_postgres_volume_and_nothing_else(lifecycle, docker_client):
    stack = lifecycle.stack
    # and the backups volume, where backups are on (prod)
    kept = sorted([lifecycle.outputs["postgres_volume"], *(
        [lifecycle.outputs["backups"]["volume"]] if "backups" in lifecycle.outputs else [])])
    stack.destroy()
    assert stack.state().get("resources", []) == []
    assert labelled(docker_client, lifecycle.run_id) == {"containers": [], "networks": [], "volumes": kept}


# --- bad config: refused before any resource, with the key and the value -----------

BAD_CONFIG = {
    "string-for-integer": ({"api.replicas": "three"}, {}, ["api.replicas", "integer"]),
    "zero-replicas": ({"api.replicas": 0}, {}, ["api.replicas", "got 0"]),
    "url-without-scheme": ({"proxy.publicUrl": "prefect.example.com"}, {}, ["proxy.publicUrl", "'prefect.example.com'"]),
    "postgres-13": ({"postgres.image": "postgres:13.16"}, {}, ["postgres.image", "got 13", "14.9"]),
    "misspelt-key": ({"api.replica": 2}, {}, ["api.replica is not a known setting"]),
    "port-70000": ({"proxy.port": 70000}, {}, ["proxy.port", "got 70000"]),
    "literal-dotted-key": ({}, {"prefect-ha:api.replicas": "3"}, [
        "api.replicas is set as a literal key", "pulumi config set --path api.replicas 3"]),
}


@pytest.mark.parametrize("case", list(BAD_CONFIG))
def test_bad_config_is_refused_before_any_resource(case, engine, docker_client):
    overrides, literal, expected = BAD_CONFIG[case]
    deployment = new_stack(docker_client, "dev", f"bad-{case}", overrides, literal=literal)
    stack, run_id = deployment.stack, deployment.run_id
    try:
        with pytest.raises(auto.CommandError) as refused:
            stack.up()
        message = str(refused.value)
        for part in expected:
            assert part in message, f"{part!r} not in:\n{message[-3000:]}"
        assert "Traceback" not in message, message[-3000:]
        resources = stack.state().get("resources", [])
        assert [r["type"] for r in resources if r["type"] != "pulumi:pulumi:Stack"] == [], resources
        assert labelled(docker_client, run_id) == {"containers": [], "networks": [], "volumes": []}
    finally:
        sweep(docker_client, run_id)


def test_a_secret_set_with_path_stays_secret(engine, docker_client):
    stack = new_stack(docker_client, "prod", "secretpath", secrets={"tls.key": "not-a-real-key"}).stack
    stored = stack.stack_file()["config"]["prefect-ha:tls"]["key"]
    assert set(stored) == {"secure"} and "not-a-real-key" not in stored["secure"], stored
    value = stack.stack.get_config("tls.key", path=True)
    assert value.secret and value.value == "not-a-real-key"


# --- the README's config commands, run as written ----------------------------------


def readme_config_commands() -> list[str]:
    """The `pulumi config set` lines of the README's code blocks, for the prod stack."""
    lines = [line.strip() for line in (REPO / "README.md").read_text().splitlines()]
    found = [line for line in lines if line.startswith("pulumi config set --stack prod")]
    assert len(found) >= 5, found  # replicas, publicUrl, the certificate and its key, a rotation
    return found


def self_signed_pair(host: str) -> tuple[str, str]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


def test_the_readme_config_commands_work_as_written(engine, docker_client):
    stack = new_stack(docker_client, "prod", "readme").stack
    cert, key = self_signed_pair("prefect.example.com")
    (stack.work_dir / "fullchain.pem").write_text(cert)
    (stack.work_dir / "privkey.pem").write_text(key)
    env = {**os.environ, **engine.env(stack.work_dir / "state"), "PULUMI_HOME": str(engine.home),
           "PATH": f"{engine.cli / 'bin'}:{os.environ['PATH']}"}
    commands = readme_config_commands()
    # README: Docker Swarm moves the stack onto a swarm; checked after the one-host preview.
    to_swarm = [c for c in commands if " platform swarm" in c]
    assert len(to_swarm) == 1, commands

    def run(command: str) -> None:
        done = subprocess.run(["bash", "-c", command], cwd=stack.work_dir, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}\n{done.stderr}"

    for command in commands:
        if command not in to_swarm:
            run(command)
    config = stack.stack_file()["config"]
    assert config["prefect-ha:api"]["replicas"] == 5
    assert config["prefect-ha:proxy"]["publicUrl"] == "https://prefect.example.com"
    assert config["prefect-ha:tls"]["certificate"].strip() == cert.strip()
    assert set(config["prefect-ha:tls"]["key"]) == {"secure"}
    assert config["prefect-ha:secrets"]["rotation"] == 1  # README: Keeping the data, rotate
    # The program reads them: five API replicas, the certificate given (none generated).
    preview = stack.preview(diff=True)
    assert "prefect-api-5" in preview.stdout and "prefect-api-6" not in preview.stdout
    assert "tls:index/selfSignedCert" not in preview.stdout and "tls:index/locallySignedCert" not in preview.stdout
    assert "BEGIN PRIVATE KEY" not in preview.stdout
    run(to_swarm[0])
    assert stack.stack_file()["config"]["prefect-ha:platform"] == "swarm"
    # On a swarm the five replicas are the tasks of one API service.
    preview = stack.preview(diff=True)
    assert "prefect-api-5" not in preview.stdout and "docker:index/service:Service" in preview.stdout
    assert re.search(r'name\s*:\s*"prefect-ha-readme-api"', preview.stdout), preview.stdout[-3000:]
    assert re.search(r"replicas\s*:\s*5\b", preview.stdout), preview.stdout[-3000:]
    assert "BEGIN PRIVATE KEY" not in preview.stdout


def test_prod_with_retain_volume_false_is_a_policy_violation_and_destroy_deletes_the_volume(
        engine, docker_client):
    deployment = new_stack(docker_client, "prod", "engnoretain", {"postgres.retainVolume": False})
    stack, run_id = deployment.stack, deployment.run_id
    try:
        stack.up()
        outputs = stack.outputs()
        volume = outputs["postgres_volume"]
        found = of(evaluate(engine_resources(stack)), "postgres-volume-retained")
        assert len(found) == 1 and volume in found[0].message, found
        stack.destroy()
        # the Postgres volume goes; the backups (on in prod) are kept either way
        assert labelled(docker_client, run_id) == {
            "containers": [], "networks": [], "volumes": [outputs["backups"]["volume"]]}
    finally:
        sweep(docker_client, run_id)
