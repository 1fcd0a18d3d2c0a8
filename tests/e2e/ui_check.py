"""Drive a real headless Chromium through the Prefect UI's dashboard and report what it called.

    from ui_check import check_dashboard
    result = check_dashboard("http://127.0.0.1:8080/", "http://127.0.0.1:8080/api")
    assert result["dashboard_loaded"] and result["dashboard_rendered"], result
    assert not result["failed_api_requests"], result
    assert not result["other_hosts_called"], result
    assert not result["connection_error_shown"], result

The browser is Debian's `chromium` (/usr/bin/chromium, or $UI_CHECK_CHROMIUM) driven by the
`playwright` Python package; no Playwright-managed browser download is used.

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
) -> dict[str, Any]:
    """Open the Prefect UI at `ui_url` in headless Chromium and wait (at most about `timeout_s`)
    until the dashboard has loaded data from `api_url` and rendered, or the UI shows its
    connection error.

    Returns a dict:
      api_requests            number of requests (CORS preflights excluded) whose URL starts
                              with `api_url`
      api_calls               "METHOD URL -> STATUS|error" of each of them, in order
      failed_api_requests     those with status >= 400 or that failed (refused, CORS, ...),
                              failed CORS preflights included
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
      navigation_error        why the UI page itself could not be opened, or None
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

    try:
        with sync_playwright() as pw:
            try:
                # launch() gives the browser a fresh temporary --user-data-dir of its own (it
                # refuses one in args) and deletes it on close.
                browser = pw.chromium.launch(
                    executable_path=CHROMIUM,
                    headless=True,
                    args=CHROMIUM_ARGS,
                    timeout=max(min(deadline - time.monotonic(), 30.0), 5.0) * 1000,
                )
            except PlaywrightError as exc:
                raise UICheckInfraError(f"Chromium ({CHROMIUM}) did not start: {exc}") from exc
            try:
                retries = 0
                while True:
                    result, network_changed = _load_dashboard(browser, ui_url, api_url, deadline, screenshot_path)
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
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    return result


def _load_dashboard(
    browser: Any, ui_url: str, api_url: str, deadline: float, screenshot_path: str
) -> tuple[dict[str, Any], bool]:
    """One page load in a fresh context; returns the report and whether ERR_NETWORK_CHANGED hit it."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

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

    api_calls: list[str] = []
    failed_api: list[str] = []
    other_hosts: list[str] = []
    telemetry: list[str] = []
    console_errors: list[str] = []
    ui_settings_responses: list[Any] = []
    in_flight: set[Any] = set()  # API and other-host requests not finished yet
    flags = {"data_ok": False, "crashed": False, "network_changed": False}

    def on_request(request: Any) -> None:
        url = request.url
        if url.startswith(_IGNORED_SCHEMES):
            return
        if is_api(url):
            in_flight.add(request)
        elif _TELEMETRY_URL.match(url):
            if url not in telemetry:
                telemetry.append(url)
        elif _origin(url) not in (ui_origin, api_origin) or urlsplit(url).hostname == "0.0.0.0":
            in_flight.add(request)
            if url not in other_hosts:
                other_hosts.append(url)

    def on_response(response: Any) -> None:
        url, method = response.url, response.request.method
        if is_api(url) and method != "OPTIONS":
            api_calls.append(f"{method} {url} -> {response.status}")
            if response.status >= 400:
                failed_api.append(api_calls[-1])
        elif is_api(url) and response.status >= 400:
            failed_api.append(f"{method} {url} -> {response.status}")
        if is_data_response(response):
            flags["data_ok"] = True
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
            entry = f"{request.method} {request.url} -> {failure}"
            if request.method != "OPTIONS":
                api_calls.append(entry)
            failed_api.append(entry)

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

        navigation_error = None
        try:
            # The server redirects / to the default UI (/v2/), whose router goes on to its
            # dashboard route.
            page.goto(urljoin(ui_url, ""), wait_until="domcontentloaded", timeout=remaining_ms())
        except PlaywrightError as exc:
            navigation_error = str(exc).splitlines()[0]
            flags["network_changed"] |= "ERR_NETWORK_CHANGED" in str(exc)

        if navigation_error is None:
            # Until the dashboard got data from the API, or the UI says it cannot reach it.
            wait_until(
                lambda: flags["data_ok"] or flags["network_changed"] or error_text.count() > 0,
                cap_s=deadline - time.monotonic(),
            )
            if flags["data_ok"] and not flags["network_changed"]:
                try:  # the page component replaces the router's loading spinner
                    heading.wait_for(state="visible", timeout=remaining_ms(20))
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
        result = {
            "api_requests": len(api_calls),
            "api_calls": list(api_calls),
            "failed_api_requests": list(failed_api),
            "other_hosts_called": list(other_hosts),
            "telemetry_calls": list(telemetry),
            "connection_error_shown": bool(shown),
            "connection_error_texts": shown,
            "dashboard_loaded": flags["data_ok"],
            "dashboard_rendered": heading.count() > 0,
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


if __name__ == "__main__":  # python tests/e2e/ui_check.py UI_URL API_URL [TIMEOUT_S]
    import json
    import sys

    print(json.dumps(check_dashboard(sys.argv[1], sys.argv[2], *map(float, sys.argv[3:4])), indent=2))
