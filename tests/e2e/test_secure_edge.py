"""The prod stack's secure edge on a real Docker engine, each control proved with a real request.

The stack file's edge as shipped: TLS with a generated CA, plain HTTP that
redirects, Prefect's own auth, CSRF protection, 10 r/s with a burst of 20 per
client. Only ports, images and the allowlist are set by the test.
"""

from __future__ import annotations

import concurrent.futures
import json
import time

import pytest
import requests

from components.config import load_config
from harness import stack_config
from testbed import COMPONENT_LABEL, deploy_or_fail, tear_down

pytestmark = pytest.mark.timeout(900)

# Docker's default address pools and loopback: the test client reaches nginx
# through docker-proxy, so nginx sees a bridge gateway address.
PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8"]
EXCLUDES_EVERYONE_HERE = ["192.0.2.0/24"]  # TEST-NET-1: no test client has it


@pytest.fixture(scope="module")
def secure(docker_client, tmp_path_factory):
    started = time.monotonic()
    stack = deploy_or_fail(docker_client, "sec", {"api.replicas": 2, "proxy.allowCidrs": PRIVATE}, secure=True)
    print(f"\n[e2e] secure stack deployed in {time.monotonic() - started:.1f} s")
    ca = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.write_text(stack.outputs["ca_certificate"])
    stack.ca_file = str(ca)
    yield stack
    tear_down(stack)


def credentials(stack) -> tuple[str, str]:
    user, _, password = stack.outputs["client_env"]["PREFECT_API_AUTH_STRING"].partition(":")
    return user, password


def http_url(stack, path: str) -> str:
    """The plain-HTTP port the stack published (tls.httpPort), as Docker reports it."""
    ports = stack.client.api.inspect_container(stack.outputs["containers"]["proxy"])["NetworkSettings"]["Ports"]
    return f"http://127.0.0.1:{ports['8080/tcp'][0]['HostPort']}{path}"


def test_tls_handshake_verifies_against_the_generated_ca_and_hsts_is_sent(secure):
    assert secure.outputs["api_url"].startswith("https://127.0.0.1:")
    response = requests.get(secure.outputs["health_url"], verify=secure.ca_file, timeout=5)
    assert response.status_code == 200 and response.text.strip() == "true"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(secure.outputs["health_url"], timeout=5)  # not trusted without the CA


def test_plain_http_redirects_to_https_without_hsts(secure):
    response = requests.get(http_url(secure, "/api/health?probe=1"), allow_redirects=False, timeout=5)
    assert response.status_code == 301
    assert response.headers["Location"] == f"{secure.outputs['health_url']}?probe=1"
    assert "Strict-Transport-Security" not in response.headers


def test_without_credentials_the_api_is_401_and_health_stays_open(secure):
    api = secure.outputs["api_url"]
    assert requests.get(f"{api}/admin/version", verify=secure.ca_file, timeout=5).status_code == 401
    # A POST meets Prefect's CSRF check before its auth check: refused either way.
    assert requests.post(f"{api}/flows/filter", json={}, verify=secure.ca_file, timeout=5).status_code in (401, 403)
    assert requests.get(f"{api}/health", verify=secure.ca_file, timeout=5).status_code == 200
    wrong = requests.get(f"{api}/admin/version", auth=("prefect", "wrong"), verify=secure.ca_file, timeout=5)
    assert wrong.status_code == 401
    right = requests.get(f"{api}/admin/version", auth=credentials(secure), verify=secure.ca_file, timeout=5)
    assert right.status_code == 200, right.text


def test_csrf_is_enforced_for_raw_posts(secure):
    response = requests.post(f"{secure.outputs['api_url']}/flows/filter", json={}, auth=credentials(secure),
                             verify=secure.ca_file, timeout=5)
    assert response.status_code == 403 and "csrf" in response.text.lower(), response.text


