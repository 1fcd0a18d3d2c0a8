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

Only infrastructure problems (no Chromium, no playwright, the browser cannot start or crashes)
raise, as UICheckInfraError. Anything the deployment does wrong -- including the UI being
unreachable -- is reported in the returned dict for the caller to assert on.

Chromium aborts its in-flight requests with net::ERR_NETWORK_CHANGED whenever a network
interface appears or goes (Docker adding a veth for any container on the host), loopback
included, and has no switch to turn that off. A page load hit by it is retried with a fresh
browser context (`network_changed_retries` counts these); the dict describes the last load.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

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

# The UI's own connection-error texts (prefect/server/ui and ui-v2 bundles of Prefect 3.8.8).
CONNECTION_ERROR_TEXTS = (
    "Can't connect to Server API",  # v1 + v2: GET <api>/health failed
    "Unable to connect to Prefect server",  # v2: network error on a query
    "Failed to connect to Prefect server",  # v2: GET <ui>/ui-settings failed
)
_CONNECTION_ERROR_RE = re.compile("|".join(re.escape(t) for t in CONNECTION_ERROR_TEXTS))

# API paths whose success does not mean the dashboard got data.
_NOT_DATA_PATHS = re.compile(r"/(health|csrf-token|version|admin/version|admin/settings|hello)/?$")

_IGNORED_SCHEMES = ("data:", "blob:", "about:", "chrome:", "chrome-extension:", "devtools:")

# Third-party telemetry the v2 UI calls on every load whatever the server's settings: Amplitude's
# remote config (always; PREFECT_SERVER_ANALYTICS_ENABLED=false only stops the event POSTs to
# api2.amplitude.com). Such requests are aborted in the browser (no DNS wait, nothing leaves the
# test bed) and reported in `telemetry_calls`, not in `other_hosts_called`.
_TELEMETRY_URL = re.compile(r"^https?://([^/]*\.)?amplitude\.com(:\d+)?/", re.IGNORECASE)

# The dashboard page's own heading (not the sidebar link): v2 breadcrumb in <main>, v1 page-heading.
_DASHBOARD_HEADING = (
    'main [data-slot="breadcrumb-item"]:text-is("Dashboard"), '
    '.workspace-dashboard .page-heading:has-text("Dashboard")'
)

_MAX_LOADS = 5  # first load + ERR_NETWORK_CHANGED retries (each hit load is dropped in ~1-3 s)

# The login form of both UIs (v2 login route, v1 Unauthenticated page): one password input.
_LOGIN_INPUT = 'form input[type="password"]'
_LOGIN_SUBMIT = 'form:has(input[type="password"]) button[type="submit"]'
# What the UIs show when the auth string is refused: v2 under the input ("Invalid credentials",
# or "Authentication failed" when the check itself failed) and as a toast ("Authentication
# failed."), v1 as a toast ("Authentication failed.") or under the input ("Invalid password").
_LOGIN_ERROR_RE = re.compile(r"Invalid credentials|Authentication failed|Invalid password")


