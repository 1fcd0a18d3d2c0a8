"""The docker provider double on its own: what it reads back is what the real
provider reads back, so the engine tests catch what a user's refresh shows."""

from __future__ import annotations

import sys

import pulumi_docker
import pulumi_random
import pulumi_tls
import pytest
from pulumi.type_token import get_type_token

from harness import REPO
from testbed import IMAGES, RUN_ENV, new_run_id

sys.path.insert(0, str(REPO / "testbed" / "providers"))
import docker_provider as dp  # noqa: E402
import random_provider  # noqa: E402
import tls_provider  # noqa: E402

IMAGE = IMAGES["proxy.image"]


@pytest.fixture
def container(docker_client, monkeypatch):
    monkeypatch.setenv(RUN_ENV, new_run_id("double"))
    made = []

    def create(**inputs):
        res = dp.Container()
        news = res.check({"name": f"prefect-ha-double-{len(made)}-{new_run_id('c')}", "image": IMAGE,
                          "command": ["sleep", "600"], **inputs})
        id_, state = res.create(news, preview=False, timeout=120)
        made.append((id_, state))
        return res, news, id_, state

    yield create
    for id_, state in made:
        dp.Container().delete(id_, {**state, "attach": True}, 60)


def test_capabilities_written_without_cap_prefix_would_be_replaced_after_refresh(container):
    res, news, id_, _ = container(capabilities={"drops": ["ALL"], "adds": ["CHOWN"]})
    refreshed = res.read(id_, news)
    assert refreshed["capabilities"]["adds"] == ["CAP_CHOWN"]
    changed, replaces = res.diff(refreshed, news)
    assert "capabilities" in replaces
    # Written as Docker stores them, the refresh shows nothing.
    res2, news2, id2, _ = container(capabilities={"drops": ["ALL"], "adds": ["CAP_CHOWN"]})
    assert res2.diff(res2.read(id2, news2), news2) == ([], [])


def test_healthcheck_durations_read_back_as_go_prints_them(container):
    check = {"tests": ["CMD", "true"], "interval": "60s", "timeout": "5s", "retries": 3, "startPeriod": "0s"}
    res, news, id_, _ = container(healthcheck=check)
    refreshed = res.read(id_, news)
    assert refreshed["healthcheck"]["interval"] == "1m0s"
    assert "healthcheck" in res.diff(refreshed, news)[0]


def test_a_stopped_container_that_must_run_is_removed_and_dropped(container, docker_client):
    res, news, id_, state = container()
    docker_client.api.stop(id_, timeout=0)
    assert res.read(id_, state) is None
    assert not docker_client.containers.list(all=True, filters={"id": id_})


@pytest.mark.parametrize("nanos, go", [
    (0, "0s"), (5 * 10**9, "5s"), (60 * 10**9, "1m0s"), (5400 * 10**9, "1h30m0s"),
    (1_500_000_000, "1.5s"), (500_000_000, "500ms"), (61 * 10**9 + 250_000_000, "1m1.25s"),
])
def test_durations_are_spelled_as_go_prints_them(nanos, go):
    assert dp.go_duration(nanos) == go


# Each double keeps its type tokens itself (the tls one takes them from tests/tls_mocks.py, whose
# tls_state is keyed by them): they must be the tokens the program's SDKs register resources as.
@pytest.mark.parametrize("double, sdk_types", [
    (dp, [pulumi_docker.Network, pulumi_docker.Volume, pulumi_docker.Container,
          pulumi_docker.Service, pulumi_docker.Secret, pulumi_docker.ServiceConfig]),
    (random_provider, [pulumi_random.RandomPassword, pulumi_random.RandomId]),
    (tls_provider, [pulumi_tls.PrivateKey, pulumi_tls.CertRequest, pulumi_tls.SelfSignedCert,
                    pulumi_tls.LocallySignedCert]),
], ids=["docker", "random", "tls"])
def test_each_double_serves_the_types_the_sdk_registers(double, sdk_types):
    assert sorted(r.token for r in double.RESOURCES) == sorted(get_type_token(t) for t in sdk_types)


def test_a_random_id_is_drawn_anew_on_every_input_change_and_kept_otherwise():
    """What makes a rolling container's name new even when a change is undone."""
    double = random_provider.RandomId()
    news = double.check({"byteLength": 4, "keepers": {"inputs": "a"}})
    _, first = double.create(news, preview=False, timeout=0)
    assert len(first["hex"]) == 8 and int(first["hex"], 16) == int(first["dec"])
    assert double.diff(first, double.check({"byteLength": 4, "keepers": {"inputs": "a"}})) == ([], [])
    changed, replaced = double.diff(first, double.check({"byteLength": 4, "keepers": {"inputs": "b"}}))
    assert changed == replaced == ["keepers"]
    drawn = {double.create(news, preview=False, timeout=0)[1]["hex"] for _ in range(20)}
    assert len(drawn) == 20  # the same keepers again still draw new bytes
