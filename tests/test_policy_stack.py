"""The pack's stack policies over the program's whole stack: the Postgres volume is
retained, prod has TLS and auth, replicas wait for the migration."""

from __future__ import annotations

import pytest

from components.prefect_settings import SERVER_AUTH_STRING
from harness import Registration
from policy_support import (
    PROD_HTTP,
    by_component,
    drop_dependency,
    evaluate,
    of,
    ok_run,
    one,
    pack,
    regs_of,
    set_label,
    stack_args,
    unique,
)
from support import VOLUME, component_of, labels_of


# --- 3. the Postgres volume is retained -----------------------------------------------------


def postgres_volume(regs) -> Registration:
    postgres = one(regs, "postgres")
    mount = next(m for m in postgres.inputs["volumes"] if m["containerPath"] == pack.POSTGRES_DATA_DIR)
    return next(r for r in unique(regs) if r.type == VOLUME and r.inputs["name"] == mount["volumeName"])


@pytest.mark.parametrize("stack, overrides", [("dev", {}), ("prod", {}), ("dev", {"postgres.retainVolume": False})])
def test_declared_data_volume_matches_retain_on_delete(stack, overrides):
    """Policy packs cannot see retain_on_delete: the program declares it on the
    Postgres container. Here, where both are visible, they must agree."""
    regs = ok_run(stack, overrides).registrations
    volume, postgres = postgres_volume(regs), one(regs, "postgres")
    declared = labels_of(postgres).get(pack.DATA_VOLUME_LABEL)
    assert declared in (pack.DATA_VOLUME_RETAINED, "disposable"), f"{pack.DATA_VOLUME_LABEL}={declared!r}"
    assert (declared == pack.DATA_VOLUME_RETAINED) is volume.retain_on_delete


def test_volume_deleted_with_the_stack_is_reported():
    regs = ok_run("dev", {"postgres.retainVolume": False}).registrations
    volume = postgres_volume(regs)
    assert not volume.retain_on_delete
    found = of(evaluate(regs), "postgres-volume-retained")
    assert [v.urn for v in found] == [volume.urn]
    assert volume.name in found[0].message and volume.inputs["name"] in found[0].message


@pytest.mark.parametrize("declared", ["disposable", None])
def test_cleared_declaration_is_reported(dev_run, declared):
    regs = regs_of(dev_run)
    volume = postgres_volume(regs)
    volume.retain_on_delete = False
    set_label(one(regs, "postgres"), pack.DATA_VOLUME_LABEL, declared)
    found = of(evaluate(regs), "postgres-volume-retained")
    assert [v.urn for v in found] == [volume.urn]
    assert volume.name in found[0].message


def test_protect_counts_as_retained(dev_run):
    regs = regs_of(dev_run)
    set_label(one(regs, "postgres"), pack.DATA_VOLUME_LABEL, None)
    postgres_volume(regs).protect = True
    assert of(evaluate(regs), "postgres-volume-retained") == []


def test_retain_on_delete_option_is_read_when_pulumi_policy_exposes_it(dev_run):
    regs = regs_of(dev_run)
    volume = postgres_volume(regs)
    args = stack_args(regs)
    resource = next(r for r in args.resources if r.urn == volume.urn)
    resource.opts.retain_on_delete = False  # a later pulumi_policy; the declaration says retained
    found = []
    pack.postgres_volume_retained(args, lambda message, urn=None: found.append(urn))
    assert found == [volume.urn]


def test_data_directory_off_the_volume_is_reported(dev_run):
    regs = regs_of(dev_run)
    postgres = one(regs, "postgres")
    for mount in postgres.inputs["volumes"]:
        mount["containerPath"] = "/srv/elsewhere"
    found = of(evaluate(regs), "postgres-volume-retained")
    assert [v.urn for v in found] == [postgres.urn]
    assert postgres.name in found[0].message and pack.POSTGRES_DATA_DIR in found[0].message


# --- 4. prod has TLS and auth --------------------------------------------------------------------


