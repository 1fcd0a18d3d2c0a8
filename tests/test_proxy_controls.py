"""Each edge control in its place in the rendered nginx.conf, for every combination
of them: TLS listeners, HSTS and the redirect; basic auth; the allowlist; the
rate limit."""

import re

import pytest

from components.proxy import HTTP_PORT, HTTPS_PORT, RUNTIME_DIR, public_listen_port
from nginx_support import ALLOWLIST, CASES, locations, proxy_server, redirect_server, render_case, server_level

LISTEN = re.compile(r"^ *listen (.*);$", re.M)
HSTS = 'add_header Strict-Transport-Security "max-age=31536000" always;'


# --- each control in its place, for every combination ---------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_tls_listeners_hsts_and_redirect(case):
    config, conf = render_case(case)
    main, redirect = proxy_server(conf), redirect_server(conf)
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in main
    assert public_listen_port(config.tls.enabled) == (HTTPS_PORT if config.tls.enabled else HTTP_PORT)
    if config.tls.enabled:
        assert LISTEN.findall(main) == [f"{HTTPS_PORT} ssl"]
        assert "ssl_protocols TLSv1.2 TLSv1.3;" in main
        # relative: read beside nginx.conf, from the same generation of the edge config
        assert "ssl_certificate tls.crt;" in main
        assert "ssl_certificate_key tls.key;" in main
        assert HSTS in server_level(main) and conf.count("Strict-Transport-Security") == 1
        # No location sets headers of its own, which would drop the inherited HSTS.
        assert "add_header" not in "".join(locations(main).values())
        assert redirect is not None
        assert LISTEN.findall(redirect) == [str(HTTP_PORT)]
        assert set(locations(redirect)) == {"= /nginx-health", "/"}
        assert f'return 301 "{config.proxy.public_url}$request_uri";' in locations(redirect)["/"]
    else:
        assert LISTEN.findall(main) == [str(HTTP_PORT)]
        assert redirect is None
        assert "ssl" not in conf and "Strict-Transport-Security" not in conf and "return 301" not in conf
    # The container healthcheck's port serves /nginx-health, to 127.0.0.1 only,
    # from the content phase so that allow/deny apply.
    health_server = redirect if config.tls.enabled else main
    health = locations(health_server)["= /nginx-health"]
    assert re.findall(r"(allow|deny) (\S+);", health) == [("allow", "127.0.0.1"), ("deny", "all")]
    assert "stub_status;" in health and "return" not in health
    if config.tls.enabled:
        assert "= /nginx-health" not in locations(main)


@pytest.mark.parametrize("case", CASES)
def test_basic_auth_only_in_nginx_mode_with_the_probes_open(case):
    config, conf = render_case(case)
    main = proxy_server(conf)
    if config.auth.mode != "nginx":
        assert "auth_basic" not in conf
        return
    assert 'auth_basic "Prefect";' in server_level(main)
    assert "auth_basic_user_file htpasswd;" in server_level(main)
    open_paths = {"= /api/health", "= /api/ready", "= /nginx-health"}
    for matcher, body in locations(main).items():
        assert ("auth_basic off;" in body) == (matcher in open_paths), matcher
    redirect = redirect_server(conf)
    if redirect is not None:
        # The redirect asks for nothing: credentials would cross in clear text.
        assert "auth_basic" not in server_level(redirect) and "auth_basic " not in locations(redirect)["/"]


@pytest.mark.parametrize("case", CASES)
def test_allowlist_covers_every_location_but_nginx_health(case):
    config, conf = render_case(case)
    main, redirect = proxy_server(conf), redirect_server(conf)
    rules = re.findall(r"(allow|deny) (\S+);", server_level(main))
    if not config.proxy.allow_cidrs:
        assert rules == [] and "geo " not in conf and "$client_allowed" not in conf
        return
    assert rules == [("allow", cidr) for cidr in ALLOWLIST] + [("deny", "all")]
    for matcher, body in locations(main).items():
        if matcher != "= /nginx-health":
            assert not re.search(r"\b(allow|deny|return)\b", body), f"{matcher} overrides the allowlist"
    if redirect is not None:
        # `return` answers before allow/deny run, so the redirect checks a geo variable.
        geo = re.search(r"geo \$client_allowed \{(.*?)\}", conf, re.S).group(1)
        assert re.findall(r"(\S+) 1;", geo) == list(ALLOWLIST) and "default 0;" in geo
        assert re.search(r"if \(\$client_allowed = 0\) \{\s*return 403;\s*\}\s*return 301", locations(redirect)["/"])


@pytest.mark.parametrize("case", CASES)
def test_rate_limit_on_the_api_but_not_health_or_the_ui(case):
    config, conf = render_case(case)
    main = proxy_server(conf)
    if not config.proxy.rate_limit:
        assert "limit_req" not in conf
        return
    assert "limit_req_zone $binary_remote_addr zone=api_per_client:10m rate=10r/s;" in conf
    assert "limit_req_status 429;" in conf
    for matcher, body in locations(main).items():
        limited = "limit_req zone=api_per_client burst=20 nodelay;" in body
        api = "/api/" in matcher
        assert limited == (api and matcher != "= /api/health"), matcher
    assert "limit_req" not in server_level(main)
