"""nginx at the edge: the rendered config, the container around it, and nginx itself.

- Every rendered configuration, for every combination of the edge controls
  (TLS, auth, allowlist, rate limit), passes Debian's `nginx -t` and gixy.
- Routing and each control sit where they should in the config.
- The Proxy component runs nginx read-only, with the capabilities it needs
  and its files delivered through the environment.
- Debian's nginx, started by the container's own command in a private mount
  and network namespace, behind a small echo upstream, does what the controls
  promise: redirect, TLS, HSTS, basic auth, allowlist, 429s.
"""

import itertools
import json
import os
import re
import selectors
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509

from components import proxy
from components.config import load_paths
from components.prefect_settings import API_PORT
from components.proxy import (
    HTTP_PORT,
    HTTPS_PORT,
    RUNTIME_DIR,
    START_SCRIPT,
    nginx_env,
    public_listen_port,
    render_nginx_conf,
)
from harness import REPO, run_program
from support import container, env_of, labels_of
from tls_mocks import CERT_REQUEST, LOCALLY_SIGNED_CERT, PRIVATE_KEY, SELF_SIGNED_CERT, edge_tls_run, tls_state

WEBSOCKETS = [
    "/api/events/in",
    "/api/events/out",
    "/api/logs/out",
    "/api/task_runs/subscriptions/scheduled",
    "/api/work_pools/my-pool/workers/connect",
]
READ_ONLY_POSTS = ["/api/flow_runs/filter", "/api/task_runs/count", "/api/flow_runs/paginate",
                   "/api/flow_runs/history", "/api/ui/flow_runs/history", "/api/deployments/filter"]
WRITING_POSTS = ["/api/flow_runs/", "/api/deployments/", "/api/flow_runs/abc/set_state",
                 "/api/work_pools/", "/api/events/count-by/day", "/api/filter"]
GIXY = Path(sys.executable).parent / "gixy"
LISTEN = re.compile(r"^ *listen (.*);$", re.M)
HSTS = 'add_header Strict-Transport-Security "max-age=31536000" always;'


def nginx_binary():
    path = shutil.which("nginx") or "/usr/sbin/nginx"
    if not shutil.which(path):
        pytest.fail("Debian's nginx is not installed: run bin/test, which installs it (apt-get install nginx-light)")
    return path


def nginx_test(conf: str, hosts: list[str], tmp_path) -> subprocess.CompletedProcess:
    """`nginx -t` with the upstream aliases resolving, as they do on the stack network.

    The host's /etc/hosts is left alone: a private mount namespace sees a copy.
    """
    (tmp_path / "nginx.conf").write_text(conf)
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {h}\n" for h in hosts))
    script = f"mount --bind {tmp_path}/hosts /etc/hosts && exec {nginx_binary()} -t -c {tmp_path}/nginx.conf"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=30)


def replica_hosts(replicas: int) -> list[str]:
    return [f"prefect-api-{i}" for i in range(1, replicas + 1)]


# --- certificates and credentials for real nginx runs ---------------------------------------------


def generated_pki(public_host: str = "prefect.example.internal") -> dict[str, str]:
    """A CA and a server certificate as pulumi-tls would make them (tests/tls_mocks.py)."""
    ca_key = tls_state(PRIVATE_KEY, {"algorithm": "ECDSA", "ecdsaCurve": "P256"})
    ca = tls_state(SELF_SIGNED_CERT, {
        "privateKeyPem": ca_key["privateKeyPem"], "subject": {"commonName": "test CA"},
        "isCaCertificate": True, "allowedUses": ["cert_signing", "crl_signing"], "validityPeriodHours": 24,
    })
    key = tls_state(PRIVATE_KEY, {"algorithm": "ECDSA", "ecdsaCurve": "P256"})
    request = tls_state(CERT_REQUEST, {
        "privateKeyPem": key["privateKeyPem"], "subject": {"commonName": public_host},
        "dnsNames": [public_host, "localhost"], "ipAddresses": ["127.0.0.1"],
    })
    cert = tls_state(LOCALLY_SIGNED_CERT, {
        "certRequestPem": request["certRequestPem"], "caPrivateKeyPem": ca_key["privateKeyPem"],
        "caCertPem": ca["certPem"], "allowedUses": ["server_auth", "digital_signature", "key_encipherment"],
        "validityPeriodHours": 24,
    })
    return {"certificate": cert["certPem"], "key": key["privateKeyPem"], "ca": ca["certPem"]}


