"""Generated passwords: percent-encoded in every URL, secret everywhere they go."""

from urllib.parse import quote, unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.connection import parse_url
from sqlalchemy.engine import make_url

from components.secrets import PASSWORD_SPECIALS
from components.urls import postgres_url, redis_url
from harness import SECRET_SIG, SECRET_VALUE, StackMocks
from support import containers, env_of, replica, container

HOSTILE = "p@ss:/?#%& wörd+=!$*"
printable = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=64
)


@given(password=printable, user=st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True))
@settings(max_examples=300, deadline=None)
def test_postgres_url_round_trips_through_sqlalchemy(password, user):
    url = make_url(postgres_url(user, password, "postgres", 5432, "prefect"))
    assert url.password == password
    assert url.username == user
    assert (url.host, url.port, url.database, url.drivername) == ("postgres", 5432, "prefect", "postgresql+asyncpg")


@given(password=printable)
@settings(max_examples=300, deadline=None)
def test_redis_url_round_trips_through_redis_py(password):
    parsed = parse_url(redis_url(password, "redis", 6379, 1))
    assert parsed["password"] == password
    assert (parsed["host"], parsed["port"], parsed["db"]) == ("redis", 6379, 1)


def test_hostile_characters_do_not_leak_into_the_url_structure():
    url = postgres_url("prefect", HOSTILE, "postgres", 5432, "prefect")
    parts = urlsplit(url)
    assert parts.hostname == "postgres" and parts.port == 5432 and parts.path == "/prefect"
    assert unquote(parts.password) == HOSTILE
    assert "+" not in url.split("@")[0].split(":", 2)[2], "a plus would read back as a space or a plus"


def test_generated_passwords_include_url_hostile_characters():
    assert set("@:/?#%& ") <= set(PASSWORD_SPECIALS)


def plain_leaks(raw, needles, path=""):
    """Paths of string leaves that contain a needle outside any secret wrapper."""
    if isinstance(raw, dict):
        if raw.get(SECRET_SIG) == SECRET_VALUE:
            return []
        return [leak for k, v in raw.items() for leak in plain_leaks(v, needles, f"{path}.{k}")]
    if isinstance(raw, list):
        return [leak for i, v in enumerate(raw) for leak in plain_leaks(v, needles, f"{path}[{i}]")]
    if isinstance(raw, str) and any(n in raw for n in needles):
        return [path]
    return []


def test_every_password_bearing_value_is_secret(stack_run):
    _, run = stack_run
    password = StackMocks().password
    needles = [password, quote(password, safe="")]
    carriers = 0
    for reg in run.registrations:
        assert plain_leaks(reg.raw_inputs, needles, reg.name) == []
        carriers += sum(1 for needle in needles if needle in repr(reg.inputs))
    # The leak check must have had something to check: Postgres env, Redis env and
    # config, and the URLs and passwords in the migration, API and services envs.
    assert carriers >= 6
    assert plain_leaks(run.raw_outputs, needles, "outputs") == []


def test_no_password_on_any_command_line_or_label(stack_run):
    _, run = stack_run
    password = StackMocks().password
    for reg in containers(run):
        name = reg.inputs["name"]
        assert password not in repr(reg.inputs.get("command")), name
        assert password not in repr(reg.inputs.get("labels")), name
        assert password not in repr(reg.inputs.get("healthcheck")), name


@pytest.mark.parametrize("role", ["migrate", "api-1", "services-1"])
def test_prefect_gets_the_encoded_database_url(stack_run, role):
    _, run = stack_run
    reg = {"migrate": lambda: container(run, "migration"), "api-1": lambda: replica(run, "api", 1),
           "services-1": lambda: replica(run, "services", 1)}[role]()
    env = env_of(reg)
    url = make_url(env["PREFECT_SERVER_DATABASE_CONNECTION_URL"])
    assert url.password == StackMocks().password
    assert url.host == "postgres"
    if role != "migrate":
        assert parse_url(env["PREFECT_SERVER_DOCKET_URL"])["password"] == StackMocks().password


def passwords_by_name(run) -> dict:
    from support import RANDOM_PASSWORD

    return {r.name.removeprefix("prefect-secrets-"): r for r in run.of_type(RANDOM_PASSWORD)}


def test_a_rotation_count_is_a_new_postgres_and_redis_password_and_nothing_else():
    from harness import run_program

    plain = passwords_by_name(run_program("prod"))
    assert all(not r.inputs.get("keepers") for r in plain.values()), "stacks at rotation 0 keep their passwords"
    rotated = passwords_by_name(run_program("prod", {"secrets.rotation": 2}))
    assert {name for name, r in rotated.items() if r.inputs.get("keepers")} == {"postgres", "redis"}
    assert rotated["postgres"].inputs["keepers"] == rotated["redis"].inputs["keepers"] == {"rotation": "2"}
    # the API credentials and Postgres's init password never rotate with it
    assert not rotated["auth"].inputs.get("keepers") and not rotated["postgres-init"].inputs.get("keepers")


def test_postgres_starts_with_its_init_password_and_the_job_sets_the_current_one():
    """So a rotation changes nothing of the Postgres container: no restart."""
    from components.postgres import CREDENTIALS_COMPONENT
    from harness import run_program

    run = run_program("dev")
    passwords = passwords_by_name(run)
    pg, job = container(run, "postgres"), container(run, CREDENTIALS_COMPONENT)
    assert passwords["postgres-init"].urn in pg.property_dependencies["envs"]
    assert passwords["postgres"].urn not in pg.all_dependencies()
    assert passwords["postgres"].urn in job.property_dependencies["envs"]
    for reg in (replica(run, "api", 1), container(run, "migration")):
        assert passwords["postgres"].urn in reg.all_dependencies() and passwords["postgres-init"].urn not in \
            reg.all_dependencies(), reg.name


def test_a_negative_rotation_is_refused():
    from components.config import ConfigError, load_paths

    with pytest.raises(ConfigError, match="secrets.rotation"):
        load_paths({"secrets.rotation": "-1"})
