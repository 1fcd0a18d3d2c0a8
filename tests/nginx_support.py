"""Shared by the nginx tests (tests/test_proxy_*.py): nginx -t in a namespace, the
matrix of edge controls, certificates and credentials for real nginx runs, and
reading the rendered config (servers, locations, which location nginx picks)."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import bcrypt
import pytest

from components import proxy
from components.config import load_paths
from components.proxy import RUNTIME_DIR, render_nginx_conf
from tls_mocks import CERT_REQUEST, LOCALLY_SIGNED_CERT, PRIVATE_KEY, SELF_SIGNED_CERT, tls_state



def render_conf(config, stack: str, **kwargs) -> str:
    """nginx.conf as the stack renders it for ``config``: its proxy group, TLS, and nginx's basic auth."""
    return render_nginx_conf(
        config.proxy, stack, tls=config.tls.enabled, basic_auth=config.auth.checked_by_nginx, **kwargs
    )


def write_upstreams(runtime_dir: Path, replicas: int) -> None:
    """What the container's watcher writes for ``replicas`` healthy replicas (see
    test_proxy_start_script for the real one)."""
    runtime_dir.mkdir(parents=True, exist_ok=True)
    addresses = [f"127.0.0.{i}" for i in range(1, replicas + 1)]
    (runtime_dir / proxy.UPSTREAM_FILE).write_text("".join(f"server {a}:4200 max_fails=3;\n" for a in addresses))
    (runtime_dir / proxy.TASKS_UPSTREAM_FILE).write_text(
        "".join(f"server {a}:4200{' backup' if i else ''};\n" for i, a in enumerate(addresses)))

def nginx_binary():
    path = shutil.which("nginx") or "/usr/sbin/nginx"
    if not shutil.which(path):
        pytest.fail("Debian's nginx is not installed: run bin/test, which installs it (apt-get install nginx-light)")
    return path


def nginx_test(conf: str, tmp_path, runtime_dir: Path | None = None, replicas: int = 1) -> subprocess.CompletedProcess:
    """`nginx -t` with the watcher's upstream files for ``replicas`` replicas in ``runtime_dir``
    (skipped when None: nginx must then fail on the missing include)."""
    (tmp_path / "nginx.conf").write_text(conf)
    if runtime_dir is not None:
        write_upstreams(runtime_dir, replicas)
    return subprocess.run([nginx_binary(), "-t", "-c", str(tmp_path / "nginx.conf")],
                          capture_output=True, text=True, timeout=30)


# --- certificates and credentials for real nginx runs ---------------------------------------------


def generated_pki(public_host: str = "prefect.example.internal") -> dict[str, str]:
    """A CA and a server certificate as pulumi-tls would make them (tests/tls_mocks.py)."""
    pki = two_certificates(public_host, count=1)
    return {**pki["certificates"][0], "ca": pki["ca"]}


def two_certificates(public_host: str, count: int = 2) -> dict:
    """A CA and ``count`` server certificates it signed, each with a key of its own:
    {"ca": pem, "certificates": [{"certificate": pem, "key": pem}, ...]}."""
    ca_key = tls_state(PRIVATE_KEY, {"algorithm": "ECDSA", "ecdsaCurve": "P256"})
    ca = tls_state(SELF_SIGNED_CERT, {
        "privateKeyPem": ca_key["privateKeyPem"], "subject": {"commonName": "test CA"},
        "isCaCertificate": True, "allowedUses": ["cert_signing", "crl_signing"], "validityPeriodHours": 24,
    })
    return {"ca": ca["certPem"], "certificates": [_server_certificate(ca_key, ca, public_host) for _ in range(count)]}


def _server_certificate(ca_key: dict, ca: dict, public_host: str) -> dict[str, str]:
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
    return {"certificate": cert["certPem"], "key": key["privateKeyPem"]}


def htpasswd_line(user: str, password: str) -> str:
    """What StackSecrets delivers: Go's bcrypt ($2a$, cost 10), as pulumi-random hashes."""
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10, prefix=b'2a')).decode()}\n"


def write_runtime_files(directory: Path, pki: dict[str, str]) -> None:
    """The files CONFIG_SCRIPT writes beside nginx.conf, for an nginx run outside the container."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / proxy.CERTIFICATE_FILE).write_text(pki["certificate"])
    (directory / proxy.KEY_FILE).write_text(pki["key"])
    (directory / proxy.HTPASSWD_FILE).write_text(htpasswd_line("ops", "secret"))


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
    return config, render_conf(config, "test", runtime_dir=runtime_dir)


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