class UICheckInfraError(RuntimeError):
    """The check itself could not run (browser missing/broken), as opposed to a UI failure."""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


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
      connection_error_texts  which of CONNECTION_ERROR_TEXTS are on the page
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

    if screenshot_path is None:
        fd, screenshot_path = tempfile.mkstemp(prefix="prefect-ui-", suffix=".png")
        os.close(fd)

    home = None
    launch_env: dict[str, str] | None = None
    if ca_certificate is not None:
        home = tempfile.mkdtemp(prefix="prefect-ui-home-")
        try:
            _trust_ca_in_nss_db(os.path.join(home, ".pki", "nssdb"), ca_certificate)
        except BaseException:
            shutil.rmtree(home, ignore_errors=True)
            raise
        launch_env = {**os.environ, "HOME": home}
    login = {"auth_string": auth_string, "quiet_s": login_quiet_s, "find_in_data": find_in_data,
             "find_on_page": find_on_page}

    try:
        with sync_playwright() as pw:
            try:
                # launch() gives the browser a fresh temporary --user-data-dir of its own (it
                # refuses one in args) and deletes it on close.
                browser = pw.chromium.launch(
                    executable_path=CHROMIUM,
                    headless=True,
                    args=CHROMIUM_ARGS,
                    env=launch_env,
                    timeout=max(min(deadline - time.monotonic(), 30.0), 5.0) * 1000,
                )
            except PlaywrightError as exc:
                raise UICheckInfraError(f"Chromium ({CHROMIUM}) did not start: {exc}") from exc
            try:
                retries = 0
                while True:
                    result, network_changed = _load_dashboard(
                        browser, ui_url, api_url, deadline, screenshot_path, login
                    )
                    if not network_changed or retries + 1 >= _MAX_LOADS or time.monotonic() > deadline - 5:
                        break
                    retries += 1
                result["network_changed_retries"] = retries
            finally:
                browser.close()
    except UICheckInfraError:
        raise
    except PlaywrightError as exc:
        raise UICheckInfraError(f"the browser session failed: {exc}") from exc
    finally:
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    return result


def _trust_ca_in_nss_db(db_dir: str, ca_pem: str) -> None:
    """Create the NSS database `db_dir` holding the CA certificate(s) of `ca_pem`, trusted for
    issuing TLS server certificates (certutil's "CT,,"), as Chromium on Linux reads it from
    ~/.pki/nssdb. Done in a child process: NSS is initialised once per process and a ctypes
    mistake must not take the test run down."""
    os.makedirs(db_dir, mode=0o700)
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--nss-trust-ca", db_dir],
        input=ca_pem, capture_output=True, text=True, timeout=60,
    )
    if proc.returncode:
        raise UICheckInfraError(
            f"could not make an NSS database trusting the CA (libnss3 is a dependency of Chromium): "
            f"{(proc.stderr or proc.stdout)[-2000:]}"
        )