def htpasswd_line(user: str, password: str) -> str:
    """What StackSecrets delivers: Go's bcrypt ($2a$, cost 10), as pulumi-random hashes."""
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10, prefix=b'2a')).decode()}\n"


@pytest.fixture(scope="module")
def pki():
    return generated_pki()


def write_runtime_files(directory: Path, pki: dict[str, str]) -> None:
    """The files START_SCRIPT writes, for an nginx run outside the container."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / proxy.CERTIFICATE_FILE).write_text(pki["certificate"])
    (directory / proxy.KEY_FILE).write_text(pki["key"])
    (directory / proxy.HTPASSWD_FILE).write_text(htpasswd_line("ops", "secret"))


# --- nginx -t over the existing sizing knobs ------------------------------------------------------

COMBOS = list(itertools.product([1, 2, 3, 5], ["1m", "10m", "50m"], [80, 4200]))


@pytest.mark.parametrize("replicas, body, port", COMBOS)
def test_every_rendered_config_passes_nginx_t(replicas, body, port, tmp_path):
    config = load_paths({"api.replicas": str(replicas), "proxy.clientMaxBodySize": body, "proxy.port": str(port)})
    hosts = replica_hosts(replicas)
    (tmp_path / "run").mkdir()  # START_SCRIPT's job in the container
    conf = render_nginx_conf(config, "test", hosts, runtime_dir=str(tmp_path / "run"))
    result = nginx_test(conf, hosts, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_t_rejects_a_broken_config(tmp_path):
    """The check above can fail: an unresolvable upstream is an error."""
    (tmp_path / "run").mkdir()
    conf = render_nginx_conf(load_paths({}), "test", ["prefect-api-1"], runtime_dir=str(tmp_path / "run"))
    result = nginx_test(conf, [], tmp_path)
    assert result.returncode != 0
    assert "host not found in upstream" in result.stderr


# --- every combination of the edge controls -------------------------------------------------------

PUBLIC_HTTPS = "https://prefect.example.internal:8443"
PUBLIC_HTTP = "http://prefect.example.internal:4200"
ALLOWLIST = ("10.0.0.0/8", "127.0.0.1/32")
CONTROLS = {
    "tls": {"off": {}, "on": {"tls.enabled": "true", "tls.httpPort": "8080", "proxy.publicUrl": PUBLIC_HTTPS}},
    "auth": {mode: {"auth.mode": mode} for mode in ("none", "prefect", "nginx")},
    "allow": {"open": {}, "allowlist": {"proxy.allowCidrs": json.dumps(list(ALLOWLIST))}},
    "rate": {"unlimited": {}, "limited": {"proxy.rateLimit": "10", "proxy.rateLimitBurst": "20"}},
    "replicas": {str(n): {"api.replicas": str(n)} for n in (1, 3)},
}
CASES = {
    "-".join(choice): {"proxy.publicUrl": PUBLIC_HTTP, **{k: v for part in parts for k, v in part.items()}}
    for choice, parts in (
        (combo, [CONTROLS[group][option] for group, option in zip(CONTROLS, combo)])
        for combo in itertools.product(*(CONTROLS[group] for group in CONTROLS))
    )
}


def render_case(case: str, runtime_dir: str = RUNTIME_DIR):
    config = load_paths(CASES[case])
    return config, render_nginx_conf(config, "test", replica_hosts(config.api.replicas), runtime_dir=runtime_dir)


def test_the_matrix_covers_every_control():
    assert len(CASES) == 2 * 3 * 2 * 2 * 2
    configs = [load_paths(raw) for raw in CASES.values()]
    assert {c.tls.enabled for c in configs} == {False, True}
    assert {c.auth.mode for c in configs} == {"none", "prefect", "nginx"}
    assert {c.proxy.allow_cidrs for c in configs} == {(), ALLOWLIST}
    assert {c.proxy.rate_limit for c in configs} == {0, 10}


@pytest.mark.parametrize("case", CASES)
def test_every_control_combination_passes_nginx_t(case, tmp_path, pki):
    runtime = tmp_path / "run"
    config, conf = render_case(case, str(runtime))
    write_runtime_files(runtime, pki)
    result = nginx_test(conf, replica_hosts(config.api.replicas), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "warn" not in result.stderr, result.stderr


def gixy(paths: list[Path]) -> dict[str, list[dict]]:
    """gixy-ng's findings per file (JSON report)."""
    result = subprocess.run([str(GIXY), "-f", "json", *map(str, paths)], capture_output=True, text=True, timeout=300)
    if result.returncode not in (0, 1) or not result.stdout.strip().startswith("["):
        pytest.fail(f"gixy failed ({result.returncode}): {result.stderr[-2000:]}")
    found: dict[str, list[dict]] = {str(p): [] for p in paths}
    for issue in json.loads(result.stdout):
        found.setdefault(issue["path"], []).append(issue)
    return found


