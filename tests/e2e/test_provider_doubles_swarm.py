"""The docker provider double's swarm resources on their own, against a real swarm: Service,
Secret, ServiceConfig and an overlay Network, called as the engine calls them (check, diff,
create, read, update, delete), so the engine tests see what the real provider would do.

The host engine becomes a single-node swarm for this module if it is not one yet, and leaves
it again at the end only then. The tests share one service and run in file order: created,
refreshed, updated in place, updated to a spec that never gets healthy (rolled back), diffed,
deleted.
"""

from __future__ import annotations

import base64
import sys
import time
from typing import Any, Callable

import pulumi_docker
import pytest
from pulumi.type_token import get_type_token

from harness import REPO
from testbed import IMAGES, RUN_ENV, new_run_id

sys.path.insert(0, str(REPO / "testbed" / "providers"))
import docker_provider as dp  # noqa: E402
from plugin import Unsupported  # noqa: E402
from run_label import RUN_LABEL  # noqa: E402

pytestmark = pytest.mark.timeout(900)

IMAGE = IMAGES["proxy.image"]
SECRET = "s3cret-value\n"
CONFIG = "listen 8080;\n"
HEALTHY = {"tests": ["CMD", "curl", "-fsS", "http://localhost/"], "interval": "1s", "timeout": "2s", "retries": 3}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def swarm(docker_client):
    """The host engine as a swarm manager; a swarm this fixture made is left (forced) afterwards."""
    state = docker_client.info()["Swarm"]
    made = False
    had_bridge = bool(docker_client.networks.list(names=["docker_gwbridge"]))
    if state.get("LocalNodeState") == "inactive":
        docker_client.swarm.init(advertise_addr="127.0.0.1")
        made = True
    elif not state.get("ControlAvailable"):
        pytest.fail(f"the engine is in a swarm but not a manager ({state.get('LocalNodeState')})")
    yield docker_client
    if made:
        docker_client.swarm.leave(force=True)
        if not had_bridge:  # `swarm init` made it and `swarm leave` keeps it
            for network in docker_client.networks.list(names=["docker_gwbridge"]):
                network.remove()


@pytest.fixture(scope="module")
def run(swarm):
    """A run id in the plugin's environment; everything labelled with it is swept up at the end."""
    run_id = new_run_id("swarm-double")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(RUN_ENV, run_id)
        yield run_id
    api, selector = swarm.api, {"label": f"{RUN_LABEL}={run_id}"}
    for service in api.services(filters=selector):
        api.remove_service(service["ID"])
    wait_until(lambda: not api.containers(all=True, filters=selector), 60, "the run's task containers gone")
    for secret in api.secrets(filters=selector):
        api.remove_secret(secret["ID"])
    for config in api.configs(filters=selector):
        api.remove_config(config["ID"])
    for network in api.networks(filters=selector):
        api.remove_network(network["Id"])


def service_inputs(name: str, made: dict[str, Any], **container: Any) -> dict[str, Any]:
    return {
        "name": name,
        "mode": {"replicated": {"replicas": 2}},
        "updateConfig": {"parallelism": 1, "order": "start-first", "failureAction": "rollback", "monitor": "2s"},
        "convergeConfig": {"delay": "1s", "timeout": "2m"},
        "taskSpec": {
            "containerSpec": {
                "image": IMAGE,
                "env": {"A": "1"},
                "stopGracePeriod": "10s",
                "healthcheck": HEALTHY,
                "secrets": [{"secretId": made["secret_id"], "secretName": made["secret_name"], "fileName": "x"}],
                "configs": [{"configId": made["config_id"], "configName": made["config_name"],
                             "fileName": "/etc/app.conf"}],
                **container,
            },
            "networksAdvanceds": [{"name": made["network_id"], "aliases": ["web"]}],
        },
    }


@pytest.fixture(scope="module")
def made(run, swarm):
    """A secret, a config, an attachable overlay network and a 2-replica service using them."""
    out: dict[str, Any] = {"run": run, "secret_name": f"phat-{run}-secret", "config_name": f"phat-{run}-config"}
    secret = dp.Secret()
    out["secret_news"] = secret.check({"name": out["secret_name"], "data": b64(SECRET),
                                       "labels": [{"label": "app", "value": "test"}]})
    out["secret_id"], out["secret_state"] = secret.create(out["secret_news"], preview=False, timeout=60)
    config = dp.ServiceConfig()
    out["config_news"] = config.check({"name": out["config_name"], "data": b64(CONFIG)})
    out["config_id"], out["config_state"] = config.create(out["config_news"], preview=False, timeout=60)
    network = dp.Network()
    out["network_news"] = network.check({"name": f"phat-{run}-net", "driver": "overlay", "attachable": True})
    out["network_id"], out["network_state"] = network.create(out["network_news"], preview=False, timeout=60)
    service = dp.Service()
    out["news"] = service.check(service_inputs(f"phat-{run}-web", out))
    started = time.monotonic()
    out["id"], out["state"] = service.create(out["news"], preview=False, timeout=300)
    print(f"\n[swarm double] service converged in {time.monotonic() - started:.1f} s")
    return out


