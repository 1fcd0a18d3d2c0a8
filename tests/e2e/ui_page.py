"""One load of the Prefect UI in a fresh browser context, in named steps; ui_check.py drives it.

`load_dashboard` opens a context and runs a `DashboardLoad`: open the UI, wait for its first
screen (dashboard data, the UI's connection error, or its login form), log in when asked, wait
for the dashboard to render, let the page settle, report. What the page asked for is kept by a
`NetworkLog` (as the browser reported each request), its console errors by a `ConsoleLog`.
The report's keys are described in ui_check.check_dashboard.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

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

# The login form of both UIs (v2 login route, v1 Unauthenticated page): one password input.
_LOGIN_INPUT = 'form input[type="password"]'
_LOGIN_SUBMIT = 'form:has(input[type="password"]) button[type="submit"]'
# What the UIs show when the auth string is refused: v2 under the input ("Invalid credentials",
# or "Authentication failed" when the check itself failed) and as a toast ("Authentication
# failed."), v1 as a toast ("Authentication failed.") or under the input ("Invalid password").
_LOGIN_ERROR_RE = re.compile(r"Invalid credentials|Authentication failed|Invalid password")

_MAX_CONSOLE_ERRORS = 20


class PageCrashed(RuntimeError):
    """Chromium's renderer of the page crashed (an infrastructure failure, not the UI's)."""


@dataclass(frozen=True)
class LoadOptions:
    """What the check does on the page besides waiting (see ui_check.check_dashboard)."""

    auth_string: str | None = None
    quiet_s: float = 5.0
    find_in_data: str | None = None
    find_on_page: str | re.Pattern[str] | None = None


@dataclass(frozen=True)
class ApiCall:
    request: Any
    entry: str  # "METHOD URL -> STATUS|error"
    failed: bool
    status: int | None


def origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def peak_per_second(starts: list[float]) -> int:
    """Most of `starts` (monotonic seconds) within one second of each other."""
    starts = sorted(starts)
    peak, lo = 0, 0
    for hi, t in enumerate(starts):
        while t - starts[lo] >= 1.0:
            lo += 1
        peak = max(peak, hi - lo + 1)
    return peak


class NetworkLog:
    """The page's requests, sorted as the report needs them, from the browser context's events."""

    def __init__(self, ui_url: str, api_url: str, opened: float):
        self.api_prefix = api_url.rstrip("/")
        self.ui_origin, self.api_origin = origin(ui_url), origin(api_url)
        # Each API request's outcome, in order; split into before/after the login at the end.
        self.api_calls: list[ApiCall] = []
        self.api_starts: list[float] = []
        self.data_responses: list[Any] = []
        self.failed_ui: list[str] = []
        self.other_hosts: list[str] = []
        self.telemetry: list[str] = []
        self.ui_settings_responses: list[Any] = []
        self.in_flight: set[Any] = set()  # API and other-host requests not finished yet
        self.seen_after_submit: dict[Any, bool] = {}  # API request -> login already submitted when seen
        self.submitted_wall_ms: float | None = None  # the browser's clock (ms) when the login was submitted
        self.data_ok_at: float | None = None  # first data response (monotonic)
        self.last_api_request = opened
        self.network_changed = False  # Chromium's ERR_NETWORK_CHANGED hit a request

    @property
    def data_ok(self) -> bool:
        return self.data_ok_at is not None

    @property
    def submitted(self) -> bool:
        return self.submitted_wall_ms is not None

    def attach(self, context: Any) -> None:
        context.on("request", self.on_request)
        context.on("response", self.on_response)
        context.on("requestfinished", self.on_request_finished)
        context.on("requestfailed", self.on_request_failed)

    def is_api(self, url: str) -> bool:
        return url == self.api_prefix or url.startswith((self.api_prefix + "/", self.api_prefix + "?"))

    def is_data_response(self, response: Any) -> bool:
        if not self.is_api(response.url) or response.status >= 400 or response.request.method == "OPTIONS":
            return False
        return not _NOT_DATA_PATHS.search(urlsplit(response.url).path)

    def on_request(self, request: Any) -> None:
        url = request.url
        if url.startswith(_IGNORED_SCHEMES):
            return
        if self.is_api(url):
            self.in_flight.add(request)
            self.seen_after_submit[request] = self.submitted
            if request.method != "OPTIONS":
                self.api_starts.append(time.monotonic())
                self.last_api_request = time.monotonic()
        elif _TELEMETRY_URL.match(url):
            if url not in self.telemetry:
                self.telemetry.append(url)
        elif origin(url) not in (self.ui_origin, self.api_origin) or urlsplit(url).hostname == "0.0.0.0":
            self.in_flight.add(request)
            if url not in self.other_hosts:
                self.other_hosts.append(url)

    def on_response(self, response: Any) -> None:
        url, method = response.url, response.request.method
        if self.is_api(url) and (method != "OPTIONS" or response.status >= 400):
            self.api_calls.append(ApiCall(response.request, f"{method} {url} -> {response.status}",
                                          response.status >= 400, response.status))
        elif not self.is_api(url) and origin(url) == self.ui_origin and response.status >= 400:
            self.failed_ui.append(f"{method} {url} -> {response.status}")
        if self.is_data_response(response):
            if self.data_ok_at is None:
                self.data_ok_at = time.monotonic()
            self.data_responses.append(response)
        if urlsplit(url).path.endswith("/ui-settings"):
            self.ui_settings_responses.append(response)

    def on_request_finished(self, request: Any) -> None:
        self.in_flight.discard(request)

    def on_request_failed(self, request: Any) -> None:
        self.in_flight.discard(request)
        failure = request.failure or "failed"
        if "ERR_NETWORK_CHANGED" in failure:
            self.network_changed = True
        if self.is_api(request.url):
            self.api_calls.append(ApiCall(request, f"{request.method} {request.url} -> {failure}", True, None))
        elif origin(request.url) == self.ui_origin and not request.url.startswith(_IGNORED_SCHEMES):
            self.failed_ui.append(f"{request.method} {request.url} -> {failure}")

    def before_login(self, request: Any) -> bool:
        """The browser started `request` before the login was submitted."""
        if self.submitted_wall_ms is None:
            return False
        try:
            start = request.timing["startTime"]
        except Exception:  # noqa: BLE001 - no timing: go by when the check saw it
            start = -1
        if start and start > 0:
            return start < self.submitted_wall_ms
        return not self.seen_after_submit.get(request, True)

    def data_calls_with(self, text: str) -> list[str]:
        """"METHOD URL" of the data calls after the login whose body contains `text`."""
        matches = []
        for response in self.data_responses:
            if self.before_login(response.request):
                continue
            try:
                if text in response.text():
                    matches.append(f"{response.request.method} {response.url}")
            except PlaywrightError:
                pass
        return matches

    def ui_settings(self) -> Any:
        """The JSON of the last <ui>/ui-settings the UI got, None if none (or not JSON)."""
        settings = None
        for response in self.ui_settings_responses:
            try:
                settings = response.json()
            except Exception:  # noqa: BLE001 - a non-JSON ui-settings is reported as None
                pass
        return settings


def summarize_calls(calls: list[ApiCall]) -> dict[str, Any]:
    """api_requests, api_calls and failed_api_requests of `calls` (CORS preflights are counted
    only when they failed, and then only as failed)."""
    entries = [c.entry for c in calls if c.request.method != "OPTIONS"]
    return {
        "api_requests": len(entries),
        "api_calls": entries,
        "failed_api_requests": [c.entry for c in calls if c.failed],
    }


class ConsoleLog:
    """The first console errors and uncaught page errors, telemetry's own excluded."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def attach(self, page: Any) -> None:
        page.on("console", self.on_console)
        page.on("pageerror", self.on_page_error)

    def on_console(self, message: Any) -> None:
        if message.type != "error" or len(self.errors) >= _MAX_CONSOLE_ERRORS:
            return
        if _TELEMETRY_URL.match((message.location or {}).get("url") or ""):
            return  # "Failed to load resource" of the aborted telemetry
        self.errors.append(message.text[:500])

    def on_page_error(self, error: Any) -> None:
        if len(self.errors) < _MAX_CONSOLE_ERRORS:
            self.errors.append(f"uncaught: {str(error)[:500]}")


