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