def running_tasks(api, service_id: str) -> list[dict]:
    tasks = api.tasks(filters={"service": service_id, "desired-state": "running"})
    return [t for t in tasks if t["Status"]["State"] == "running"]


def task_container(api, task: dict) -> dict:
    return api.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"])


def test_the_doubles_serve_the_types_the_sdk_registers():
    tokens = {r.token for r in dp.RESOURCES}
    for sdk_type in (pulumi_docker.Service, pulumi_docker.Secret, pulumi_docker.ServiceConfig):
        assert get_type_token(sdk_type) in tokens


def test_created_service_converged_with_its_secret_and_config_in_every_task(made, swarm):
    api = swarm.api
    tasks = running_tasks(api, made["id"])
    assert len(tasks) == 2
    for task in tasks:
        container = task_container(api, task)
        assert container["Config"]["Labels"][RUN_LABEL] == made["run"]  # sweepable on any node
        assert swarm.containers.get(container["Id"]).exec_run(["cat", "/run/secrets/x"]).output.decode() == SECRET
        assert swarm.containers.get(container["Id"]).exec_run(["cat", "/etc/app.conf"]).output.decode() == CONFIG
    assert api.inspect_service(made["id"])["Spec"]["Labels"][RUN_LABEL] == made["run"]
    # Read hides the run label, on the service and on the containers.
    assert made["state"]["labels"] == []
    assert "labels" not in made["state"]["taskSpec"]["containerSpec"]


def test_overlay_network_is_swarm_scoped_and_read_back(made):
    assert made["network_state"]["scope"] == "swarm"
    read = dp.Network().read(made["network_id"], made["network_state"])
    assert read["scope"] == "swarm" and read["driver"] == "overlay" and read["attachable"] is True
    assert dp.Network().diff(read, made["network_news"]) == ([], [])


def test_a_refresh_reads_back_what_the_provider_does_and_shows_no_changes(made):
    service = dp.Service()
    read = service.read(made["id"], made["state"])
    spec = read["taskSpec"]["containerSpec"]
    assert spec["healthcheck"] == {**HEALTHY, "startPeriod": "0s"}
    assert spec["stopGracePeriod"] == "10s"
    assert spec["secrets"] == [{"secretId": made["secret_id"], "secretName": made["secret_name"], "fileName": "x",
                                "fileUid": "0", "fileGid": "0", "fileMode": 0o444}]
    assert read["updateConfig"] == {"parallelism": 1, "delay": "0s", "failureAction": "rollback", "monitor": "2s",
                                    "maxFailureRatio": "0.0", "order": "start-first"}
    # Left out, restartPolicy is Docker's; Read reports it, and the program's (absent) value does not differ.
    assert read["taskSpec"]["restartPolicy"] == {"condition": "any", "maxAttempts": 0}
    assert read["mode"] == {"replicated": {"replicas": 2}, "global": False}
    assert read["endpointSpec"] == {"mode": "vip", "ports": []}
    assert service.diff(read, made["news"]) == ([], [])
    # Docker stores the network's id: a program that names the network differs after every Read.
    by_name = service.check(service_inputs(made["news"]["name"], {**made, "network_id": made["network_news"]["name"]}))
    assert service.diff(read, by_name) == (["taskSpec"], [])


def test_an_env_change_updates_the_service_in_place_and_converges(made, swarm):
    api, service = swarm.api, dp.Service()
    news = service.check(service_inputs(made["news"]["name"], made, env={"A": "2"}))
    assert service.diff(made["state"], news) == (["taskSpec"], [])
    started = time.monotonic()
    state = service.update(made["id"], made["state"], news, preview=False, timeout=300)
    print(f"\n[swarm double] env update converged in {time.monotonic() - started:.1f} s")
    inspected = api.inspect_service(made["id"])  # the same service, updated
    assert inspected["UpdateStatus"]["State"] == "completed"
    assert inspected["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"] == ["A=2"]
    tasks = running_tasks(api, made["id"])
    assert len(tasks) == 2
    assert all("A=2" in task_container(api, t)["Config"]["Env"] for t in tasks)
    assert state["taskSpec"]["containerSpec"]["env"] == {"A": "2"}
    made["news"], made["state"] = news, state