def _nss_trust_ca(db_dir: str, ca_pem: str) -> None:
    """The child process of _trust_ca_in_nss_db: libnss3 through ctypes (certutil -A -t CT,,
    without needing libnss3-tools)."""
    import ctypes

    certs = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", ca_pem, re.S)
    if not certs:
        raise ValueError("ca_certificate holds no PEM certificate")
    nss = ctypes.CDLL("libnss3.so")
    nspr = ctypes.CDLL("libnspr4.so")

    class SECItem(ctypes.Structure):
        _fields_ = [("type", ctypes.c_int), ("data", ctypes.c_char_p), ("len", ctypes.c_uint)]

    class CERTCertTrust(ctypes.Structure):
        _fields_ = [("sslFlags", ctypes.c_uint), ("emailFlags", ctypes.c_uint),
                    ("objectSigningFlags", ctypes.c_uint)]

    vp = ctypes.c_void_p
    nss.NSS_InitReadWrite.argtypes = [ctypes.c_char_p]
    nss.PK11_GetInternalKeySlot.restype = vp
    nss.PK11_NeedUserInit.argtypes = [vp]
    nss.PK11_InitPin.argtypes = [vp, ctypes.c_char_p, ctypes.c_char_p]
    nss.PK11_Authenticate.argtypes = [vp, ctypes.c_int, vp]
    nss.PK11_FreeSlot.argtypes = [vp]
    nss.CERT_GetDefaultCertDB.restype = vp
    nss.CERT_NewTempCertificate.restype = vp
    nss.CERT_NewTempCertificate.argtypes = [vp, ctypes.POINTER(SECItem), ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    nss.PK11_ImportCert.argtypes = [vp, vp, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    nss.CERT_ChangeCertTrust.argtypes = [vp, vp, ctypes.POINTER(CERTCertTrust)]
    nss.CERT_DestroyCertificate.argtypes = [vp]

    def check(status: int, what: str) -> None:
        if status != 0:  # SECSuccess
            raise RuntimeError(f"{what} failed: NSS error {nspr.PR_GetError()}")

    check(nss.NSS_InitReadWrite(f"sql:{db_dir}".encode()), "NSS_InitReadWrite")
    slot = nss.PK11_GetInternalKeySlot()
    try:
        if nss.PK11_NeedUserInit(slot):
            check(nss.PK11_InitPin(slot, None, b""), "PK11_InitPin")  # empty password, as certutil -N --empty-password
        check(nss.PK11_Authenticate(slot, 1, None), "PK11_Authenticate")
        # CERTDB_VALID_CA | CERTDB_TRUSTED_CA | CERTDB_TRUSTED_CLIENT_CA for TLS: "CT,,"
        trust = CERTCertTrust((1 << 3) | (1 << 4) | (1 << 7), 0, 0)
        for n, pem in enumerate(certs):
            der = ssl.PEM_cert_to_DER_cert(pem)
            item = SECItem(0, der, len(der))
            cert = nss.CERT_NewTempCertificate(nss.CERT_GetDefaultCertDB(), ctypes.byref(item), None, 0, 1)
            if not cert:
                raise RuntimeError(f"CERT_NewTempCertificate failed: NSS error {nspr.PR_GetError()}")
            try:
                check(nss.PK11_ImportCert(slot, cert, 0, f"ui-check CA {n}".encode(), 0), "PK11_ImportCert")
                check(nss.CERT_ChangeCertTrust(nss.CERT_GetDefaultCertDB(), cert, ctypes.byref(trust)),
                      "CERT_ChangeCertTrust")
            finally:
                nss.CERT_DestroyCertificate(cert)
    finally:
        nss.PK11_FreeSlot(slot)
    check(nss.NSS_Shutdown(), "NSS_Shutdown")


def _peak_per_second(starts: list[float]) -> int:
    starts = sorted(starts)
    peak, lo = 0, 0
    for hi, t in enumerate(starts):
        while t - starts[lo] >= 1.0:
            lo += 1
        peak = max(peak, hi - lo + 1)
    return peak


def _load_dashboard(
    browser: Any, ui_url: str, api_url: str, deadline: float, screenshot_path: str,
    login: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], bool]:
    """One page load in a fresh context; returns the report and whether ERR_NETWORK_CHANGED hit it."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    login = login or {}
    auth_string = login.get("auth_string")
    find_in_data = login.get("find_in_data")
    find_on_page = login.get("find_on_page")
    opened = time.monotonic()

    def remaining_ms(cap_s: float | None = None) -> float:
        left = max(deadline - time.monotonic(), 0.0)
        if cap_s is not None:
            left = min(left, cap_s)
        return max(left * 1000.0, 1.0)

    api_prefix = api_url.rstrip("/")
    ui_origin, api_origin = _origin(ui_url), _origin(api_url)

    def is_api(url: str) -> bool:
        return url == api_prefix or url.startswith((api_prefix + "/", api_prefix + "?"))

    def is_data_response(response: Any) -> bool:
        if not is_api(response.url) or response.status >= 400 or response.request.method == "OPTIONS":
            return False
        return not _NOT_DATA_PATHS.search(urlsplit(response.url).path)

    # Each API request's outcome, in order: (request, "METHOD URL -> STATUS|error", failed, status).
    # Split into before/after the login at the end (by when the browser started the request).
    api_records: list[tuple[Any, str, bool, int | None]] = []
    api_starts: list[float] = []
    request_flag_phase: dict[Any, bool] = {}  # request -> login already submitted when seen
    data_responses: list[Any] = []
    failed_ui: list[str] = []
    other_hosts: list[str] = []
    telemetry: list[str] = []
    console_errors: list[str] = []
    ui_settings_responses: list[Any] = []
    in_flight: set[Any] = set()  # API and other-host requests not finished yet
    flags: dict[str, Any] = {
        "data_ok": False, "crashed": False, "network_changed": False,
        "submitted": False, "submitted_wall_ms": None, "data_ok_at": None, "last_api_request": opened,
    }

    def on_request(request: Any) -> None:
        url = request.url
        if url.startswith(_IGNORED_SCHEMES):
            return
        if is_api(url):
            in_flight.add(request)
            request_flag_phase[request] = flags["submitted"]
            if request.method != "OPTIONS":
                api_starts.append(time.monotonic())
                flags["last_api_request"] = time.monotonic()
        elif _TELEMETRY_URL.match(url):
            if url not in telemetry:
                telemetry.append(url)
        elif _origin(url) not in (ui_origin, api_origin) or urlsplit(url).hostname == "0.0.0.0":
            in_flight.add(request)
            if url not in other_hosts:
                other_hosts.append(url)

    def on_response(response: Any) -> None:
        url, method = response.url, response.request.method
        if is_api(url) and (method != "OPTIONS" or response.status >= 400):
            api_records.append((response.request, f"{method} {url} -> {response.status}",
                                response.status >= 400, response.status))
        elif not is_api(url) and _origin(url) == ui_origin and response.status >= 400:
            failed_ui.append(f"{method} {url} -> {response.status}")
        if is_data_response(response):
            if not flags["data_ok"]:
                flags["data_ok_at"] = time.monotonic()
            flags["data_ok"] = True
            data_responses.append(response)
        if urlsplit(url).path.endswith("/ui-settings"):
            ui_settings_responses.append(response)

    def on_request_finished(request: Any) -> None:
        in_flight.discard(request)

    def on_request_failed(request: Any) -> None:
        in_flight.discard(request)
        failure = request.failure or "failed"
        if "ERR_NETWORK_CHANGED" in failure:
            flags["network_changed"] = True
        if is_api(request.url):
            api_records.append((request, f"{request.method} {request.url} -> {failure}", True, None))
        elif _origin(request.url) == ui_origin and not request.url.startswith(_IGNORED_SCHEMES):
            failed_ui.append(f"{request.method} {request.url} -> {failure}")

    def on_console(message: Any) -> None:
        if message.type != "error" or len(console_errors) >= 20:
            return
        if _TELEMETRY_URL.match((message.location or {}).get("url") or ""):
            return  # "Failed to load resource" of the aborted telemetry
        console_errors.append(message.text[:500])

    def on_page_error(error: Any) -> None:
        if len(console_errors) < 20:
            console_errors.append(f"uncaught: {str(error)[:500]}")

    def wait_until(done: Callable[[], bool], cap_s: float, event: str = "response") -> None:
        """Until done() or the cap: each slice returns early on the next `event` of the page."""
        until = min(deadline, time.monotonic() + cap_s)
        while not done() and not flags["crashed"] and time.monotonic() < until:
            try:
                page.wait_for_event(event, timeout=max(min(until - time.monotonic(), 0.25), 0.001) * 1000)
            except PlaywrightTimeout:
                pass

    def before_login(request: Any) -> bool:
        """The browser started `request` before the login was submitted."""
        if flags["submitted_wall_ms"] is None:
            return False
        try:
            start = request.timing["startTime"]
        except Exception:  # noqa: BLE001 - no timing: go by when the check saw it
            start = -1
        if start and start > 0:
            return start < flags["submitted_wall_ms"]
        return not request_flag_phase.get(request, True)

    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        context.route(_TELEMETRY_URL, lambda route: route.abort())
        context.on("request", on_request)
        context.on("response", on_response)
        context.on("requestfinished", on_request_finished)
        context.on("requestfailed", on_request_failed)
        page = context.new_page()
        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        page.on("crash", lambda _page: flags.update(crashed=True))
        error_text = page.get_by_text(_CONNECTION_ERROR_RE)
        heading = page.locator(_DASHBOARD_HEADING).first
        login_input = page.locator(_LOGIN_INPUT)
        login_error = page.get_by_text(_LOGIN_ERROR_RE)

        def login_form_shown() -> bool:
            return login_input.count() > 0 and login_input.first.is_visible()

        navigation_error = None
        ui_status = None
        ui_tls = None
        login_page_s = login_s = None
        login_error_text = None
        login_page_seen = False
        try:
            # The server redirects / to the default UI (/v2/), whose router goes on to its
            # dashboard route (or to its login route when the server wants credentials).
            response = page.goto(urljoin(ui_url, ""), wait_until="domcontentloaded", timeout=remaining_ms())
            if response is not None:
                ui_status = response.status
                if urlsplit(response.url).scheme == "https":
                    ui_tls = response.security_details()
        except PlaywrightError as exc:
            navigation_error = str(exc).splitlines()[0]
            flags["network_changed"] |= "ERR_NETWORK_CHANGED" in str(exc)

        if navigation_error is None and ui_status is not None and ui_status >= 400:
            # No UI to wait for: the server answered the page itself with an error (e.g. 404
            # when it could not mount its UI bundles).
            navigation_error = f"{urljoin(ui_url, '')} answered {ui_status}"

        if navigation_error is None:
            # Until the dashboard got data from the API, or the UI says it cannot reach it, or
            # it asks for credentials.
            wait_until(
                lambda: flags["data_ok"] or flags["network_changed"] or error_text.count() > 0
                or login_form_shown(),
                cap_s=deadline - time.monotonic(),
            )
            if not flags["data_ok"] and not flags["network_changed"] and login_form_shown():
                login_page_seen = True
                login_page_s = round(time.monotonic() - opened, 2)
            if login_page_seen and auth_string is not None:
                # A user reads the page before typing: let the UI's unauthenticated queries and
                # their retries (react-query: after 1, 2, 4 s) settle first.
                quiet = float(login.get("quiet_s") or 0)
                wait_until(
                    lambda: flags["network_changed"]
                    or (not in_flight and time.monotonic() - flags["last_api_request"] >= quiet),
                    cap_s=min(15.0, quiet * 3),
                )
                errors_before = login_error.count()
                field = login_input.first
                field.click(timeout=remaining_ms(10))
                field.press_sequentially(auth_string, timeout=remaining_ms(30))
                flags["submitted_wall_ms"] = time.time() * 1000.0
                flags["submitted"] = True
                submitted_at = time.monotonic()
                page.locator(_LOGIN_SUBMIT).first.click(timeout=remaining_ms(10))
                wait_until(
                    lambda: flags["data_ok"] or flags["network_changed"] or error_text.count() > 0
                    or login_error.count() > errors_before,
                    cap_s=deadline - time.monotonic(),
                )
                if flags["data_ok_at"] is not None:
                    login_s = round(max(flags["data_ok_at"] - submitted_at, 0.0), 2)
                if login_error.count() > errors_before:
                    try:
                        login_error_text = login_error.last.inner_text(timeout=2_000).strip()
                    except PlaywrightError:
                        login_error_text = "(login error shown)"
            if flags["data_ok"] and not flags["network_changed"]:
                try:  # the page component replaces the router's loading spinner
                    heading.wait_for(state="visible", timeout=remaining_ms(20))
                except PlaywrightTimeout:
                    pass
                if find_on_page is not None:
                    try:
                        page.get_by_text(find_on_page).first.wait_for(state="visible", timeout=remaining_ms(20))
                    except PlaywrightTimeout:
                        pass
            # The health probe and whatever else the dashboard asked for settle, then the UI
            # gets two frames to show a toast about them.
            wait_until(lambda: not in_flight or flags["network_changed"], cap_s=10, event="requestfinished")
            try:
                page.evaluate(
                    "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
                )
            except PlaywrightError:
                pass

        if flags["crashed"]:
            raise UICheckInfraError("the Chromium page crashed")
        body_text = _safe_body_text(page)
        shown = [t for t in CONNECTION_ERROR_TEXTS if t in body_text]
        ui_settings = None
        for response in ui_settings_responses:
            try:
                ui_settings = response.json()
            except Exception:  # noqa: BLE001 - a non-JSON ui-settings is reported as None
                pass
        page.screenshot(path=screenshot_path, full_page=False, timeout=30_000)

        before = [r for r in api_records if before_login(r[0])]
        after = [r for r in api_records if not before_login(r[0])]
        matches: list[str] = []
        if find_in_data is not None:
            for response in data_responses:
                if before_login(response.request):
                    continue
                try:
                    if find_in_data in response.text():
                        matches.append(f"{response.request.method} {response.url}")
                except PlaywrightError:
                    pass
        logged_in = bool(
            flags["submitted"] and not login_form_shown() and "/login" not in urlsplit(page.url).path
        )

        def calls(records: list[tuple[Any, str, bool, int | None]]) -> list[str]:
            return [entry for request, entry, _failed, _status in records if request.method != "OPTIONS"]

        result = {
            "api_requests": len(calls(after)),
            "api_calls": calls(after),
            "failed_api_requests": [entry for _r, entry, failed, _s in after if failed],
            "api_peak_requests_per_s": _peak_per_second(api_starts),
            "before_login": {
                "api_requests": len(calls(before)),
                "api_calls": calls(before),
                "failed_api_requests": [entry for _r, entry, failed, _s in before if failed],
                "unauthorized": sum(1 for _r, _e, _f, status in before if status == 401),
            },
            "other_hosts_called": list(other_hosts),
            "telemetry_calls": list(telemetry),
            "connection_error_shown": bool(shown),
            "connection_error_texts": shown,
            "dashboard_loaded": flags["data_ok"],
            "dashboard_rendered": heading.count() > 0,
            "login_page_shown": login_page_seen,
            "login_page_s": login_page_s,
            "login_submitted": flags["submitted"],
            "logged_in": logged_in,
            "login_error": login_error_text,
            "login_s": login_s,
            "data_calls_with_match": matches,
            "found_on_page": None if find_on_page is None else page.get_by_text(find_on_page).count() > 0,
            "failed_ui_requests": list(failed_ui),
            "ui_tls": ui_tls,
            "ui_status": ui_status,
            "final_url": page.url,
            "ui_settings": ui_settings,
            "navigation_error": navigation_error,
            "console_errors": list(console_errors),
            "title": page.title(),
            "screenshot": screenshot_path,
        }
        return result, flags["network_changed"]
    finally:
        context.close()


def _safe_body_text(page: Any) -> str:
    try:
        return page.inner_text("body", timeout=5_000)
    except Exception:  # noqa: BLE001 - a page without body has no error text either
        return ""


if __name__ == "__main__":
    # python tests/e2e/ui_check.py UI_URL API_URL [TIMEOUT_S]
    #   with $UI_CHECK_AUTH_STRING (user:password) to log in, $UI_CHECK_CA_FILE (PEM) to trust;
    # python tests/e2e/ui_check.py --nss-trust-ca DB_DIR < ca.pem  (the child of _trust_ca_in_nss_db)
    import json

    if sys.argv[1:2] == ["--nss-trust-ca"]:
        _nss_trust_ca(sys.argv[2], sys.stdin.read())
        sys.exit(0)
    ca_file = os.environ.get("UI_CHECK_CA_FILE")
    ca_pem = open(ca_file).read() if ca_file else None
    print(json.dumps(check_dashboard(sys.argv[1], sys.argv[2], *map(float, sys.argv[3:4]),
                                     auth_string=os.environ.get("UI_CHECK_AUTH_STRING"),
                                     ca_certificate=ca_pem), indent=2))
