"""Drive a real headless Chromium through the Prefect UI's dashboard and report what it called.

    from ui_check import check_dashboard
    result = check_dashboard("http://127.0.0.1:8080/", "http://127.0.0.1:8080/api")
    assert result["dashboard_loaded"] and result["dashboard_rendered"], result
    assert not result["failed_api_requests"], result
    assert not result["other_hosts_called"], result
    assert not result["connection_error_shown"], result

The browser is Debian's `chromium` (/usr/bin/chromium, or $UI_CHECK_CHROMIUM) driven by the
`playwright` Python package; no Playwright-managed browser download is used.

Behind Prefect's own auth (PREFECT_SERVER_API_AUTH_STRING) and TLS with a private CA:

    result = check_dashboard(ui_url, api_url, auth_string="prefect:<password>", ca_certificate=pem)
    assert result["login_page_shown"] and result["logged_in"] and result["dashboard_loaded"], result

Prefect 3.8.8's UIs learn from `<ui>/ui-settings` that the server wants credentials
(`"auth": "BASIC"`) and then show a login page (v2: /v2/login?redirectTo=..., v1: /login): one
password field (placeholder "admin:pass") and a "Login" submit button. The user types the whole
auth string, user:password; the UI keeps btoa(it) in localStorage["prefect-password"] after
checking it with GET <api>/admin/version (v2), and sends `Authorization: Basic <that>` on every
API call from then on (and on GET <api>/csrf-token, whose token goes with each POST/PUT/PATCH/
DELETE when the server has CSRF protection on). A wrong string leaves the login page showing
"Invalid credentials" (v2) or an "Authentication failed." toast (v1). With `auth_string` the
check types it into that form and submits it as a user would; without it the check stops as
soon as the login page is shown (`login_page_shown`).

`ca_certificate` (PEM) makes Chromium trust that CA as a user's browser would after importing it:
the check gives Chromium a throwaway $HOME whose NSS database (~/.pki/nssdb, where Chromium on
Linux keeps user-added trust anchors) holds the CA as trusted for TLS servers. Certificate errors
are never ignored: a certificate the CA did not sign, or one for another host, fails the page load
(`navigation_error` names the net::ERR_CERT_... error).

What it is for: the UI learns the API's address from `<ui>/ui-settings` (the server's
PREFECT_SERVER_UI_API_URL, falling back to PREFECT_API_URL or http://<server host>:<port>/api).
When that is wrong the page itself loads fine but every API call goes to e.g.
http://0.0.0.0:4200/api, which the browser cannot reach (or, worse, reaches another server).
Such calls show up in `other_hosts_called`, not in `api_requests`.

Prefect 3.8 ships two UI bundles: the React "v2" UI at /v2/ (the default: the server redirects a
browser from / to /v2/) and the Vue "v1" UI at /. Both route / to their /dashboard, and both show
the toast "Can't connect to Server API at <url>. ..." when `<api>/health` fails; the v2 UI also
shows "Unable to connect to Prefect server" / "Failed to connect to Prefect server" on network
errors. The check opens `ui_url` and lets the server and the UI pick the dashboard route.

The page itself (what the check waits for, logs in to and records) is ui_page.py; the CA import
is ui_nss.py, run as a child process.

Only infrastructure problems (no Chromium, no playwright, the browser cannot start or crashes)
raise, as UICheckInfraError. Anything the deployment does wrong -- including the UI being
unreachable -- is reported in the returned dict for the caller to assert on.

Chromium aborts its in-flight requests with net::ERR_NETWORK_CHANGED whenever a network
interface appears or goes (Docker adding a veth for any container on the host), loopback
included, and has no switch to turn that off. A page load hit by it is retried with a fresh
browser context (`network_changed_retries` counts these); the dict describes the last load.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator

CHROMIUM = os.environ.get("UI_CHECK_CHROMIUM", "/usr/bin/chromium")

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # /dev/shm is small in containers
]

_MAX_LOADS = 5  # first load + ERR_NETWORK_CHANGED retries (each hit load is dropped in ~1-3 s)
_NSS_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ui_nss.py")


class UICheckInfraError(RuntimeError):
    """The check itself could not run (browser missing/broken), as opposed to a UI failure."""


def check_dashboard(
    ui_url: str,
    api_url: str,
    timeout_s: float = 60,
    *,
    screenshot_path: str | None = None,
    auth_string: str | None = None,
    ca_certificate: str | None = None,
    login_quiet_s: float = 5.0,
    find_in_data: str | None = None,
    find_on_page: str | re.Pattern[str] | None = None,
) -> dict[str, Any]:
    """Open the Prefect UI at `ui_url` in headless Chromium and wait (at most about `timeout_s`)
    until the dashboard has loaded data from `api_url` and rendered, or the UI shows its
    connection error, or (without `auth_string`) its login page.

    auth_string     when the UI shows its login page, type this (user:password) into it and
                    submit it, then wait for the dashboard as above. Before typing, the check
                    waits until the UI has started no API request for `login_quiet_s` seconds
                    (at most 15 s), as a user reading the page would: see `before_login`.
    ca_certificate  PEM of a CA for Chromium to trust (see the module docstring).
    find_in_data    a string (e.g. a flow run id) to look for in the bodies of the data calls
                    that answered < 400 after login; see `data_calls_with_match`.
    find_on_page    text (or a compiled regex) the dashboard should show once it has its data,
                    e.g. the Flow Runs card's "1 total"; waited for (at most 20 s) after the
                    dashboard rendered, see `found_on_page`.

    Returns a dict:
      api_requests            number of requests (CORS preflights excluded) whose URL starts
                              with `api_url` (after the login, when the check logged in)
      api_calls               "METHOD URL -> STATUS|error" of each of them, in order
      failed_api_requests     those with status >= 400 or that failed (refused, CORS, ...),
                              failed CORS preflights included
      api_peak_requests_per_s most API requests started within one second (rate limits)
      before_login            the same for the API requests the UI started before the login
                              was submitted: {"api_requests", "api_calls",
                              "failed_api_requests", "unauthorized" (how many answered 401)};
                              empty lists when the check did not log in
      login_page_shown        the UI showed its login form
      login_page_s            seconds from opening `ui_url` to the login form (None if never)
      login_submitted         the check typed `auth_string` into the form and submitted it
      logged_in               after submitting, the form is gone and the UI left its login route
      login_error             the UI's refusal text shown after submitting, or None
      login_s                 seconds from submitting to the first data call answering < 400
      data_calls_with_match   "METHOD URL" of the data calls (< 400, after login) whose body
                              contains `find_in_data`
      found_on_page           `find_on_page` is shown on the page (None when not asked)
      failed_ui_requests      requests to the UI origin (not the API) that answered >= 400 or
                              failed, e.g. an asset
      ui_tls                  Chromium's TLS details of the UI page (issuer, subjectName,
                              protocol, ...) when it is served over HTTPS, else None
      other_hosts_called      URLs of requests to any origin other than ui_url's and api_url's,
                              and to 0.0.0.0 (e.g. http://0.0.0.0:4200/api/health); telemetry
                              excluded
      telemetry_calls         third-party analytics URLs the UI tried (aborted by the check)
      connection_error_shown  the UI's own connection-error text is on the page
      connection_error_texts  which of ui_page.CONNECTION_ERROR_TEXTS are on the page
      dashboard_loaded        an API data endpoint (not /health, /admin/...) answered < 400
      dashboard_rendered      the dashboard page's own heading is on the page
      final_url               where the UI ended up (.../v2/dashboard?... for the default v2 UI)
      ui_settings             JSON the UI got from <ui>/ui-settings (None if it got none)
      navigation_error        why the UI page itself could not be opened (including the page
                              answering >= 400, e.g. 404 when the server has no UI bundle), or None
      ui_status               HTTP status of the UI page (after redirects), None if none came
      console_errors          first console errors / uncaught page errors
      network_changed_retries page loads redone after Chromium's ERR_NETWORK_CHANGED
      title                   page title
      screenshot              path of a PNG of the page
      elapsed_s               seconds the check took
    """
    started = time.monotonic()
    deadline = started + timeout_s
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        raise UICheckInfraError(
            f"no Chromium at {CHROMIUM}: install Debian's package 'chromium' (apt-get install chromium)"
        )
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise UICheckInfraError(f"the 'playwright' Python package is not importable: {exc}") from exc
    from ui_page import LoadOptions

    if screenshot_path is None:
        fd, screenshot_path = tempfile.mkstemp(prefix="prefect-ui-", suffix=".png")
        os.close(fd)
    options = LoadOptions(auth_string=auth_string, quiet_s=login_quiet_s, find_in_data=find_in_data,
                          find_on_page=find_on_page)
    try:
        with _browser_env(ca_certificate) as launch_env, sync_playwright() as pw:
            browser = _launch(pw, launch_env, deadline)
            try:
                result = _load_with_retries(browser, ui_url, api_url, deadline, screenshot_path, options)
            finally:
                browser.close()
    except UICheckInfraError:
        raise
    except PlaywrightError as exc:
        raise UICheckInfraError(f"the browser session failed: {exc}") from exc
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    return result


@contextlib.contextmanager
def _browser_env(ca_certificate: str | None) -> Iterator[dict[str, str] | None]:
    """The environment to launch Chromium with: None (this process's), or with a CA to trust,
    a throwaway $HOME whose NSS database trusts it (removed afterwards)."""
    if ca_certificate is None:
        yield None
        return
    home = tempfile.mkdtemp(prefix="prefect-ui-home-")
    try:
        _trust_ca_in_nss_db(os.path.join(home, ".pki", "nssdb"), ca_certificate)
        yield {**os.environ, "HOME": home}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _launch(pw: Any, env: dict[str, str] | None, deadline: float) -> Any:
    from playwright.sync_api import Error as PlaywrightError

    try:
        # launch() gives the browser a fresh temporary --user-data-dir of its own (it refuses
        # one in args) and deletes it on close.
        return pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            env=env,
            timeout=max(min(deadline - time.monotonic(), 30.0), 5.0) * 1000,
        )
    except PlaywrightError as exc:
        raise UICheckInfraError(f"Chromium ({CHROMIUM}) did not start: {exc}") from exc


def _load_with_retries(browser: Any, ui_url: str, api_url: str, deadline: float, screenshot_path: str,
                       options: Any) -> dict[str, Any]:
    """Load the dashboard, again in a fresh context while ERR_NETWORK_CHANGED hit the load
    (at most _MAX_LOADS loads, and none started in the last 5 s before the deadline)."""
    from ui_page import PageCrashed, load_dashboard

    retries = 0
    while True:
        try:
            result, network_changed = load_dashboard(browser, ui_url, api_url, deadline, screenshot_path, options)
        except PageCrashed as exc:
            raise UICheckInfraError(str(exc)) from exc
        if not network_changed or retries + 1 >= _MAX_LOADS or time.monotonic() > deadline - 5:
            break
        retries += 1
    result["network_changed_retries"] = retries
    return result


def _trust_ca_in_nss_db(db_dir: str, ca_pem: str) -> None:
    """Create the NSS database `db_dir` holding the CA certificate(s) of `ca_pem`, trusted for
    issuing TLS server certificates (certutil's "CT,,"), as Chromium on Linux reads it from
    ~/.pki/nssdb; done by ui_nss.py in a child process."""
    os.makedirs(db_dir, mode=0o700)
    proc = subprocess.run(
        [sys.executable, _NSS_CHILD, db_dir],
        input=ca_pem, capture_output=True, text=True, timeout=60,
    )
    if proc.returncode:
        raise UICheckInfraError(
            f"could not make an NSS database trusting the CA (libnss3 is a dependency of Chromium): "
            f"{(proc.stderr or proc.stdout)[-2000:]}"
        )


if __name__ == "__main__":
    # python tests/e2e/ui_check.py UI_URL API_URL [TIMEOUT_S]
    #   with $UI_CHECK_AUTH_STRING (user:password) to log in, $UI_CHECK_CA_FILE (PEM) to trust
    import json

    ca_file = os.environ.get("UI_CHECK_CA_FILE")
    ca_pem = open(ca_file).read() if ca_file else None
    print(json.dumps(check_dashboard(sys.argv[1], sys.argv[2], *map(float, sys.argv[3:4]),
                                     auth_string=os.environ.get("UI_CHECK_AUTH_STRING"),
                                     ca_certificate=ca_pem), indent=2))