@pytest.fixture(scope="module")
def gixy_report(tmp_path_factory):
    """One gixy run over every rendered combination, plus two configs it must flag."""
    directory = tmp_path_factory.mktemp("gixy")
    paths = {}
    for case in CASES:
        paths[case] = directory / f"{case}.conf"
        paths[case].write_text(render_case(case)[1])
    _, conf = render_case("off-none-allowlist-unlimited-1")
    # What this repository had before: `return` in a location answers before
    # allow/deny are consulted, and the client's own Host header went upstream.
    paths["canary-return"] = directory / "canary-return.conf"
    paths["canary-return"].write_text(conf.replace("stub_status;", 'return 200 "ok\\n";'))
    paths["canary-host"] = directory / "canary-host.conf"
    paths["canary-host"].write_text(re.sub(r"proxy_set_header Host \S+;", "proxy_set_header Host $http_host;", conf))
    report = gixy(list(paths.values()))
    return {case: report[str(path)] for case, path in paths.items()}


def test_gixy_flags_what_it_should(gixy_report):
    """The gate below can fail: gixy runs, parses these files and reports."""
    assert [i["plugin"] for i in gixy_report["canary-return"]] == ["return_bypasses_allow_deny"]
    assert [i["plugin"] for i in gixy_report["canary-host"]] == ["host_spoofing"]


@pytest.mark.parametrize("case", CASES)
def test_gixy_finds_nothing_in_any_combination(case, gixy_report):
    assert gixy_report[case] == [], [(i["plugin"], i["reason"]) for i in gixy_report[case]]


# --- reading the config ---------------------------------------------------------------------------


def servers(conf: str) -> list[str]:
    """The server blocks of the http block, in order."""
    return re.findall(r"\n    server \{\n(.*?)\n    \}\n", conf, re.S)


def proxy_server(conf: str) -> str:
    found = [s for s in servers(conf) if "proxy_pass" in s]
    assert len(found) == 1, "expected exactly one server proxying to the replicas"
    return found[0]


def redirect_server(conf: str) -> str | None:
    found = [s for s in servers(conf) if "proxy_pass" not in s]
    assert len(found) <= 1
    return found[0] if found else None


# A location block at a server's indentation, up to its closing brace.
LOCATION = re.compile(r"^ {8}location\s+([^{\n]+?)\s*\{(.*?)\n {8}\}", re.M | re.S)