class DashboardLoad:
    """One page of the UI in `context`, driven step by step as a user would."""

    def __init__(self, context: Any, ui_url: str, api_url: str, deadline: float, opened: float,
                 options: LoadOptions):
        self.ui_url, self.deadline, self.opened, self.options = ui_url, deadline, opened, options
        self.net = NetworkLog(ui_url, api_url, opened)
        self.console = ConsoleLog()
        self.crashed = False
        context.route(_TELEMETRY_URL, lambda route: route.abort())
        self.net.attach(context)
        self.page = context.new_page()
        self.console.attach(self.page)
        self.page.on("crash", self._on_crash)
        self.error_text = self.page.get_by_text(_CONNECTION_ERROR_RE)
        self.heading = self.page.locator(_DASHBOARD_HEADING).first
        self.login_input = self.page.locator(_LOGIN_INPUT)
        self.login_error = self.page.get_by_text(_LOGIN_ERROR_RE)
        # What the steps found out.
        self.navigation_error: str | None = None
        self.ui_status: int | None = None
        self.ui_tls: dict | None = None
        self.login_page_shown = False
        self.login_page_s: float | None = None
        self.login_s: float | None = None
        self.login_error_text: str | None = None

    def _on_crash(self, _page: Any) -> None:
        self.crashed = True

    # --- waiting ------------------------------------------------------------------------------

    def remaining_ms(self, cap_s: float | None = None) -> float:
        left = max(self.deadline - time.monotonic(), 0.0)
        if cap_s is not None:
            left = min(left, cap_s)
        return max(left * 1000.0, 1.0)

    def wait_until(self, done: Callable[[], bool], cap_s: float, event: str = "response") -> None:
        """Until done() or the cap: each slice returns early on the next `event` of the page."""
        until = min(self.deadline, time.monotonic() + cap_s)
        while not done() and not self.crashed and time.monotonic() < until:
            try:
                self.page.wait_for_event(event, timeout=max(min(until - time.monotonic(), 0.25), 0.001) * 1000)
            except PlaywrightTimeout:
                pass

    def login_form_shown(self) -> bool:
        return self.login_input.count() > 0 and self.login_input.first.is_visible()

    def _answered_or_refused(self) -> bool:
        return self.net.data_ok or self.net.network_changed or self.error_text.count() > 0

    # --- the steps ----------------------------------------------------------------------------

    def run(self, screenshot_path: str) -> dict[str, Any]:
        self.open()
        if self.navigation_error is None:
            self.wait_for_first_screen()
            if self.login_page_shown and self.options.auth_string is not None:
                self.log_in(self.options.auth_string)
            if self.net.data_ok and not self.net.network_changed:
                self.wait_for_dashboard()
            self.settle()
        if self.crashed:
            raise PageCrashed("the Chromium page crashed")
        return self.report(screenshot_path)

    def open(self) -> None:
        """Open the UI URL. The server redirects / to the default UI (/v2/), whose router goes on
        to its dashboard route (or to its login route when the server wants credentials)."""
        url = urljoin(self.ui_url, "")
        try:
            response = self.page.goto(url, wait_until="domcontentloaded", timeout=self.remaining_ms())
            if response is not None:
                self.ui_status = response.status
                if urlsplit(response.url).scheme == "https":
                    self.ui_tls = response.security_details()
        except PlaywrightError as exc:
            self.navigation_error = str(exc).splitlines()[0]
            self.net.network_changed |= "ERR_NETWORK_CHANGED" in str(exc)
        if self.navigation_error is None and self.ui_status is not None and self.ui_status >= 400:
            # No UI to wait for: the server answered the page itself with an error (e.g. 404
            # when it could not mount its UI bundles).
            self.navigation_error = f"{url} answered {self.ui_status}"

    def wait_for_first_screen(self) -> None:
        """Until the dashboard got data from the API, or the UI says it cannot reach it, or it
        asks for credentials."""
        self.wait_until(lambda: self._answered_or_refused() or self.login_form_shown(),
                        cap_s=self.deadline - time.monotonic())
        if not self.net.data_ok and not self.net.network_changed and self.login_form_shown():
            self.login_page_shown = True
            self.login_page_s = round(time.monotonic() - self.opened, 2)

    def log_in(self, auth_string: str) -> None:
        """Type the auth string into the login form and submit it; wait for data or a refusal."""
        net = self.net
        # A user reads the page before typing: let the UI's unauthenticated queries and their
        # retries (react-query: after 1, 2, 4 s) settle first.
        quiet = float(self.options.quiet_s or 0)
        self.wait_until(
            lambda: net.network_changed or (not net.in_flight and time.monotonic() - net.last_api_request >= quiet),
            cap_s=min(15.0, quiet * 3),
        )
        errors_before = self.login_error.count()
        field = self.login_input.first
        field.click(timeout=self.remaining_ms(10))
        field.press_sequentially(auth_string, timeout=self.remaining_ms(30))
        net.submitted_wall_ms = time.time() * 1000.0
        submitted_at = time.monotonic()
        self.page.locator(_LOGIN_SUBMIT).first.click(timeout=self.remaining_ms(10))
        self.wait_until(lambda: self._answered_or_refused() or self.login_error.count() > errors_before,
                        cap_s=self.deadline - time.monotonic())
        if net.data_ok_at is not None:
            self.login_s = round(max(net.data_ok_at - submitted_at, 0.0), 2)
        if self.login_error.count() > errors_before:
            try:
                self.login_error_text = self.login_error.last.inner_text(timeout=2_000).strip()
            except PlaywrightError:
                self.login_error_text = "(login error shown)"

    def wait_for_dashboard(self) -> None:
        """The page component replaces the router's loading spinner; then, if asked, the text
        the dashboard should show once it has its data."""
        try:
            self.heading.wait_for(state="visible", timeout=self.remaining_ms(20))
        except PlaywrightTimeout:
            pass
        if self.options.find_on_page is not None:
            try:
                self.page.get_by_text(self.options.find_on_page).first.wait_for(
                    state="visible", timeout=self.remaining_ms(20))
            except PlaywrightTimeout:
                pass

    def settle(self) -> None:
        """The health probe and whatever else the dashboard asked for settle, then the UI gets
        two frames to show a toast about them."""
        self.wait_until(lambda: not self.net.in_flight or self.net.network_changed, cap_s=10,
                        event="requestfinished")
        try:
            self.page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        except PlaywrightError:
            pass

    # --- the report ---------------------------------------------------------------------------

    def report(self, screenshot_path: str) -> dict[str, Any]:
        net, page, find_on_page = self.net, self.page, self.options.find_on_page
        body_text = _safe_body_text(page)
        shown = [t for t in CONNECTION_ERROR_TEXTS if t in body_text]
        ui_settings = net.ui_settings()
        page.screenshot(path=screenshot_path, full_page=False, timeout=30_000)
        before = [c for c in net.api_calls if net.before_login(c.request)]
        after = [c for c in net.api_calls if not net.before_login(c.request)]
        logged_in = bool(net.submitted and not self.login_form_shown() and "/login" not in urlsplit(page.url).path)
        return {
            **summarize_calls(after),
            "api_peak_requests_per_s": peak_per_second(net.api_starts),
            "before_login": {
                **summarize_calls(before),
                "unauthorized": sum(1 for c in before if c.status == 401),
            },
            "other_hosts_called": list(net.other_hosts),
            "telemetry_calls": list(net.telemetry),
            "connection_error_shown": bool(shown),
            "connection_error_texts": shown,
            "dashboard_loaded": net.data_ok,
            "dashboard_rendered": self.heading.count() > 0,
            "login_page_shown": self.login_page_shown,
            "login_page_s": self.login_page_s,
            "login_submitted": net.submitted,
            "logged_in": logged_in,
            "login_error": self.login_error_text,
            "login_s": self.login_s,
            "data_calls_with_match": [] if self.options.find_in_data is None
            else net.data_calls_with(self.options.find_in_data),
            "found_on_page": None if find_on_page is None else page.get_by_text(find_on_page).count() > 0,
            "failed_ui_requests": list(net.failed_ui),
            "ui_tls": self.ui_tls,
            "ui_status": self.ui_status,
            "final_url": page.url,
            "ui_settings": ui_settings,
            "navigation_error": self.navigation_error,
            "console_errors": list(self.console.errors),
            "title": page.title(),
            "screenshot": screenshot_path,
        }


def _safe_body_text(page: Any) -> str:
    try:
        return page.inner_text("body", timeout=5_000)
    except Exception:  # noqa: BLE001 - a page without body has no error text either
        return ""


def load_dashboard(browser: Any, ui_url: str, api_url: str, deadline: float, screenshot_path: str,
                   options: LoadOptions) -> tuple[dict[str, Any], bool]:
    """One page load in a fresh context; returns the report and whether ERR_NETWORK_CHANGED hit it."""
    opened = time.monotonic()
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        load = DashboardLoad(context, ui_url, api_url, deadline, opened, options)
        return load.run(screenshot_path), load.net.network_changed
    finally:
        context.close()