def test_a_prefect_client_with_client_env_runs_a_flow_to_completed(secure):
    started = time.monotonic()
    out = secure.prefect(
        "run_flow.py", env={"SSL_CERT_FILE": "/ca/ca.pem"},
        volumes={secure.ca_file: {"bind": "/ca/ca.pem", "mode": "ro"}},
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert (result["result"], result["state"]) == (42, "COMPLETED"), out
    print(f"\n[e2e] flow through TLS + auth + CSRF: COMPLETED in {time.monotonic() - started:.1f} s")


def test_rate_limit_answers_429_above_the_burst_and_passes_within_it(secure):
    proxy = load_config({k.split(":", 1)[1]: v for k, v in stack_config("prod").items()}).proxy
    rate, burst = proxy.rate_limit, proxy.rate_limit_burst
    url = f"{secure.outputs['api_url']}/admin/version"
    session = requests.Session()
    session.auth = credentials(secure)
    get = lambda: session.get(url, verify=secure.ca_file, timeout=10).status_code  # noqa: E731
    # nginx's bucket drains at `rate` r/s: a few idle seconds empty it whatever came before.
    time.sleep(burst / rate + 0.5)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        flood = list(pool.map(lambda _: get(), range(3 * burst)))
    assert set(flood) <= {200, 429}, flood
    assert flood.count(429) > 0, "no request was limited"
    assert flood.count(200) >= burst + 1, f"the burst of {burst} (plus one) should pass: {flood}"
    time.sleep(burst / rate + 0.5)
    steady = []
    for _ in range(10):  # half the rate
        steady.append(get())
        time.sleep(2 / rate)
    assert steady == [200] * 10, steady
    print(f"\n[e2e] rate limit {rate} r/s burst {burst}: {3 * burst} at once -> {flood.count(200)} x 200, "
          f"{flood.count(429)} x 429; 10 at {rate // 2} r/s -> all 200")


def test_no_secret_in_any_containers_command_entrypoint_or_labels(secure):
    secrets = secure.passwords()
    assert len(secrets) == 4  # Postgres and its init password, Redis, API credentials
    containers = secure.containers()
    assert len(containers) >= 6
    for container in containers:
        config = container.attrs["Config"]
        exposed = json.dumps([config.get("Cmd"), config.get("Entrypoint"), config.get("Labels")])
        for secret in secrets:
            assert secret not in exposed, f"{container.name} shows a secret"
        assert "PRIVATE KEY" not in exposed, f"{container.name} shows a private key"


def probe(client, container: str, host: str, port: int) -> bool:
    """Can ``container`` open a TCP connection to host:port? (bash's /dev/tcp, 3 s)."""
    result = client.api.exec_create(
        container, ["bash", "-c", f"timeout 3 bash -c 'exec 3<>/dev/tcp/{host}/{port}'"])
    client.api.exec_start(result["Id"])
    return client.api.exec_inspect(result["Id"])["ExitCode"] == 0


def test_postgres_and_redis_have_no_host_ports_and_no_way_out(secure):
    client = secure.client
    names = secure.outputs["containers"]
    backend = client.networks.get(secure.outputs["services"]["networks"]["backend"])
    edge = client.networks.get(secure.outputs["services"]["networks"]["edge"])
    assert backend.attrs["Internal"] is True and edge.attrs["Internal"] is False
    # The host, as every container with a route out sees it: the edge gateway,
    # where docker-proxy listens on nginx's published port.
    gateway = edge.attrs["IPAM"]["Config"][0]["Gateway"]
    api = names["api"][0]
    assert probe(client, api, gateway, secure.port), "control: the API replica reaches the host"
    for name in (names["postgres"], names["redis"]):
        info = client.api.inspect_container(name)
        assert not info["HostConfig"]["PortBindings"], f"{name} publishes {info['HostConfig']['PortBindings']}"
        assert set(info["NetworkSettings"]["Networks"]) == {backend.name}, name
        assert not probe(client, name, gateway, secure.port), f"{name} reached the host"
    nginx_ip = client.api.inspect_container(names["proxy"])["NetworkSettings"]["Networks"][edge.name]["IPAddress"]
    assert not probe(client, names["postgres"], nginx_ip, 8443), "postgres reached the edge network"
    assert probe(client, names["postgres"], "redis", 6379), "control: the backend itself works"
    published = [c.name for c in secure.containers() if c.status == "running" and c.attrs["HostConfig"]["PortBindings"]]
    assert published == [names["proxy"]]


def test_every_container_is_hardened_as_docker_sees_it(secure):
    for container in secure.containers():
        host = container.attrs["HostConfig"]
        assert host["Privileged"] is False, container.name
        assert "no-new-privileges:true" in (host["SecurityOpt"] or []), container.name
        assert host["CapDrop"] == ["ALL"], container.name
        if container.labels.get(COMPONENT_LABEL) in ("proxy", "api", "services"):
            assert host["ReadonlyRootfs"] is True, container.name
            assert container.status == "running", container.name


def test_an_allowlist_that_excludes_the_client_gives_403(docker_client, secure):
    # The secure stack's allowlist includes the test client (every test above got through).
    assert requests.get(secure.outputs["health_url"], verify=secure.ca_file, timeout=5).status_code == 200
    denied = deploy_or_fail(docker_client, "deny", {"api.replicas": 1, "proxy.allowCidrs": EXCLUDES_EVERYONE_HERE},
                            secure=True)
    try:
        ca = secure.ca_file.replace("ca.pem", "deny-ca.pem")
        with open(ca, "w") as f:
            f.write(denied.outputs["ca_certificate"])
        for url in (denied.outputs["health_url"], f"{denied.outputs['api_url']}/admin/version", denied.outputs["ui_url"]):
            assert requests.get(url, verify=ca, timeout=5).status_code == 403, url
        # nginx itself is healthy: its own check comes from 127.0.0.1 inside the container
        assert denied.client.api.inspect_container(denied.outputs["containers"]["proxy"])["State"]["Health"]["Status"] == "healthy"
    finally:
        tear_down(denied)