def test_an_update_that_never_gets_healthy_is_rolled_back_and_fails(made, swarm):
    api, service = swarm.api, dp.Service()
    news = service.check(service_inputs(made["news"]["name"], made, env={"A": "2"}, commands=["sleep", "600"]))
    assert service.diff(made["state"], news) == (["taskSpec"], [])
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"^service rollback completed: ") as failed:
        service.update(made["id"], made["state"], news, preview=False, timeout=300)
    print(f"\n[swarm double] the update failed after {time.monotonic() - started:.1f} s: {failed.value}")
    # The provider's words even while Swarm still rolls back: it fails as soon as the rollback has
    # started and every slot runs a task again (with start-first, the old tasks never stopped).
    assert api.inspect_service(made["id"])["UpdateStatus"]["State"] in ("rollback_started", "rollback_completed")
    wait_until(lambda: api.inspect_service(made["id"])["UpdateStatus"]["State"] == "rollback_completed", 120,
               "Swarm's rollback completed")
    spec = api.inspect_service(made["id"])["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert "Command" not in spec and spec["Env"] == ["A=2"]  # back on the previous spec
    tasks = wait_until(lambda: running_tasks(api, made["id"]), 30, "running tasks")
    assert len(tasks) == 2
    assert all(task_container(api, t)["Path"] != "sleep" for t in tasks)
    # A refresh shows the rolled-back spec: the next `up` tries the update again.
    assert service.diff(service.read(made["id"], made["state"]), news) == (["taskSpec"], [])


def test_only_the_force_new_fields_replace(made):
    service, news = dp.Service(), made["news"]
    assert service.diff(made["state"], {**news, "name": "other"}) == (["name"], ["name"])
    assert service.diff(made["state"], {**news, "labels": [{"label": "a", "value": "b"}]}) == (["labels"], [])
    assert service.diff(made["state"], {**news, "mode": {"replicated": {"replicas": 3}, "global": False}}) == (
        ["mode"], [])
    assert service.diff(made["state"], {**news, "updateConfig": {**news["updateConfig"], "order": "stop-first"}}) == (
        ["updateConfig"], [])
    image = {**news["taskSpec"], "containerSpec": {**news["taskSpec"]["containerSpec"], "image": "other:1"}}
    assert service.diff(made["state"], {**news, "taskSpec": image}) == (["taskSpec"], [])
    secret = dp.Secret()
    for change in ({"name": "other"}, {"data": b64("other")}, {"labels": []}):
        key = next(iter(change))
        assert secret.diff(made["secret_state"], {**made["secret_news"], **change}) == ([key], [key])
    config = dp.ServiceConfig()
    for change in ({"name": "other"}, {"data": b64("other")}):
        key = next(iter(change))
        assert config.diff(made["config_state"], {**made["config_news"], **change}) == ([key], [key])
    # Read gives back only what the provider reads: a secret's name, a config's name and data.
    assert secret.read(made["secret_id"], made["secret_state"]) == made["secret_state"]
    assert config.read(made["config_id"], made["config_state"]) == made["config_state"]


def test_check_fails_on_what_the_provider_or_the_double_does_not_take(made):
    service = dp.Service()
    with pytest.raises(Unsupported, match="dir"):
        service.check({**made["news"], "taskSpec": {"containerSpec": {"image": IMAGE, "dir": "/tmp"}}})
    with pytest.raises(ValueError, match="doesn't match the pattern"):
        service.check({**made["news"], "updateConfig": {"failureAction": "explode"}})
    with pytest.raises(ValueError, match="conflicts with converge_config"):
        service.check({**made["news"], "mode": {"global": True}})
    with pytest.raises(ValueError, match="is not base64 decodeable"):
        dp.Secret().check({"name": "x", "data": "not base64!"})


def test_a_service_that_never_converges_is_deleted_and_create_fails(made, swarm):
    api, service = swarm.api, dp.Service()
    news = service.check({**service_inputs(f"phat-{made['run']}-bad", made, commands=["sleep", "600"],
                                           stopGracePeriod="5s"),
                          "convergeConfig": {"delay": "1s", "timeout": "15s"}})
    with pytest.raises(RuntimeError, match=r"^Service with ID \(\w+\) did not converge after 15s$"):
        service.create(news, preview=False, timeout=300)
    assert not api.services(filters={"name": news["name"]})


def test_delete_waits_for_the_task_containers_and_read_drops_what_is_gone(made, swarm):
    api, service = swarm.api, dp.Service()
    of_service = {"label": f"com.docker.swarm.service.id={made['id']}"}
    assert api.containers(filters=of_service)
    started = time.monotonic()
    service.delete(made["id"], made["state"], timeout=300)
    print(f"\n[swarm double] service deleted in {time.monotonic() - started:.1f} s")
    # stopGracePeriod 10s: the provider waited for the containers of the tasks not shut down.
    assert not api.containers(filters=of_service)
    wait_until(lambda: not api.containers(all=True, filters=of_service), 30, "every task container gone")
    assert service.read(made["id"], made["state"]) is None

    network = dp.Network()
    network.delete(made["network_id"], made["network_state"], timeout=60)
    assert network.read(made["network_id"], made["network_state"]) is None
    secret, config = dp.Secret(), dp.ServiceConfig()
    secret.delete(made["secret_id"], made["secret_state"], timeout=60)
    config.delete(made["config_id"], made["config_state"], timeout=60)
    assert secret.read(made["secret_id"], made["secret_state"]) is None
    assert config.read(made["config_id"], made["config_state"]) is None
    with pytest.raises(RuntimeError, match="not found"):  # as the provider: deleting what is gone fails
        secret.delete(made["secret_id"], made["secret_state"], timeout=60)