def locations(block: str) -> dict[str, str]:
    """location matcher -> its block body."""
    found = {}
    for match in LOCATION.finditer(block):
        found[match.group(1).strip()] = match.group(2)
    return found


def server_level(block: str) -> str:
    """A server block without its locations: what every location inherits."""
    return LOCATION.sub("", block)


def matching_location(block: str, path: str) -> str:
    """The location nginx picks: exact match; else the longest prefix unless a regex
    (in order of appearance) matches; ^~ prefixes stop the regex search."""
    locs = list(locations(block))
    for matcher in locs:
        if matcher.startswith("= ") and matcher[2:] == path:
            return matcher
    prefixes = [m for m in locs if not m.startswith(("= ", "~ ", "~* "))]
    longest = max((m for m in prefixes if path.startswith(m.removeprefix("^~ "))),
                  key=lambda m: len(m.removeprefix("^~ ")), default=None)
    if longest is not None and longest.startswith("^~ "):
        return longest
    for matcher in locs:
        if matcher.startswith("~ ") and re.search(matcher[2:], path):
            return matcher
        if matcher.startswith("~* ") and re.search(matcher[3:], path, re.I):
            return matcher
    assert longest is not None, f"no location matches {path}"
    return longest


@pytest.fixture(scope="module")
def prod_run():
    run = run_program("prod")
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="module")
def prod_conf(prod_run):
    """What the prod stack's nginx runs with (TLS on): the proxying server."""
    conf = env_of(container(prod_run, "proxy"))[proxy.CONF_ENV]
    assert conf == prod_run.outputs["nginx_conf"]
    return proxy_server(conf)


def test_upstream_balances_over_every_replica_with_passive_health(prod_run, prod_conf):
    conf = prod_run.outputs["nginx_conf"]
    upstream = re.search(r"upstream prefect_api \{(.*?)\}", conf, re.S).group(1)
    assert "least_conn;" in upstream
    servers_ = re.findall(r"server (\S+) max_fails=\d+ fail_timeout=\d+s;", upstream)
    assert servers_ == ["prefect-api-1:4200", "prefect-api-2:4200", "prefect-api-3:4200"]
    assert "proxy_next_upstream error timeout http_502 http_503;" in prod_conf


@pytest.mark.parametrize("path", WEBSOCKETS)
def test_websocket_endpoints_get_long_lived_upgraded_connections(prod_conf, path):
    loc = matching_location(prod_conf, path)
    body = locations(prod_conf)[loc]
    assert "proxy_read_timeout 1h;" in body and "proxy_buffering off;" in body, f"{path} -> {loc}"
    assert "proxy_http_version 1.1;" in prod_conf
    assert "proxy_set_header Upgrade $http_upgrade;" in prod_conf
    assert "proxy_set_header Connection $connection_upgrade;" in prod_conf


TASK_ROUTES = ["/api/task_runs/", "/api/task_runs/0b4e6a3c-8f7e-4c1a-9d2b-5e6f7a8b9c0d/set_state",
               "/api/task_runs/subscriptions/scheduled"]


@pytest.mark.parametrize("path", TASK_ROUTES)
def test_background_task_routes_go_to_one_replica_with_the_others_as_backups(prod_run, prod_conf, path):
    body = locations(prod_conf)[matching_location(prod_conf, path)]
    assert "proxy_pass http://prefect_api_tasks;" in body, path
    upstream = re.search(r"upstream prefect_api_tasks \{(.*?)\}", prod_run.outputs["nginx_conf"], re.S).group(1)
    servers_ = re.findall(r"server (\S+)( backup)?", upstream)
    assert servers_[0] == ("prefect-api-1:4200", "")
    assert servers_[1:] == [("prefect-api-2:4200", " backup"), ("prefect-api-3:4200", " backup")]


