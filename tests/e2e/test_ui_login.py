"""The Prefect UI behind the prod edge: TLS at nginx with the stack's generated CA, Prefect's own
auth (auth.mode prefect: PREFECT_SERVER_API_AUTH_STRING on the API replicas), CSRF protection and
nginx's per-client rate limit, all as the prod stack file ships them.

A real headless Chromium (ui_check.py), with the stack's CA imported as a trusted CA and no
certificate error ignored, opens the public UI URL: without credentials the UI shows its login
page and the API refuses it; after a user types the client_env auth string into that page, the
dashboard shows data from the public API URL; a wrong auth string is refused.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from testbed import deploy_or_fail, tear_down


@pytest.fixture(scope="module")
def secure(docker_client):
    """The prod stack file with its edge as shipped (one API replica), deployed for real."""
    started = time.monotonic()
    stack = deploy_or_fail(docker_client, "ui", {"api.replicas": 1}, secure=True)
    print(f"\n[ui-login] deployed in {time.monotonic() - started:.1f} s")
    yield stack
    tear_down(stack)


@pytest.fixture(scope="module")
def ca_file(secure, tmp_path_factory) -> Path:
    """The stack's CA certificate (output ca_certificate) as a file, as a user would save it."""
    path = tmp_path_factory.mktemp("ui-login-ca") / "ca.pem"
    path.write_text(secure.outputs["ca_certificate"])
    path.parent.chmod(0o755)
    path.chmod(0o644)
    return path


@pytest.fixture(scope="module")
def auth_string(secure) -> str:
    return secure.outputs["client_env"]["PREFECT_API_AUTH_STRING"]


@pytest.fixture(scope="module")
def flow_run(secure, ca_file) -> dict:
    """One completed flow run, made through the public HTTPS API URL with the stack's client_env
    (credentials) by the Prefect client, which trusts the CA through SSL_CERT_FILE."""
    out = secure.prefect(
        "run_flow.py",
        env={"SSL_CERT_FILE": "/ca/ca.pem"},
        volumes={str(ca_file.parent): {"bind": "/ca", "mode": "ro"}},
    )
    run = json.loads(out.strip().splitlines()[-1])
    assert run["state"] == "COMPLETED", run
    return run


def _summary(result: dict) -> dict:
    keys = ("login_page_shown", "login_page_s", "login_submitted", "logged_in", "login_error", "login_s",
            "dashboard_loaded", "dashboard_rendered", "api_requests", "failed_api_requests",
            "api_peak_requests_per_s", "data_calls_with_match", "found_on_page", "other_hosts_called",
            "connection_error_texts", "failed_ui_requests", "navigation_error", "network_changed_retries",
            "final_url", "elapsed_s", "screenshot")
    summary = {k: result[k] for k in keys}
    summary["before_login"] = {k: result["before_login"][k] for k in ("api_requests", "unauthorized")}
    summary["before_login_failed"] = result["before_login"]["failed_api_requests"]
    return summary


def _check(secure, ca_file, screenshot: Path, **kwargs) -> dict:
    from ui_check import check_dashboard

    return check_dashboard(secure.outputs["ui_url"], secure.outputs["api_url"], timeout_s=120,
                           ca_certificate=ca_file.read_text(), screenshot_path=str(screenshot), **kwargs)


def test_the_edge_certificate_verifies_against_the_stack_ca(secure, ca_file):
    ui_url = secure.outputs["ui_url"]
    assert ui_url.startswith("https://127.0.0.1:") and secure.outputs["api_url"] == ui_url + "api"
    # Verified against the CA, hostname included (127.0.0.1 is in the certificate's SANs).
    settings = requests.get(f"{ui_url}ui-settings", verify=str(ca_file), timeout=10)
    assert settings.status_code == 200, settings.text
    # The UI learns from here that the API wants credentials and CSRF tokens.
    assert settings.json()["auth"] == "BASIC" and settings.json()["csrf_enabled"] is True, settings.text
    assert settings.json()["api_url"] == secure.outputs["api_url"], settings.text
    # Nothing else vouches for it: the default trust store refuses the certificate.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{ui_url}ui-settings", timeout=10)


def test_the_api_refuses_calls_without_credentials_and_posts_without_a_csrf_token(secure, ca_file, auth_string):
    api, verify = secure.outputs["api_url"], str(ca_file)
    user, password = auth_string.split(":", 1)
    anonymous = requests.get(f"{api}/admin/version", verify=verify, timeout=10)
    assert anonymous.status_code == 401, anonymous.text
    wrong = requests.get(f"{api}/admin/version", auth=(user, password + "x"), verify=verify, timeout=10)
    assert wrong.status_code == 401, wrong.text
    # (verify per request: a Session's verify loses to $REQUESTS_CA_BUNDLE when that is set)
    creds = {"auth": (user, password), "verify": verify, "timeout": 10}
    assert requests.get(f"{api}/admin/version", **creds).status_code == 200
    no_token = requests.post(f"{api}/flow_runs/filter", json={"limit": 1}, **creds)
    assert no_token.status_code == 403 and "CSRF" in no_token.text, (no_token.status_code, no_token.text)
    token = requests.get(f"{api}/csrf-token", params={"client": "ui-login-test"}, **creds)
    assert token.status_code == 200, token.text
    with_token = requests.post(f"{api}/flow_runs/filter", json={"limit": 1}, **creds, headers={
        "Prefect-Csrf-Token": token.json()["token"], "Prefect-Csrf-Client": "ui-login-test"})
    assert with_token.status_code == 200, with_token.text


