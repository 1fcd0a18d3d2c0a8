"""The GitHub Actions workflows: actionlint-clean, and they do what they say.

actionlint is not a Python package (see .ci/install-actionlint.sh for why);
install it with `bash .ci/install-actionlint.sh`. It is found through, in
order: $ACTIONLINT, the cache that script installs into, PATH. A missing
binary fails the lint tests; it never skips them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS_DIR = REPO / ".github" / "workflows"
PREVIEW = WORKFLOWS_DIR / "preview.yml"
DEPLOY_DEV = WORKFLOWS_DIR / "deploy-dev.yml"
INSTALL_HINT = "run `bash .ci/install-actionlint.sh` (or set ACTIONLINT to the binary)"
PULUMI_ACTION = "pulumi/actions@v6"


def _actionlint() -> str:
    env = os.environ.get("ACTIONLINT")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            pytest.fail(f"ACTIONLINT={env!r} is not an executable file; {INSTALL_HINT}")
        return env
    cache = Path(os.environ.get("PREFECT_HA_CACHE") or REPO / ".ci" / "cache")
    cached = cache / "bin" / "actionlint"
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    on_path = shutil.which("actionlint")
    if on_path:
        return on_path
    pytest.fail(
        f"actionlint not found (not in $ACTIONLINT, {cached}, or PATH); {INSTALL_HINT}"
    )


def _run_actionlint(*files: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_actionlint(), "-no-color", *map(str, files)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _workflow_files() -> list[Path]:
    return sorted(WORKFLOWS_DIR.glob("*.yml"))


def _load(path: Path) -> dict:
    with path.open() as f:
        return yaml.safe_load(f)


def _triggers(workflow: dict) -> dict:
    # PyYAML follows YAML 1.1, where a bare `on` key is the boolean True.
    on = workflow.get("on", workflow.get(True))
    assert isinstance(on, dict), f"`on:` should be a mapping, got {on!r}"
    return on


def _pulumi_steps(workflow: dict) -> list[tuple[str, dict, dict]]:
    """(job id, job, step) for every pulumi/actions step of the workflow."""
    return [
        (job_id, job, step)
        for job_id, job in workflow["jobs"].items()
        for step in job.get("steps", [])
        if str(step.get("uses", "")).startswith("pulumi/actions@")
    ]


# --- actionlint -------------------------------------------------------------


def test_workflows_exist():
    names = {p.name for p in _workflow_files()}
    assert {"preview.yml", "deploy-dev.yml"} <= names, names


def test_actionlint_finds_nothing_in_workflows():
    files = _workflow_files()
    assert files, f"no workflows in {WORKFLOWS_DIR}"
    result = _run_actionlint(*files, cwd=REPO)
    findings = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, f"actionlint exited {result.returncode}:\n{findings}"
    assert findings == "", f"actionlint reported:\n{findings}"


def test_actionlint_catches_a_broken_workflow(tmp_path):
    # Proves the lint test can fail: the same binary, run the same way, on a
    # workflow with two mistakes actionlint is documented to catch.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    steps:\n"  # no runs-on
        "      - run: echo ${{ matrix.stack }}\n"  # no matrix in this job
    )
    result = _run_actionlint(broken, cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0, f"actionlint passed a broken workflow:\n{out}"
    assert "broken.yml" in out, out
    assert '"runs-on" section is missing' in out, out
    assert 'property "stack" is not defined' in out, out


# --- what the workflows do --------------------------------------------------


def test_preview_runs_on_pull_requests_to_main():
    wf = _load(PREVIEW)
    on = _triggers(wf)
    assert set(on) == {"pull_request"}, on
    assert on["pull_request"]["branches"] == ["main"]
    assert wf["permissions"] == {"contents": "read", "pull-requests": "write"}
    concurrency = wf["concurrency"]
    assert "github.event.pull_request.number" in concurrency["group"]


def test_preview_runs_preview_for_dev_and_prod_with_pr_comment():
    wf = _load(PREVIEW)
    steps = _pulumi_steps(wf)
    assert len(steps) == 1, steps
    _, job, step = steps[0]
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert step["uses"] == PULUMI_ACTION
    with_ = step["with"]
    assert with_["command"] == "preview"
    assert with_["stack-name"] == "${{ matrix.stack }}"
    assert with_["comment-on-pr"] is True
    assert with_["github-token"] == "${{ secrets.GITHUB_TOKEN }}"
    assert with_["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    env = {**wf.get("env", {}), **job.get("env", {}), **step.get("env", {})}
    assert env["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    # A PR must never reach a Docker host.
    assert "DOCKER_HOST" not in env


def test_preview_installs_requirements_with_python_311():
    wf = _load(PREVIEW)
    (_, job, _), = _pulumi_steps(wf)
    steps = job["steps"]
    setup = [s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python@")]
    assert setup and str(setup[0]["with"]["python-version"]) == "3.11"
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "python -m venv venv" in runs
    assert "-r requirements.txt" in runs
    assert [s.get("uses", "") for s in steps][0].startswith("actions/checkout@")


def test_deploy_dev_runs_up_for_dev_only_on_push_to_main():
    wf = _load(DEPLOY_DEV)
    on = _triggers(wf)
    assert set(on) <= {"push", "workflow_dispatch"}, on
    assert on["push"] == {"branches": ["main"]}, on["push"]
    steps = _pulumi_steps(wf)
    assert len(steps) == 1, steps
    _, job, step = steps[0]
    assert step["uses"] == PULUMI_ACTION
    assert step["with"]["command"] == "up"
    assert step["with"]["stack-name"] == "dev"
    assert step["with"]["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert "strategy" not in job
    assert job["environment"] == "dev"
    assert job["if"] == "github.ref == 'refs/heads/main'"
    env = {**wf.get("env", {}), **job.get("env", {}), **step.get("env", {})}
    assert env["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    assert env["DOCKER_HOST"] == "${{ secrets.DEV_DOCKER_HOST }}"


def test_deploy_dev_never_cancels_a_running_deploy():
    wf = _load(DEPLOY_DEV)
    assert wf["concurrency"]["cancel-in-progress"] is False
    assert "${{" not in wf["concurrency"]["group"], "one group for all dev deploys"
    assert wf["permissions"] == {"contents": "read"}


def test_only_deploy_dev_runs_pulumi_up():
    ups = [
        (path.name, step["with"].get("stack-name"))
        for path in _workflow_files()
        for _, _, step in _pulumi_steps(_load(path))
        if step.get("with", {}).get("command") in {"up", "destroy", "refresh"}
    ]
    assert ups == [("deploy-dev.yml", "dev")], ups