@pytest.mark.parametrize("path", ["/api/task_runs/filter", "/api/task_runs/count", "/api/flow_runs/",
                                  "/api/flow_runs/0b4e6a3c-8f7e-4c1a-9d2b-5e6f7a8b9c0d/set_state",
                                  "/api/ready", "/", "/ui-settings", "/assets/index.js"])
def test_other_routes_are_balanced_over_all_replicas(prod_conf, path):
    body = locations(prod_conf)[matching_location(prod_conf, path)]
    assert "proxy_pass http://prefect_api;" in body, path


@pytest.mark.parametrize("path", READ_ONLY_POSTS)
def test_read_only_posts_are_retried_on_the_next_replica(prod_conf, path):
    body = locations(prod_conf)[matching_location(prod_conf, path)]
    assert "non_idempotent" in body, path


@pytest.mark.parametrize("path", WRITING_POSTS)
def test_posts_that_change_something_are_never_replayed(prod_conf, path):
    body = locations(prod_conf)[matching_location(prod_conf, path)]
    assert "non_idempotent" not in body, path


def test_health_location_is_fast_and_headers_are_forwarded(prod_run, prod_conf):
    body = locations(prod_conf)["= /api/health"]
    assert "proxy_connect_timeout 1s;" in body and "proxy_read_timeout 2s;" in body
    for header in ("X-Forwarded-For", "X-Forwarded-Proto $scheme", "X-Real-IP $remote_addr", "X-Forwarded-Host $host"):
        assert f"proxy_set_header {header}" in prod_conf
    # The replicas see the public host (and port), never a client-chosen Host header.
    assert "proxy_set_header Host prefect.example.internal;" in prod_conf
    assert "$http_host" not in prod_run.outputs["nginx_conf"]
    assert re.search(r"client_max_body_size 10m;", prod_run.outputs["nginx_conf"])
    assert prod_run.outputs["nginx_conf"].count("non_idempotent") == 1


def test_the_upstream_host_header_carries_a_non_default_port():
    _, conf = render_case("off-none-open-unlimited-1")
    assert "proxy_set_header Host prefect.example.internal:4200;" in conf


@pytest.mark.parametrize("url", ["http://a$b:4200", 'http://example.com/"', "http://example.com/a;b",
                                 "http://example.com/a b", "http://example.com/{x}"])
def test_a_public_url_nginx_cannot_carry_literally_is_refused(url):
    from components.config import ConfigError

    # refused by the config model, before anything is rendered or created
    with pytest.raises(ConfigError, match="proxy.publicUrl must not contain"):
        load_paths({"proxy.publicUrl": url})


# --- each control in its place, for every combination ---------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_tls_listeners_hsts_and_redirect(case):
    config, conf = render_case(case)
    main, redirect = proxy_server(conf), redirect_server(conf)
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in main
    assert public_listen_port(config) == (HTTPS_PORT if config.tls.enabled else HTTP_PORT)
    if config.tls.enabled:
        assert LISTEN.findall(main) == [f"{HTTPS_PORT} ssl"]
        assert "ssl_protocols TLSv1.2 TLSv1.3;" in main
        assert f"ssl_certificate {RUNTIME_DIR}/tls.crt;" in main
        assert f"ssl_certificate_key {RUNTIME_DIR}/tls.key;" in main
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
    assert f"auth_basic_user_file {RUNTIME_DIR}/htpasswd;" in server_level(main)
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


def test_the_config_names_files_but_holds_no_secret(pki):
    config = load_paths({"tls.enabled": "true", "proxy.publicUrl": PUBLIC_HTTPS, "auth.mode": "nginx"})
    conf = render_nginx_conf(config, "test", ["prefect-api-1"])
    assert "PRIVATE KEY" not in conf and "BEGIN" not in conf and "$2a$" not in conf
    assert f"dir={RUNTIME_DIR}\n" in START_SCRIPT
    for name in (proxy.CONF_FILE, proxy.CERTIFICATE_FILE, proxy.KEY_FILE, proxy.HTPASSWD_FILE):
        assert f'"$dir/{name}"' in START_SCRIPT
    assert "BEGIN" not in START_SCRIPT and "$2" not in START_SCRIPT


