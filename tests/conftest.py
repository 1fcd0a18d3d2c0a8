import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
for path in (REPO, REPO / "tests", REPO / "tests" / "e2e"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from harness import run_program  # noqa: E402

STACKS = ("dev", "prod")


@pytest.fixture(scope="session", params=STACKS)
def stack_run(request):
    """The real program run once per shipped stack file under plain mocks."""
    run = run_program(request.param)
    assert run.error is None, f"{request.param}: program failed: {run.error!r}"
    return request.param, run


@pytest.fixture(scope="module")
def prod_run():
    """The prod stack under plain mocks, run once per test module that asks."""
    run = run_program("prod")
    assert run.error is None, f"prod: program failed: {run.error!r}"
    return run


@pytest.fixture(scope="module")
def dev_run():
    """The dev stack under plain mocks, run once per test module that asks."""
    run = run_program("dev")
    assert run.error is None, f"dev: program failed: {run.error!r}"
    return run


@pytest.fixture(scope="module")
def pki():
    """A CA and a server certificate as pulumi-tls would make them, for real nginx runs."""
    from nginx_support import generated_pki

    return generated_pki()