def test_prod_without_tls_is_reported():
    regs = ok_run("prod", PROD_HTTP).registrations
    proxy = one(regs, "proxy")
    found = of(evaluate(regs), "prod-tls-and-auth")
    assert [v.urn for v in found] == [proxy.urn]
    assert proxy.name in found[0].message and f"{pack.TLS_LABEL}=off" in found[0].message


def test_prod_without_auth_is_reported():
    regs = ok_run("prod", {"auth.mode": "none"}).registrations
    config = one(regs, pack.EDGE_CONFIG_COMPONENT)  # who checks credentials goes with nginx's config
    found = of(evaluate(regs), "prod-tls-and-auth")
    assert [v.urn for v in found] == [config.urn]
    assert config.name in found[0].message and f"{pack.AUTH_LABEL}=none" in found[0].message


def test_prod_nginx_without_an_edge_config_is_reported_as_declaring_no_auth(prod_run):
    regs = [r for r in regs_of(prod_run) if component_of(r) != pack.EDGE_CONFIG_COMPONENT]
    proxy = one(regs, "proxy")
    found = of(evaluate(regs), "prod-tls-and-auth")
    assert [v.urn for v in found] == [proxy.urn]
    assert "does not declare authentication" in found[0].message


def test_prod_with_nginx_auth_passes():
    regs = ok_run("prod", {"auth.mode": "nginx"}).registrations
    assert of(evaluate(regs), "prod-tls-and-auth") == []


def test_tls_and_auth_are_not_required_outside_prod():
    regs = ok_run("dev", {"auth.mode": "none", "tls.enabled": False}).registrations
    assert of(evaluate(regs), "prod-tls-and-auth") == []


def test_prod_proxy_without_declarations_is_reported(prod_run):
    regs = regs_of(prod_run)
    proxy = one(regs, "proxy")
    config = one(regs, pack.EDGE_CONFIG_COMPONENT)
    set_label(proxy, pack.TLS_LABEL, None)
    set_label(config, pack.AUTH_LABEL, None)
    found = of(evaluate(regs), "prod-tls-and-auth")
    assert len(found) == 2 and {v.urn for v in found} == {proxy.urn, config.urn}
    assert any(pack.TLS_LABEL in v.message for v in found) and any(pack.AUTH_LABEL in v.message for v in found)


def test_declared_tls_without_the_https_port_is_reported(prod_run):
    regs = regs_of(prod_run)
    proxy = one(regs, "proxy")
    set_label(proxy, pack.TLS_LABEL, "generated")
    set_label(one(regs, pack.EDGE_CONFIG_COMPONENT), pack.AUTH_LABEL, "nginx")
    proxy.inputs["ports"] = [p for p in proxy.inputs.get("ports", []) if p.get("internal") != pack.TLS_INTERNAL_PORT]
    found = of(evaluate(regs), "prod-tls-and-auth")
    assert [v.urn for v in found] == [proxy.urn]
    assert str(pack.TLS_INTERNAL_PORT) in found[0].message


def test_an_unknown_tls_label_is_not_judged_against_the_ports(prod_run):
    # During preview a label may be unknown: no check may read it as a TLS mode.
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

    regs = regs_of(prod_run)
    proxy = one(regs, "proxy")
    set_label(proxy, pack.TLS_LABEL, UNKNOWN_STRING_VALUE)
    proxy.inputs["ports"] = [p for p in proxy.inputs.get("ports", []) if p.get("internal") != pack.TLS_INTERNAL_PORT]
    assert proxy.inputs["ports"], "the plain-HTTP redirect port should be left"
    assert of(evaluate(regs), "prod-tls-and-auth") == []


def test_prefect_auth_missing_on_a_replica_is_reported(prod_run):
    regs = regs_of(prod_run)
    proxy = one(regs, "proxy")
    set_label(proxy, pack.TLS_LABEL, "generated")
    set_label(one(regs, pack.EDGE_CONFIG_COMPONENT), pack.AUTH_LABEL, "prefect")
    proxy.inputs["ports"] = [{"internal": pack.TLS_INTERNAL_PORT, "external": 443}]
    replicas = by_component(regs, "api")
    assert len(replicas) == 3
    for replica in replicas:
        envs = [e for e in replica.inputs["envs"] if not e.startswith(f"{SERVER_AUTH_STRING}=")]
        replica.inputs["envs"] = envs + [f"{SERVER_AUTH_STRING}=prefect:pw"]
    assert of(evaluate(regs), "prod-tls-and-auth") == []
    bad = replicas[1]
    bad.inputs["envs"] = [e for e in bad.inputs["envs"] if not e.startswith(f"{SERVER_AUTH_STRING}=")]
    found = of(evaluate(regs), "prod-tls-and-auth")
    assert [v.urn for v in found] == [bad.urn]
    assert bad.name in found[0].message and SERVER_AUTH_STRING in found[0].message