def test_without_credentials_the_ui_shows_its_login_page_and_gets_no_data(secure, ca_file, flow_run, tmp_path):
    # There is a flow run to show, but not to a browser without credentials.
    result = _check(secure, ca_file, tmp_path / "login-page.png", find_in_data=flow_run["id"])
    summary = _summary(result)
    print(f"\n[ui-login] no credentials: {summary}")
    assert result["navigation_error"] is None, summary
    # Chromium verified the certificate against the CA it was given (no certificate errors ignored).
    assert (result["ui_tls"] or {}).get("issuer") == "prefect-ha edge CA", result["ui_tls"]
    assert (result["ui_settings"] or {}).get("auth") == "BASIC", result["ui_settings"]
    assert result["login_page_shown"] and "/login" in result["final_url"], summary
    assert not result["dashboard_loaded"] and result["data_calls_with_match"] == [], summary
    # The UI did ask the API, through the public URL, and every call that needs credentials was
    # refused with 401.
    assert result["api_requests"] > 0, summary
    assert result["failed_api_requests"], summary
    assert all(call.endswith("-> 401") for call in result["failed_api_requests"]), summary
    assert result["other_hosts_called"] == [], summary
    assert not result["connection_error_shown"], summary


def test_after_logging_in_with_the_client_env_auth_string_the_dashboard_shows_data(
        secure, ca_file, auth_string, flow_run, tmp_path):
    # The Flow Runs card counts the one run of this stack: "1 total". Its "Past day" window ends
    # at the current minute, rounded down (the UI sends before_=<hh:mm>:00), so a run from the
    # current minute is not counted yet: wait for the next minute if need be.
    created = datetime.fromisoformat(flow_run["created"].replace("Z", "+00:00")).timestamp()
    wait = (math.floor(created / 60) + 1) * 60 + 1 - time.time()
    if wait > 0:
        print(f"\n[ui-login] waiting {wait:.0f} s for the flow run's minute to pass")
        time.sleep(wait)
    result = _check(secure, ca_file, tmp_path / "dashboard.png", auth_string=auth_string,
                    find_in_data=flow_run["id"], find_on_page="1 total")
    summary = _summary(result)
    print(f"\n[ui-login] logged in: {summary}")
    assert result["navigation_error"] is None, summary
    assert (result["ui_tls"] or {}).get("issuer") == "prefect-ha edge CA", result["ui_tls"]
    # Before the login the UI's calls were refused.
    assert result["login_page_shown"], summary
    assert result["before_login"]["unauthorized"] > 0, summary
    assert all(c.endswith("-> 401") for c in result["before_login"]["failed_api_requests"]), summary
    # The login went through and the dashboard got data from the public API URL.
    assert result["login_submitted"] and result["logged_in"] and result["login_error"] is None, summary
    assert result["dashboard_loaded"] and result["dashboard_rendered"], summary
    assert "/dashboard" in result["final_url"], summary
    assert result["api_requests"] > 0, summary
    # Nothing refused after the login: no 401/403 (auth, CSRF), no 429 (rate limit).
    assert result["failed_api_requests"] == [], summary
    # CSRF protection is on and the UI works with it: it fetched a token (with its credentials)
    # and its POST queries were accepted.
    calls = result["api_calls"]
    assert any("/api/csrf-token?" in c and c.endswith("-> 200") for c in calls), calls
    assert any(c.startswith("POST ") and c.endswith("-> 200") for c in calls), calls
    # The flow run made through the API is among the data the dashboard fetched, and shown.
    assert result["data_calls_with_match"], summary
    assert result["found_on_page"], summary
    assert result["other_hosts_called"] == [], summary
    assert not result["connection_error_shown"], summary


@pytest.mark.parametrize("which", ["wrong password", "password without the user"])
def test_a_wrong_auth_string_is_refused(secure, ca_file, auth_string, which, tmp_path):
    user, password = auth_string.split(":", 1)
    wrong = f"{user}:{password[:-1]}{'x' if password[-1] != 'x' else 'y'}" if which == "wrong password" else password
    result = _check(secure, ca_file, tmp_path / "refused.png", auth_string=wrong, login_quiet_s=2.0)
    summary = _summary(result)
    print(f"\n[ui-login] {which}: {summary}")
    assert result["navigation_error"] is None, summary
    assert result["login_page_shown"] and result["login_submitted"], summary
    assert not result["logged_in"] and "/login" in result["final_url"], summary
    assert result["login_error"], summary  # v2: "Invalid credentials"
    assert not result["dashboard_loaded"], summary
    # The UI checked the string with the API, which refused it.
    assert any(c.endswith("-> 401") for c in result["failed_api_requests"]), summary
    assert all(c.endswith("-> 401") for c in result["failed_api_requests"]), summary
