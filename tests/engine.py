"""The real Pulumi engine under the suite: CLI, provider plugins, stacks.

The Pulumi CLI is built from the Go module proxy (.ci/install-pulumi.sh,
cached machine-wide). There is no Python language host here, so
``__main__.py`` runs as an Automation API inline program in this process; the
CLI does everything else for real: config schema and type checks, secrets
encryption, diffs and step generation, refresh, destroy.

The docker, random and tls plugins are the test doubles in
testbed/providers/, installed with ``pulumi plugin install --file`` at the
versions the SDKs ask for, into a PULUMI_HOME of the test session's own.
"""

from __future__ import annotations

import importlib.util
import tempfile
import io
import json
import os
import runpy
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml
from pulumi import automation as auto

REPO = Path(__file__).resolve().parent.parent
PROJECT = "prefect-ha"
PROVIDERS = REPO / "testbed" / "providers"
# plugin name -> (SDK package whose pulumi-plugin.json names the version, the double)
PLUGINS = {
    "docker": ("pulumi_docker", "docker_provider.py"),
    "random": ("pulumi_random", "random_provider.py"),
    "tls": ("pulumi_tls", "tls_provider.py"),
}
# Not a secret: it only encrypts the throwaway test stacks' state.
PASSPHRASE = "prefect-ha-test-state"


class EngineSetupFailed(RuntimeError):
    pass