# --- 6. replicas wait for the migration ------------------------------------------------------------

def test_replica_not_waiting_for_the_migration_is_reported(prod_run):
    regs = regs_of(prod_run)
    migration = one(regs, "migration")
    replica = by_component(regs, "api")[0]
    drop_dependency(replica, migration.urn)
    found = of(evaluate(regs), "replicas-wait-for-migration")
    assert [v.urn for v in found] == [replica.urn]
    assert replica.name in found[0].message


@pytest.mark.parametrize("keep", ["explicit", "through_props"])
def test_either_kind_of_dependency_counts(prod_run, keep):
    regs = regs_of(prod_run)
    migration = one(regs, "migration")
    for replica in by_component(regs, "api") + by_component(regs, "services"):
        drop_dependency(replica, migration.urn)
        if keep == "explicit":
            replica.dependencies.append(migration.urn)
        else:  # an input computed from the job's outputs
            replica.property_dependencies.setdefault("envs", []).append(migration.urn)
    assert of(evaluate(regs), "replicas-wait-for-migration") == []


def test_services_container_must_wait_too(dev_run):
    regs = regs_of(dev_run)
    services = by_component(regs, "services")[0]
    drop_dependency(services, one(regs, "migration").urn)
    found = of(evaluate(regs), "replicas-wait-for-migration")
    assert [v.urn for v in found] == [services.urn]


def test_no_migration_container_at_all_is_reported(dev_run):
    regs = regs_of(dev_run)
    set_label(one(regs, "migration"), pack.COMPONENT_LABEL, "something-else")
    gated = by_component(regs, "api") + by_component(regs, "services")
    found = of(evaluate(regs), "replicas-wait-for-migration")
    assert sorted(v.urn for v in found) == sorted(r.urn for r in gated)
    assert all("no migration container" in v.message for v in found)


# --- the same policies over a swarm stack: the stateless tier is Swarm services -------------

SWARM = {"platform": "swarm", "worker.enabled": True}


def test_a_swarm_prod_stack_passes_every_policy():
    assert evaluate(ok_run("prod", SWARM).registrations) == []


def test_a_swarm_prod_stack_without_tls_or_auth_is_reported_on_the_nginx_service():
    regs = ok_run("prod", {**SWARM, **PROD_HTTP, "auth.mode": "none"}).registrations
    found = of(evaluate(regs), "prod-tls-and-auth")
    nginx = next(r for r in regs if r.type == "docker:index/service:Service" and r.inputs["name"].endswith("-nginx"))
    assert any(v.urn == nginx.urn and "plain HTTP" in v.message and "service" in v.message for v in found), found
    assert any("lets anyone reach the API" in v.message for v in found), found


def test_a_swarm_service_that_skips_the_migration_gate_is_reported():
    regs = regs_of(ok_run("prod", SWARM))
    [api] = [r for r in regs if r.type == "docker:index/service:Service" and r.inputs["name"].endswith("-api")]
    for migration in by_component(regs, pack.MIGRATION_COMPONENT):
        drop_dependency(api, migration.urn)
    found = of(evaluate(regs), "replicas-wait-for-migration")
    assert [v.urn for v in found] == [api.urn], found


def test_a_swarm_service_on_latest_is_reported():
    regs = regs_of(ok_run("prod", SWARM))
    [api] = [r for r in regs if r.type == "docker:index/service:Service" and r.inputs["name"].endswith("-api")]
    api.inputs["taskSpec"]["containerSpec"]["image"] = "prefecthq/prefect:latest"
    found = of(evaluate(regs), "images-pinned")
    assert [v.urn for v in found] == [api.urn], found
