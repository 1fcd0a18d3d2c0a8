"""nginx.conf as rendered by the program: valid for Debian's nginx, and routing what it should."""

import itertools
import re
import shutil
import subprocess

import pytest

from components.config import load_config
from components.proxy import render_nginx_conf
from harness import run_program

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


COMBOS = list(itertools.product([1, 2, 3, 5], ["1m", "10m", "50m"], [80, 4200]))


@pytest.mark.parametrize("replicas, body, port", COMBOS)
def test_every_rendered_config_passes_nginx_t(replicas, body, port, tmp_path):
    config = load_config({"api.replicas": str(replicas), "proxy.clientMaxBodySize": body, "proxy.port": str(port)})
    hosts = [f"prefect-api-{i}" for i in range(1, replicas + 1)]
    conf = render_nginx_conf(config, "test", hosts)
    result = nginx_test(conf, hosts, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_t_rejects_a_broken_config(tmp_path):
    """The check above can fail: an unresolvable upstream is an error."""
    conf = render_nginx_conf(load_config({}), "test", ["prefect-api-1"])
    result = nginx_test(conf, [], tmp_path)
    assert result.returncode != 0
    assert "host not found in upstream" in result.stderr


def locations(conf: str) -> dict[str, str]:
    """location matcher -> its block body."""
    found = {}
    for match in re.finditer(r"location\s+([^{]+?)\s*\{(.*?)\n        \}", conf, re.S):
        found[match.group(1).strip()] = match.group(2)
    return found


def matching_location(conf: str, path: str) -> str:
    """Which location nginx would pick for the path: exact, then first regex, then prefix."""
    locs = locations(conf)
    for matcher in locs:
        if matcher.startswith("= ") and matcher[2:] == path:
            return matcher
    for matcher in locs:
        if matcher.startswith("~ ") and re.search(matcher[2:], path):
            return matcher
    return "/"


@pytest.fixture(scope="module")
def prod_conf():
    run = run_program("prod")
    return run.containers()["prefect-ha-prod-nginx"].inputs["uploads"][0]["content"]


def test_upstream_balances_over_every_replica_with_passive_health(prod_conf):
    upstream = re.search(r"upstream prefect_api \{(.*?)\}", prod_conf, re.S).group(1)
    assert "least_conn;" in upstream
    servers = re.findall(r"server (\S+) max_fails=\d+ fail_timeout=\d+s;", upstream)
    assert servers == ["prefect-api-1:4200", "prefect-api-2:4200", "prefect-api-3:4200"]
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
def test_background_task_routes_go_to_one_replica_with_the_others_as_backups(prod_conf, path):
    body = locations(prod_conf)[matching_location(prod_conf, path)]
    assert "proxy_pass http://prefect_api_tasks;" in body, path
    upstream = re.search(r"upstream prefect_api_tasks \{(.*?)\}", prod_conf, re.S).group(1)
    servers = re.findall(r"server (\S+)( backup)?", upstream)
    assert servers[0] == ("prefect-api-1:4200", "")
    assert servers[1:] == [("prefect-api-2:4200", " backup"), ("prefect-api-3:4200", " backup")]


@pytest.mark.parametrize("path", ["/api/task_runs/filter", "/api/task_runs/count", "/api/flow_runs/",
                                  "/api/flow_runs/0b4e6a3c-8f7e-4c1a-9d2b-5e6f7a8b9c0d/set_state"])
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


def test_health_location_is_fast_and_headers_are_forwarded(prod_conf):
    body = locations(prod_conf)["= /api/health"]
    assert "proxy_connect_timeout 1s;" in body and "proxy_read_timeout 2s;" in body
    for header in ("Host $http_host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Real-IP"):
        assert f"proxy_set_header {header}" in prod_conf
    assert re.search(r"client_max_body_size 10m;", prod_conf)
    assert prod_conf.count("non_idempotent") == 1
