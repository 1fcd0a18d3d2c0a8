"""Run the real Pulumi program in-process under Pulumi's mocks and record what it asks for.

The fast tests: ``__main__.py`` runs under ``pulumi.runtime.set_mocks`` with a
monitor that keeps every resource registration request: type, name, inputs,
parent, dependencies and options. ``Mocks`` decides what each resource
"returns". (The end-to-end tests run the real engine instead: tests/engine.py.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import runpy
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_in_stack

from support import CONTAINER, RANDOM_ID, RANDOM_PASSWORD, without_digest

REPO = Path(__file__).resolve().parent.parent
PROJECT = "prefect-ha"
SECRET_SIG = rpc._special_sig_key  # "4dabf18193072939515e22adb298388d"
SECRET_VALUE = rpc._special_secret_sig


@dataclass
class Registration:
    """One resource registration request, in the order the program made it."""

    seq: int
    type: str
    name: str
    urn: str
    parent: str
    inputs: dict[str, Any]
    raw_inputs: dict[str, Any]  # as serialized, secrets still wrapped
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    delete_before_replace: bool
    replace_on_changes: list[str]
    retain_on_delete: bool
    protect: bool
    custom: bool

    def input_is_secret(self, key: str) -> bool:
        value = self.raw_inputs.get(key)
        return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE

    def secret_envs(self) -> set[str]:
        """Names of the env entries sent as secrets (the whole list counts for each entry)."""
        raw = self.raw_inputs.get("envs")
        entries = _unwrap(raw) or []
        if self.input_is_secret("envs"):
            return {e.split("=", 1)[0] for e in entries}
        return {
            e.split("=", 1)[0] for e, r in zip(entries, raw)
            if isinstance(r, dict) and r.get(SECRET_SIG) == SECRET_VALUE
        }

    def all_dependencies(self) -> set[str]:
        deps = set(self.dependencies)
        for urns in self.property_dependencies.values():
            deps.update(urns)
        return deps


@dataclass
class Run:
    registrations: list[Registration]
    outputs: dict[str, Any]  # stack outputs, secrets unwrapped
    raw_outputs: dict[str, Any]  # stack outputs as serialized, secrets wrapped
    error: BaseException | None = None

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def named(self, name: str) -> Registration:
        found = [r for r in self.registrations if r.name == name]
        assert len(found) == 1, f"expected one resource named {name!r}, got {[r.name for r in found]}"
        return found[0]

    def containers(self) -> dict[str, Registration]:
        """Docker containers keyed by their container name."""
        return {r.inputs["name"]: r for r in self.of_type(CONTAINER)}

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.registrations}

    def output_is_secret(self, key: str) -> bool:
        value = self.raw_outputs.get(key)
        return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


class StackMocks(pulumi.runtime.Mocks):
    """Plain mocks: containers 'exit' with the code given per container name.

    In a preview no container has run, so none reports an exit code: the SDK
    resolves the missing output as unknown, as it does against the engine."""

    def __init__(self, exit_codes: dict[str, int] | None = None, password: str = "p@ss:/?#%& wörd+=!$*"):
        self.exit_codes = exit_codes or {}
        self.password = password

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        if args.typ == RANDOM_PASSWORD:
            state["result"] = self.password
            state["bcryptHash"] = "$2a$10$" + "x" * 53  # shape only; the Docker double hashes for real
        if args.typ.startswith("tls:index/"):
            from tls_mocks import tls_state

            state = tls_state(args.typ, _unwrap(dict(args.inputs))) or state
        if args.typ == RANDOM_ID:
            # a generation: new whenever the keepers change (the engine keeps it in state);
            # here a function of the keepers, so equal inputs give equal names across runs
            state["hex"] = hashlib.sha256(json.dumps(_unwrap(dict(args.inputs)), sort_keys=True).encode()).hexdigest()[
                : 2 * int(args.inputs.get("byteLength", 4))]
        if args.typ == CONTAINER and not pulumi.runtime.is_dry_run():
            # keyed by the name without its rolling digest (prefect-ha-dev-migrate)
            state["exitCode"] = self.exit_codes.get(without_digest(args.inputs.get("name", "")), 0)
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.stack_outputs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        raw = json_format.MessageToDict(request.object)
        with self._lock:
            self.registrations.append(
                Registration(
                    seq=len(self.registrations),
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    inputs=_unwrap(raw),
                    raw_inputs=raw,
                    dependencies=list(request.dependencies),
                    property_dependencies={
                        key: list(deps.urns) for key, deps in request.propertyDependencies.items()
                    },
                    delete_before_replace=request.deleteBeforeReplace,
                    replace_on_changes=list(request.replaceOnChanges),
                    retain_on_delete=request.retainOnDelete,
                    protect=request.protect,
                    custom=request.custom,
                )
            )
        return response

    def RegisterResourceOutputs(self, request):
        if "::pulumi:pulumi:Stack::" in request.urn:
            self.stack_outputs = json_format.MessageToDict(request.outputs)
        return super().RegisterResourceOutputs(request)


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            return _unwrap(value.get("value"))
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def declared_defaults() -> dict[str, Any]:
    """Pulumi.yaml's declared defaults, grouped the way the engine passes them."""
    declared = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    values: dict[str, Any] = {}
    for key, spec in declared.items():
        group, dot, leaf = key.partition(".")
        if dot:
            values.setdefault(group, {})[leaf] = spec.get("default")
        else:
            values[key] = spec.get("default")
    return values


