"""Every rendered nginx.conf is one nginx accepts and gixy finds nothing in.

- Every rendered configuration over the sizing knobs, and for every combination
  of the edge controls (TLS, auth, allowlist, rate limit), passes Debian's
  `nginx -t`, with the upstream aliases resolving as on the stack network.
- gixy finds nothing in any combination, and flags the canaries it should.
"""

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from components.config import load_paths
from nginx_support import ALLOWLIST, CASES, nginx_test, render_case, render_conf, write_runtime_files

GIXY = Path(sys.executable).parent / "gixy"


# --- nginx -t over the existing sizing knobs ------------------------------------------------------

COMBOS = list(itertools.product([1, 2, 3, 5], ["1m", "10m", "50m"], [80, 4200]))


@pytest.mark.parametrize("replicas, body, port", COMBOS)
def test_every_rendered_config_passes_nginx_t(replicas, body, port, tmp_path):
    config = load_paths({"api.replicas": str(replicas), "proxy.clientMaxBodySize": body, "proxy.port": str(port)})
    conf = render_conf(config, "test", runtime_dir=str(tmp_path / "run"))
    result = nginx_test(conf, tmp_path, tmp_path / "run", replicas)  # the container writes run/ at start
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_t_rejects_a_broken_config(tmp_path):
    """The check above can fail: without the watcher's upstream files nginx refuses to start."""
    (tmp_path / "run").mkdir()
    conf = render_conf(load_paths({}), "test", runtime_dir=str(tmp_path / "run"))
    result = nginx_test(conf, tmp_path)
    assert result.returncode != 0
    assert "upstream-api.conf" in result.stderr and "No such file" in result.stderr


# --- every combination of the edge controls (nginx_support.CASES) --------------------------------


def test_the_matrix_covers_every_control():
    assert len(CASES) == 2 * 3 * 2 * 2 * 2
    configs = [load_paths(raw) for raw in CASES.values()]
    assert {c.tls.enabled for c in configs} == {False, True}
    assert {c.auth.mode for c in configs} == {"none", "prefect", "nginx"}
    assert {c.proxy.allow_cidrs for c in configs} == {(), ALLOWLIST}
    assert {c.proxy.rate_limit for c in configs} == {0, 10}


@pytest.mark.parametrize("case", CASES)
def test_every_control_combination_passes_nginx_t(case, tmp_path, pki):
    runtime = tmp_path / "run"
    config, conf = render_case(case, str(runtime))
    write_runtime_files(tmp_path, pki)  # beside nginx.conf, as in a generation of the edge config
    result = nginx_test(conf, tmp_path, runtime, config.api.replicas)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "warn" not in result.stderr, result.stderr


def gixy(paths: list[Path]) -> dict[str, list[dict]]:
    """gixy-ng's findings per file (JSON report)."""
    result = subprocess.run([str(GIXY), "-f", "json", *map(str, paths)], capture_output=True, text=True, timeout=300)
    if result.returncode not in (0, 1) or not result.stdout.strip().startswith("["):
        pytest.fail(f"gixy failed ({result.returncode}): {result.stderr[-2000:]}")
    found: dict[str, list[dict]] = {str(p): [] for p in paths}
    for issue in json.loads(result.stdout):
        found.setdefault(issue["path"], []).append(issue)
    return found


@pytest.fixture(scope="module")
def gixy_report(tmp_path_factory):
    """One gixy run over every rendered combination, plus two configs it must flag."""
    directory = tmp_path_factory.mktemp("gixy")
    paths = {}
    for case in CASES:
        paths[case] = directory / f"{case}.conf"
        paths[case].write_text(render_case(case)[1])
    _, conf = render_case("off-none-allowlist-unlimited-1")
    # What this repository had before: `return` in a location answers before
    # allow/deny are consulted, and the client's own Host header went upstream.
    paths["canary-return"] = directory / "canary-return.conf"
    paths["canary-return"].write_text(conf.replace("stub_status;", 'return 200 "ok\\n";'))
    paths["canary-host"] = directory / "canary-host.conf"
    paths["canary-host"].write_text(re.sub(r"proxy_set_header Host \S+;", "proxy_set_header Host $http_host;", conf))
    report = gixy(list(paths.values()))
    return {case: report[str(path)] for case, path in paths.items()}


def test_gixy_flags_what_it_should(gixy_report):
    """The gate below can fail: gixy runs, parses these files and reports."""
    assert [i["plugin"] for i in gixy_report["canary-return"]] == ["return_bypasses_allow_deny"]
    assert [i["plugin"] for i in gixy_report["canary-host"]] == ["host_spoofing"]


@pytest.mark.parametrize("case", CASES)
def test_gixy_finds_nothing_in_any_combination(case, gixy_report):
    assert gixy_report[case] == [], [(i["plugin"], i["reason"]) for i in gixy_report[case]]