def pulumi_cli() -> Path:
    """The CLI's install root (holding bin/pulumi), built on first use."""
    done = subprocess.run(["bash", str(REPO / ".ci" / "install-pulumi.sh")], capture_output=True, text=True)
    if done.returncode:
        raise EngineSetupFailed(f".ci/install-pulumi.sh failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1]).parent.parent


def sdk_plugin_version(package: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EngineSetupFailed(f"the {package} SDK is not installed")
    meta = Path(next(iter(spec.submodule_search_locations))) / "pulumi-plugin.json"
    return json.loads(meta.read_text())["version"]


def _plugin_tarball(name: str, script: str, version: str) -> bytes:
    wrapper = (
        "#!/bin/sh\n"
        f"# prefect-ha test double of the {name} provider (testbed/providers/{script})\n"
        f"PREFECT_HA_PLUGIN_VERSION={version} exec {sys.executable} {PROVIDERS / script} \"$@\"\n"
    ).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"pulumi-resource-{name}")
        info.size, info.mode = len(wrapper), 0o755
        tar.addfile(info, io.BytesIO(wrapper))
    return buffer.getvalue()


def install_plugins(cli: Path, pulumi_home: Path) -> dict[str, str]:
    """Install the three doubles as the plugins the SDKs ask for; returns name -> version."""
    versions = {}
    env = {**os.environ, "PULUMI_HOME": str(pulumi_home), "PULUMI_SKIP_UPDATE_CHECK": "true"}
    for name, (package, script) in PLUGINS.items():
        version = sdk_plugin_version(package)
        tarball = pulumi_home / f"pulumi-resource-{name}-v{version}.tar.gz"
        tarball.write_bytes(_plugin_tarball(name, script, version))
        done = subprocess.run(
            [str(cli / "bin" / "pulumi"), "plugin", "install", "resource", name, version,
             "--file", str(tarball), "--reinstall"],
            capture_output=True, text=True, env=env,
        )
        if done.returncode:
            raise EngineSetupFailed(f"pulumi plugin install {name} {version} failed:\n{done.stderr}")
        versions[name] = version
    return versions


SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"


def plain_state(value: Any) -> Any:
    """A checkpoint value (exported with --show-secrets) with secrets as plain values."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            return plain_state(json.loads(value["plaintext"])) if "plaintext" in value else None
        return {k: plain_state(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_state(v) for v in value]
    return value


_SHARED: "Engine | None" = None


def shared_engine() -> "Engine":
    """One CLI and plugin install for the whole test process."""
    global _SHARED
    if _SHARED is None:
        _SHARED = Engine.create(Path(tempfile.mkdtemp(prefix="prefect-ha-engine-")))
    return _SHARED


def program() -> None:
    runpy.run_path(str(REPO / "__main__.py"), run_name="__main__")


@dataclass
class Engine:
    """One CLI and plugin set for the whole test session."""

    cli: Path
    home: Path
    plugins: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path) -> "Engine":
        cli = pulumi_cli()
        home = root / "pulumi-home"
        home.mkdir(parents=True, exist_ok=True)
        engine = cls(cli, home)
        engine.plugins = install_plugins(cli, home)
        return engine

    def env(self, backend: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {
            "PULUMI_BACKEND_URL": f"file://{backend}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            # The doubles, never a pulumi-resource-* that happens to be on PATH.
            "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
            **(extra or {}),
        }

    def stack(self, stack: str, work_dir: Path, *, overrides: Mapping[str, Any] | None = None,
              secrets: Mapping[str, str] | None = None, literal: Mapping[str, str] | None = None,
              env: Mapping[str, str] | None = None, stack_file: Mapping[str, Any] | None = None) -> "EngineStack":
        """A new stack named ``stack`` from the project's Pulumi.yaml and its stack file.

        ``overrides`` are set with ``pulumi config set --path``, ``secrets`` with
        ``--secret --path``, ``literal`` without ``--path`` (a key as a user
        might mistype it); ``stack_file`` replaces Pulumi.<stack>.yaml's config.
        """
        # Each stack has a backend of its own: two tests may both deploy "dev".
        (work_dir / "state").mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "Pulumi.yaml", work_dir / "Pulumi.yaml")
        shipped = REPO / f"Pulumi.{stack}.yaml"
        if stack_file is not None:
            (work_dir / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": dict(stack_file)}))
        elif shipped.exists():
            shutil.copy(shipped, work_dir / f"Pulumi.{stack}.yaml")
        options = auto.LocalWorkspaceOptions(
            work_dir=str(work_dir),
            pulumi_home=str(self.home),
            pulumi_command=auto.PulumiCommand(root=str(self.cli), skip_version_check=True),
            env_vars=self.env(work_dir / "state", env),
        )
        created = auto.create_or_select_stack(stack_name=stack, project_name=PROJECT, program=program,
                                              work_dir=str(work_dir), opts=options)
        config = {}
        for key, value in (overrides or {}).items():
            if isinstance(value, (list, tuple)):  # an array setting: one path per element
                config.update({f"{key}[{i}]": auto.ConfigValue(_text(v)) for i, v in enumerate(value)})
            else:
                config[key] = auto.ConfigValue(_text(value))
        config.update({k: auto.ConfigValue(v, secret=True) for k, v in (secrets or {}).items()})
        if config:
            created.set_all_config(config, path=True)
        if literal:
            created.set_all_config({k: auto.ConfigValue(v) for k, v in literal.items()}, path=False)
        return EngineStack(created, work_dir)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class EngineStack:
    stack: auto.Stack
    work_dir: Path

    @property
    def name(self) -> str:
        return self.stack.name

    def up(self) -> auto.UpResult:
        return self.stack.up(color="never")

    def preview(self, **kwargs) -> auto.PreviewResult:
        return self.stack.preview(color="never", **kwargs)

    def refresh(self) -> auto.RefreshResult:
        return self.stack.refresh(color="never")

    def destroy(self) -> auto.DestroyResult:
        return self.stack.destroy(color="never")

    def outputs(self) -> dict[str, Any]:
        return {k: v.value for k, v in self.stack.outputs().items()}

    def state(self) -> dict[str, Any]:
        """The stack's checkpoint as the backend holds it (secrets still ciphertext)."""
        return self.stack.export_stack().deployment

    def stack_file(self) -> dict[str, Any]:
        return yaml.safe_load((self.work_dir / f"Pulumi.{self.name}.yaml").read_text()) or {}

    def remove(self) -> None:
        self.stack.workspace.remove_stack(self.name, force=True)