def stack_config(stack: str, overrides: dict[str, Any] | None = None) -> dict[str, str]:
    """The stack's config as the engine hands it to the program: Pulumi.yaml's
    defaults merged with the stack file, each group one JSON object, top-level
    keys as text. ``overrides`` are paths (``api.replicas``), as set with
    ``pulumi config set --path``; a key written ``prefect-ha:api.replicas``
    stays literal, as a key set without ``--path`` does."""
    path = REPO / f"Pulumi.{stack}.yaml"
    values = declared_defaults()
    literal: dict[str, Any] = {}
    stack_file = dict((yaml.safe_load(path.read_text()) or {}).get("config") or {}) if path.exists() else {}
    for key, value in stack_file.items():
        name = key.split(":", 1)[1]
        if isinstance(value, dict) and isinstance(values.get(name), dict):
            values[name] = {**values[name], **value}
        elif "." in name:
            literal[key] = value
        else:
            values[name] = value
    for key, value in (overrides or {}).items():
        if key.startswith(f"{PROJECT}:"):
            literal[key] = value
            continue
        group, dot, leaf = key.partition(".")
        if dot:
            values[group] = {**values.get(group, {}), leaf: value}
        else:
            values[key] = value
    flat = {}
    for key, value in [*((f"{PROJECT}:{k}", v) for k, v in values.items()), *literal.items()]:
        if isinstance(value, bool):
            flat[key] = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            flat[key] = json.dumps(value)
        else:
            flat[key] = str(value)
    return flat


def run_program(
    stack: str = "dev",
    overrides: dict[str, Any] | None = None,
    mocks: pulumi.runtime.Mocks | None = None,
    preview: bool = False,
    program: Callable[[], Any] | None = None,
) -> Run:
    """Run ``__main__.py`` for ``stack`` under mocks; never raises for program errors."""
    mocks = mocks or StackMocks()
    monitor = RecordingMonitor(mocks)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    error: BaseException | None = None
    settings.SETTINGS.outputs.clear()
    try:
        pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
        # set_mocks installs a root stack of its own; run_in_stack makes the real one.
        settings.set_root_resource(None)  # type: ignore[arg-type]
        pulumi.runtime.set_all_config(stack_config(stack, overrides), [])
        main = program or (lambda: runpy.run_path(str(REPO / "__main__.py"), run_name="__main__"))
        loop.run_until_complete(run_in_stack(main))
    except BaseException as err:  # noqa: BLE001 the tests inspect it
        error = err
    finally:
        # A failed run leaves tasks behind; cancel them so the next run starts clean.
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        settings.SETTINGS.outputs.clear()
        settings._get_rpc_manager().clear()
        loop.close()
        asyncio.set_event_loop(None)
    return Run(
        registrations=sorted(monitor.registrations, key=lambda r: r.seq),
        outputs=_unwrap(monitor.stack_outputs),
        raw_outputs=monitor.stack_outputs,
        error=error,
    )
