"""Debian's nginx, started by the container's own command in a private mount and
network namespace behind a small echo upstream (tests/edge_agent.py), does
what the controls promise: redirect, TLS, HSTS, basic auth, allowlist, 429s."""

import json
import math
import time

import pytest

from components.config import load_paths
from components.proxy import HTTP_PORT, HTTPS_PORT, nginx_env
from edge_agent import CLIENT, DENIED_CLIENT, PUBLIC_HOST, THROTTLED_CLIENT, EdgeAgent
from components.api import SERVICE_ALIAS
from nginx_support import generated_pki, htpasswd_line, render_conf
from tls_mocks import edge_tls_run

SECURE_PUBLIC_URL = f"https://{PUBLIC_HOST}:9443"
OPEN_PUBLIC_URL = f"http://{PUBLIC_HOST}:9080"
RATE, BURST = 1, 20


def basic(user: str, password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


SECURE = {
    "api.replicas": "2", "tls.enabled": "true", "tls.httpPort": "9080", "proxy.port": "9443",
    "proxy.publicUrl": SECURE_PUBLIC_URL, "auth.mode": "nginx",
    "proxy.allowCidrs": json.dumps([f"{CLIENT}/32", f"{THROTTLED_CLIENT}/32"]),
    "proxy.rateLimit": str(RATE), "proxy.rateLimitBurst": str(BURST),
}
PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def secure_edge(tmp_path_factory):
    """TLS with a generated CA, nginx basic auth, an allowlist and a rate limit."""
    config = load_paths(SECURE)
    tls = edge_tls_run(SECURE).outputs
    env = nginx_env(render_conf(config, "test"), certificate=tls["certificate"],
                    private_key=tls["private_key"], htpasswd=htpasswd_line("ops", PASSWORD))
    # The replicas' alias names the echo upstream, which the watcher finds healthy.
    agent = EdgeAgent(tmp_path_factory.mktemp("secure-edge"), env, [SERVICE_ALIAS])
    agent.ca = tls["ca_certificate"]
    yield agent
    agent.close()


@pytest.fixture(scope="module")
def open_edge(tmp_path_factory):
    """The defaults: plain HTTP, no auth at nginx, open to all, no rate limit."""
    config = load_paths({"proxy.publicUrl": OPEN_PUBLIC_URL})
    env = nginx_env(render_conf(config, "test"))
    agent = EdgeAgent(tmp_path_factory.mktemp("open-edge"), env, [SERVICE_ALIAS])
    yield agent
    agent.close()


def https(path: str, host: str = PUBLIC_HOST) -> str:
    return f"https://{host}:{HTTPS_PORT}{path}"


def http(path: str, host: str = CLIENT) -> str:
    return f"http://{host}:{HTTP_PORT}{path}"


def test_plain_http_redirects_to_the_public_https_url(secure_edge):
    answer = secure_edge.get(http("/api/flows/?limit=5&offset=10"))
    assert answer["status"] == 301, answer
    assert answer["headers"]["location"] == f"{SECURE_PUBLIC_URL}/api/flows/?limit=5&offset=10"
    assert "strict-transport-security" not in answer["headers"]


def test_plain_http_still_answers_the_local_health_check_and_only_that(secure_edge):
    assert secure_edge.get(http("/nginx-health"))["status"] == 200
    # an allowlisted client that is not the container itself
    assert secure_edge.get(http("/nginx-health"), source=THROTTLED_CLIENT)["status"] == 403
    assert secure_edge.get(http("/api/health"))["status"] == 301


@pytest.mark.parametrize("host", [PUBLIC_HOST, "localhost", "127.0.0.1"])
def test_https_verifies_against_the_generated_ca(secure_edge, host):
    answer = secure_edge.get(https("/api/health", host), ca=secure_edge.ca)
    assert answer.get("status") == 200, answer
    assert answer["body"] == "true"


def test_https_fails_against_any_other_ca(secure_edge):
    answer = secure_edge.get(https("/api/health"), ca=generated_pki()["ca"])
    assert "CERTIFICATE_VERIFY_FAILED" in answer.get("error", ""), answer


def test_hsts_is_sent_on_every_https_answer(secure_edge):
    for answer in (secure_edge.get(https("/api/health"), ca=secure_edge.ca),
                   secure_edge.get(https("/api/flows/"), ca=secure_edge.ca)):
        assert answer["headers"]["strict-transport-security"] == "max-age=31536000", answer


def test_nginx_basic_auth_guards_the_api_and_the_ui(secure_edge):
    for path in ("/api/flows/", "/api/flow_runs/filter", "/", "/api/events/in"):
        denied = secure_edge.get(https(path), ca=secure_edge.ca)
        assert denied["status"] == 401, (path, denied)
        assert denied["headers"]["www-authenticate"] == 'Basic realm="Prefect"'
    wrong = secure_edge.get(https("/api/flows/"), ca=secure_edge.ca, headers=basic("ops", "wrong"))
    assert wrong["status"] == 401
    allowed = secure_edge.get(https("/api/flows/"), ca=secure_edge.ca, headers=basic("ops", PASSWORD))
    assert allowed["status"] == 200, allowed
    seen = json.loads(allowed["body"])["headers"]
    assert seen["x-forwarded-proto"] == "https"
    assert seen["host"] == f"{PUBLIC_HOST}:9443"
    assert seen["x-real-ip"] == CLIENT


def test_health_and_readiness_stay_open_without_credentials(secure_edge):
    for path in ("/api/health", "/api/ready"):
        answer = secure_edge.get(https(path), ca=secure_edge.ca)
        assert answer["status"] == 200, (path, answer)


def test_clients_outside_the_allowlist_get_403_everywhere(secure_edge):
    for url, options in [
        (https("/api/health"), {"ca": secure_edge.ca}),
        (https("/api/flows/"), {"ca": secure_edge.ca, "headers": basic("ops", PASSWORD)}),
        (https("/"), {"ca": secure_edge.ca}),
        (http("/api/flows/"), {}),
    ]:
        answer = secure_edge.get(url, source=DENIED_CLIENT, **options)
        assert answer["status"] == 403, (url, answer)
    assert secure_edge.get(http("/api/flows/"), source=CLIENT)["status"] == 301


def test_a_burst_above_the_limit_gets_429_and_requests_within_it_pass(secure_edge):
    started = time.monotonic()
    answers = secure_edge.requests(https("/api/ready"), count=BURST + 6, ca=secure_edge.ca, source=THROTTLED_CLIENT)
    elapsed = time.monotonic() - started
    statuses = [a.get("status") for a in answers]
    # The first request plus the burst pass; beyond that only what RATE r/s
    # refilled while the requests ran (more under load, when they run slower).
    assert statuses[: BURST + 1] == [200] * (BURST + 1), statuses
    assert set(statuses) == {200, 429}, statuses
    assert statuses.count(200) <= BURST + 1 + math.ceil(elapsed * RATE), (elapsed, statuses)
    # The health check, the UI and other clients are not held back.
    assert secure_edge.get(https("/api/health"), ca=secure_edge.ca, source=THROTTLED_CLIENT)["status"] == 200
    ui = secure_edge.get(https("/"), ca=secure_edge.ca, source=THROTTLED_CLIENT, headers=basic("ops", PASSWORD))
    assert ui["status"] == 200
    assert secure_edge.get(https("/api/ready"), ca=secure_edge.ca, source=CLIENT)["status"] == 200


def test_plain_edge_proxies_without_redirect_or_hsts(open_edge):
    answer = open_edge.get(http("/api/flows/"))
    assert answer["status"] == 200, answer
    assert "strict-transport-security" not in answer["headers"]
    seen = json.loads(answer["body"])["headers"]
    assert seen["x-forwarded-proto"] == "http" and seen["host"] == f"{PUBLIC_HOST}:9080"
    assert open_edge.get(http("/"))["status"] == 200
    assert "Connection refused" in open_edge.get(f"https://127.0.0.1:{HTTPS_PORT}/api/health").get("error", "")


def test_nginx_health_answers_the_container_itself_only(open_edge):
    assert open_edge.get(http("/nginx-health"))["status"] == 200
    assert open_edge.get(http("/nginx-health"), source=DENIED_CLIENT)["status"] == 403


@pytest.mark.parametrize("edge", ["open_edge", "secure_edge"])
def test_every_answer_closes_its_client_connection(edge, request):
    """No idle keep-alive connection for a reload to cut under a client's next request."""
    agent = request.getfixturevalue(edge)
    url = http("/api/flows/filter") if edge == "open_edge" else https("/api/health")
    answer = agent.get(url, **({"method": "POST"} if edge == "open_edge" else {"ca": agent.ca}))
    assert answer["headers"].get("connection") == "close", answer