# --- the Proxy component ----------------------------------------------------------------------------


def nginx_container(run):
    assert run.error is None, run.error
    return container(run, "proxy")


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
    assert inputs["healthcheck"]["tests"] == [
        "CMD", "curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{HTTP_PORT}/nginx-health"]
    labels = labels_of(reg)
    assert labels["prefect-ha.tls"] == "generated" and labels["prefect-ha.auth"] == "prefect"
    assert labels["prefect-ha.upstreams"] == "prefect-api-1-id,prefect-api-2-id,prefect-api-3-id"


def test_generated_tls_reaches_nginx_as_a_secret_environment(prod_run):
    reg = nginx_container(prod_run)
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
    reg = nginx_container(run)
    env = env_of(reg)
    assert reg.input_is_secret("envs")
    assert env[proxy.CERTIFICATE_ENV] == pki["certificate"] and env[proxy.KEY_ENV] == pki["key"]
    assert env[proxy.HTPASSWD_ENV].startswith("prefect:$2a$")
    assert not [r for r in run.registrations if r.type.startswith("tls:")]
    labels = labels_of(reg)
    assert labels["prefect-ha.tls"] == "provided" and labels["prefect-ha.auth"] == "nginx"


def test_without_tls_or_nginx_auth_nothing_in_the_environment_is_secret():
    run = run_program("dev")
    reg = nginx_container(run)
    assert not reg.input_is_secret("envs")
    assert set(env_of(reg)) == {"TZ", proxy.CONF_ENV}
    labels = labels_of(reg)
    assert labels["prefect-ha.tls"] == "off" and labels["prefect-ha.auth"] == "none"


def test_nginx_env_pairs_certificate_and_key():
    with pytest.raises(ValueError):
        nginx_env("conf", certificate="cert")
    assert nginx_env("conf", timezone="Europe/Berlin") == {"TZ": "Europe/Berlin", proxy.CONF_ENV: "conf"}


# --- the container's command, run for real ----------------------------------------------------------

FAKE_NGINX = """#!/bin/sh
# Stands in for nginx: reports its arguments, environment and the files it was given.
echo "args: $*"
env | sed -n 's/^\\(EDGE_[A-Z_]*\\)=.*/env: \\1/p'
cd /tmp/prefect-ha && for f in . *; do echo "mode: $(stat -c '%a %U' "$f") $f"; done
"""


def run_start_script(env: dict[str, str]) -> subprocess.CompletedProcess:
    """START_SCRIPT under a fresh tmpfs /tmp (the container's), with nginx replaced by FAKE_NGINX."""
    script = " && ".join([
        "mount -t tmpfs -o mode=1777 tmpfs /tmp",
        "mkdir /tmp/fake-bin",
        f"printf '%s' {shlex.quote(FAKE_NGINX)} > /tmp/fake-bin/nginx",
        "chmod 755 /tmp/fake-bin/nginx",
        "export PATH=/tmp/fake-bin:$PATH",
        f"sh -c {shlex.quote(START_SCRIPT)}",
        "echo conf: $(cat /tmp/prefect-ha/nginx.conf)",
        "if [ -e /tmp/prefect-ha/tls.key ]; then echo key: $(cat /tmp/prefect-ha/tls.key); fi",
        "if [ -e /tmp/prefect-ha/htpasswd ]; then echo htpasswd: $(cat /tmp/prefect-ha/htpasswd); fi",
    ])
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"], **env})


