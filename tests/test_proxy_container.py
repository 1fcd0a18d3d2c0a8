"""The Proxy component's containers: nginx (published ports, read-only with only the
capabilities nginx needs, labels, the edge config volume read-only, nothing of
the config in its inputs) and the edge-config job, whose (secret) environment
carries the config, certificate, key and htpasswd into the volume."""

import pytest
from cryptography import x509

from components import proxy
from components.proxy import CONFIG_SCRIPT, EDGE_DIR, HTTP_PORT, HTTPS_PORT, RUNTIME_DIR, START_SCRIPT, nginx_env
from harness import run_program
from support import container, env_of, labels_of
from tls_mocks import CERT_REQUEST


def nginx_container(run):
    assert run.error is None, run.error
    return container(run, "proxy")


def config_job(run):
    assert run.error is None, run.error
    return container(run, proxy.CONFIG_COMPONENT)


@pytest.mark.parametrize("stack, overrides, published", [
    ("prod", {}, [(HTTPS_PORT, 443), (HTTP_PORT, 80)]),
    ("prod", {"tls.httpPort": 0}, [(HTTPS_PORT, 443)]),
    ("dev", {}, [(HTTP_PORT, 4200)]),
    ("prod", {"tls.enabled": False, "tls.httpPort": 0, "proxy.publicUrl": "http://prefect.example.internal"},
     [(HTTP_PORT, 443)]),
])
def test_ports_publish_the_public_listener_and_the_redirect(stack, overrides, published):
    reg = nginx_container(run_program(stack, overrides))
    assert [(p["internal"], p["external"]) for p in reg.inputs["ports"]] == published


def test_nginx_runs_read_only_with_only_the_capabilities_it_needs(prod_run):
    reg = nginx_container(prod_run)
    inputs = reg.inputs
    assert inputs["readOnly"] is True
    assert inputs["securityOpts"] == ["no-new-privileges:true"]
    # Measured on Debian's nginx 1.22: without CHOWN the master cannot hand its
    # temp directories to the workers; without SETGID or SETUID no worker starts.
    assert inputs["capabilities"] == {"drops": ["ALL"], "adds": ["CAP_CHOWN", "CAP_SETGID", "CAP_SETUID"]}
    assert set(inputs["tmpfs"]) == {"/tmp", "/var/cache/nginx", "/var/lib/nginx"}
    assert RUNTIME_DIR.startswith("/tmp/")
    assert "uploads" not in inputs
    assert inputs["command"] == ["sh", "-c", START_SCRIPT]
    kind, check = inputs["healthcheck"]["tests"]
    # nginx answers, and the replica watcher has written its heartbeat lately
    assert kind == "CMD-SHELL"
    assert f"curl -fsS -o /dev/null http://127.0.0.1:{HTTP_PORT}/nginx-health" in check
    assert f"{RUNTIME_DIR}/{proxy.WATCH_FILE}" in check and f"-lt {proxy.WATCH_STALE_SECONDS} ]" in check
    labels = labels_of(reg)
    assert labels["prefect-ha.tls"] == "generated" and "prefect-ha.auth" not in labels
    # the auth mode goes with the config (auth_basic or not): a change of it is a reload
    assert labels_of(config_job(prod_run))["prefect-ha.auth"] == "prefect"
    # nothing of the replica set: a new replica must not replace nginx
    assert not [k for k in labels if "upstream" in k or "replica" in k], labels
    # nothing of the edge config either: a new config is a reload, not a new nginx
    assert env_of(reg) == {"TZ": "UTC"} and not reg.input_is_secret("envs")
    [volume] = inputs["volumes"]
    assert volume["containerPath"] == EDGE_DIR and volume["readOnly"] is True


def test_the_config_job_runs_once_read_only_and_writes_the_volume_nginx_reads(prod_run):
    job, nginx = config_job(prod_run), nginx_container(prod_run)
    inputs = job.inputs
    assert inputs["command"] == ["sh", "-c", CONFIG_SCRIPT]
    assert inputs["attach"] is True and inputs["mustRun"] is False and inputs["restart"] == "no"
    assert inputs["readOnly"] is True and inputs["image"] == nginx.inputs["image"]
    assert inputs["capabilities"] == nginx.inputs["capabilities"]
    [volume] = inputs["volumes"]
    assert volume["volumeName"] == nginx.inputs["volumes"][0]["volumeName"] == "prefect-ha-prod-edge-config"
    assert not volume.get("readOnly")
    # nginx starts only once the first config was written and checked
    assert job.urn in nginx.dependencies


def test_generated_tls_reaches_the_config_job_as_a_secret_environment(prod_run):
    reg = config_job(prod_run)
    env = env_of(reg)
    assert reg.input_is_secret("envs")
    assert not reg.input_is_secret("command")
    assert set(env) == {"TZ", proxy.CONF_ENV, proxy.CERTIFICATE_ENV, proxy.KEY_ENV}
    server_key = prod_run.of_type(CERT_REQUEST)[0].inputs["privateKeyPem"]
    assert env[proxy.KEY_ENV] == server_key
    cert = x509.load_pem_x509_certificate(env[proxy.CERTIFICATE_ENV].encode())
    ca = x509.load_pem_x509_certificate(prod_run.outputs["ca_certificate"].encode())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "prefect.example.internal" in names.get_values_for_type(x509.DNSName)


def test_a_provided_certificate_is_served_as_given(pki):
    run = run_program("prod", {"tls.certificate": pki["certificate"], "tls.key": pki["key"], "auth.mode": "nginx"})
    reg = config_job(run)
    env = env_of(reg)
    assert reg.input_is_secret("envs")
    assert env[proxy.CERTIFICATE_ENV] == pki["certificate"] and env[proxy.KEY_ENV] == pki["key"]
    assert env[proxy.HTPASSWD_ENV].startswith("prefect:$2a$")
    assert not [r for r in run.registrations if r.type.startswith("tls:")]
    assert labels_of(nginx_container(run))["prefect-ha.tls"] == "provided"
    assert labels_of(reg)["prefect-ha.auth"] == "nginx"


def test_without_tls_or_nginx_auth_nothing_in_the_environment_is_secret():
    run = run_program("dev")
    reg = config_job(run)
    assert not reg.input_is_secret("envs")
    assert set(env_of(reg)) == {"TZ", proxy.CONF_ENV}
    assert labels_of(nginx_container(run))["prefect-ha.tls"] == "off"
    assert labels_of(reg)["prefect-ha.auth"] == "none"


def test_nginx_env_pairs_certificate_and_key():
    with pytest.raises(ValueError):
        nginx_env("conf", certificate="cert")
    assert nginx_env("conf", timezone="Europe/Berlin") == {"TZ": "Europe/Berlin", proxy.CONF_ENV: "conf"}
