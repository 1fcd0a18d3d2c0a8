"""Routing in the rendered nginx.conf: upstreams, which location each path lands
in and what that location does (websockets, task routes, retries, health),
the headers forwarded, and the public URLs the config can carry."""

import re

import pytest

from components import proxy
from components.config import load_paths
from nginx_support import locations, matching_location, proxy_server, render_case
from support import container, env_of

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


@pytest.fixture(scope="module")
def prod_conf(prod_run):
    """What the prod stack's nginx runs with (TLS on): the proxying server."""
    conf = env_of(container(prod_run, proxy.CONFIG_COMPONENT))[proxy.CONF_ENV]
    assert conf == prod_run.outputs["nginx_conf"]
    return proxy_server(conf)


def test_upstream_balances_over_every_replica_with_passive_health(prod_run, prod_conf):
    conf = prod_run.outputs["nginx_conf"]
    upstream = re.search(r"upstream prefect_api \{(.*?)\}", conf, re.S).group(1)
    assert "least_conn;" in upstream
    # the replica set is not in the config: the watcher writes it (tests/test_proxy_start_script.py)
    assert "server " not in upstream
    assert f"include {proxy.RUNTIME_DIR}/{proxy.UPSTREAM_FILE};" in upstream
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
    assert f"include {proxy.RUNTIME_DIR}/{proxy.TASKS_UPSTREAM_FILE};" in upstream
    assert "least_conn" not in upstream and "server " not in upstream


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