def test_start_script_writes_the_files_and_keeps_secrets_from_nginx():
    env = nginx_env("worker_processes 1;", certificate="CERT", private_key="KEY", htpasswd="ops:$2a$10$hash\n")
    result = run_start_script(env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"args: -e stderr -c {RUNTIME_DIR}/nginx.conf -g daemon off;" in lines
    # nginx gets the config through the file; the key and htpasswd are not in its environment.
    assert sorted(l for l in lines if l.startswith("env: ")) == ["env: EDGE_NGINX_CONF", "env: EDGE_TLS_CERT"]
    modes = {l.split()[-1]: l.split()[1:3] for l in lines if l.startswith("mode: ")}
    assert modes == {
        ".": ["711", "root"],  # the workers may traverse it, nobody may list it
        "nginx.conf": ["600", "root"],
        "tls.crt": ["600", "root"],
        "tls.key": ["600", "root"],
        "htpasswd": ["644", "root"],  # the workers read it on every request
    }
    assert "conf: worker_processes 1;" in lines and "key: KEY" in lines and "htpasswd: ops:$2a$10$hash" in lines


def test_start_script_without_tls_or_auth_writes_only_the_config():
    result = run_start_script(nginx_env("events {}"))
    assert result.returncode == 0, result.stderr
    modes = {l.split()[-1] for l in result.stdout.splitlines() if l.startswith("mode: ")}
    assert modes == {".", "nginx.conf"}


# --- Debian's nginx behind an echo upstream, in its own namespaces ----------------------------------

PUBLIC_HOST = "prefect.test"
SECURE_PUBLIC_URL = f"https://{PUBLIC_HOST}:9443"
OPEN_PUBLIC_URL = f"http://{PUBLIC_HOST}:9080"
CLIENT = "127.0.0.1"
DENIED_CLIENT = "127.0.0.2"
THROTTLED_CLIENT = "127.0.0.3"  # allowlisted too; used by the rate-limit test alone
RATE, BURST = 1, 20


def edge_agent() -> None:  # pragma: no cover - runs in the namespace, driven by EdgeAgent
    """Inside the namespace: an echo upstream on the replicas' port, nginx started by
    START_SCRIPT from this process's environment, and one request per stdin line."""
    import http.client
    import http.server
    import socket
    import ssl
    import threading

    # The container's tmpfs, mounted only now: this interpreter and its imports may
    # live under /tmp (a checkout there), which the mounts then cover.
    subprocess.run(["sh", "-c", os.environ.pop(AGENT_MOUNTS_ENV)], check=True)

    class Echo(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = b"true" if self.path == "/api/health" else json.dumps(
                {"path": self.path, "method": self.command, "headers": {k.lower(): v for k, v in self.headers.items()}}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = answer

        def log_message(self, *args):
            pass

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", API_PORT), Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    log = open("/tmp/nginx.log", "w+")
    nginx = subprocess.Popen(["sh", "-c", START_SCRIPT], stdout=log, stderr=subprocess.STDOUT)
    ports = [HTTP_PORT] + ([HTTPS_PORT] if os.environ.get(proxy.CERTIFICATE_ENV) else [])

    def say(message):
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def listening(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    deadline = time.monotonic() + 15
    while not all(listening(p) for p in ports):
        if nginx.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            say({"error": f"nginx did not start: {log.read()[-3000:]}"})
            return
        time.sleep(0.05)
    say({"ready": True})

    def request(scheme, host, port, path, method="GET", headers=None, source=CLIENT, ca=None):
        if scheme == "https":
            context = ssl.create_default_context(cadata=ca)
            conn = http.client.HTTPSConnection(host, port, context=context, source_address=(source, 0), timeout=10)
        else:
            conn = http.client.HTTPConnection(host, port, source_address=(source, 0), timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
            return {"status": response.status, "headers": {k.lower(): v for k, v in response.getheaders()},
                    "body": body}
        except Exception as err:  # noqa: BLE001 reported to the test
            return {"error": f"{type(err).__name__}: {err}"}
        finally:
            conn.close()

    for line in sys.stdin:
        call = json.loads(line)
        say([request(**call["request"]) for _ in range(call.get("count", 1))])
    nginx.terminate()
    nginx.wait(timeout=10)


AGENT_MOUNTS_ENV = "EDGE_AGENT_MOUNTS"


class EdgeAgent:
    """Drives edge_agent() in `unshare -m -n`: a network of its own (only loopback,
    so nginx's fixed ports collide with nothing), /etc/hosts naming the replicas,
    and tmpfs where the container has it."""

    def __init__(self, tmp_path: Path, env: dict[str, str], hosts: list[str]):
        nginx_binary()
        (tmp_path / "hosts").write_text("".join(f"127.0.0.1 {h}\n" for h in ["localhost", PUBLIC_HOST, *hosts]))
        mounts = " && ".join(f"mount -t tmpfs -o mode=1777 tmpfs {p}" for p in proxy.TMPFS if Path(p).is_dir())
        agent = (f"import sys; sys.path[:0] = {[str(REPO), str(REPO / 'tests')]!r}; "
                 "import test_proxy; test_proxy.edge_agent()")
        script = " && ".join([
            "ip link set lo up",
            f"mount --bind {tmp_path}/hosts /etc/hosts",
            f"exec {shlex.quote(sys.executable)} -c {shlex.quote(agent)}",
        ])
        path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
        self.process = subprocess.Popen(
            ["unshare", "-m", "-n", "sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env={"PATH": path, AGENT_MOUNTS_ENV: mounts, **env},
        )
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        ready = self._read(timeout=60)
        if ready != {"ready": True}:
            self.close()
            pytest.fail(f"the edge did not come up: {ready}")

    def _read(self, timeout: float):
        if not self.selector.select(timeout):
            raise TimeoutError("no answer from the edge agent")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the edge agent exited: {self.process.stderr.read()[-3000:]}")
        return json.loads(line)

    def requests(self, url: str, *, count: int = 1, **options) -> list[dict]:
        scheme, rest = url.split("://", 1)
        authority, _, path = rest.partition("/")
        host, _, port = authority.rpartition(":")
        request = {"scheme": scheme, "host": host, "port": int(port), "path": "/" + path, **options}
        self.process.stdin.write(json.dumps({"request": request, "count": count}) + "\n")
        self.process.stdin.flush()
        return self._read(timeout=60 + 10 * count)

    def get(self, url: str, **options) -> dict:
        return self.requests(url, **options)[0]

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


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
    hosts = replica_hosts(config.api.replicas)
    tls = edge_tls_run(SECURE).outputs
    env = nginx_env(render_nginx_conf(config, "test", hosts), certificate=tls["certificate"],
                    private_key=tls["private_key"], htpasswd=htpasswd_line("ops", PASSWORD))
    agent = EdgeAgent(tmp_path_factory.mktemp("secure-edge"), env, hosts)
    agent.ca = tls["ca_certificate"]
    yield agent
    agent.close()


@pytest.fixture(scope="module")
def open_edge(tmp_path_factory):
    """The defaults: plain HTTP, no auth at nginx, open to all, no rate limit."""
    config = load_paths({"proxy.publicUrl": OPEN_PUBLIC_URL})
    env = nginx_env(render_nginx_conf(config, "test", ["prefect-api-1"]))
    agent = EdgeAgent(tmp_path_factory.mktemp("open-edge"), env, ["prefect-api-1"])
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
    answers = secure_edge.requests(https("/api/ready"), count=BURST + 6, ca=secure_edge.ca, source=THROTTLED_CLIENT)
    statuses = [a.get("status") for a in answers]
    # the first request plus the burst pass; at RATE r/s at most one more refills meanwhile
    passed = statuses.index(429) if 429 in statuses else len(statuses)
    assert BURST + 1 <= passed <= BURST + 2, statuses
    assert set(statuses[:passed]) == {200} and set(statuses[passed:]) == {429}, statuses
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
