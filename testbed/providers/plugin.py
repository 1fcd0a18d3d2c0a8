"""Shared plumbing of the test-double provider plugins (docker, random, tls).

Each plugin is a real Pulumi resource provider: the engine starts it as a
process, talks gRPC to it (``pulumi.provider.experimental`` serves the
protocol) and calls Check, Diff, Create, Read, Update and Delete. The
resources themselves work on plain Python values; this module converts
between those and the SDK's PropertyValue, keeping secrets secret.

A resource type the plugin does not know, or an input it does not handle,
fails the call with a message naming it: nothing is silently ignored.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Mapping

from pulumi.provider.experimental import provider as p
from pulumi.provider.experimental.property_value import Computed, PropertyValue
from pulumi.provider.experimental.server import main as serve

UNKNOWN = object()
"""A value not known yet (in a preview): the engine's 'computed'."""


class Unsupported(Exception):
    """An input or resource type this test double does not model."""


# The engine sends a value not known yet as this string (the SDK's unmarshal keeps it a string).
UNKNOWN_SENTINEL = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def plain(value: PropertyValue) -> Any:
    v = value.value
    if isinstance(v, Computed) or v == UNKNOWN_SENTINEL:
        return UNKNOWN
    if isinstance(v, tuple):
        return [plain(x) for x in v]
    if isinstance(v, Mapping):
        return {k: plain(x) for k, x in v.items()}
    return v


def has_secret(value: PropertyValue) -> bool:
    return value.contains_secret()


def to_plain(props: Mapping[str, PropertyValue]) -> tuple[dict[str, Any], set[str]]:
    """(values, names of the top-level keys holding a secret)."""
    return {k: plain(v) for k, v in props.items()}, {k for k, v in props.items() if has_secret(v)}


def to_value(value: Any, secret: bool = False) -> PropertyValue:
    if value is UNKNOWN:
        # The SDK marshals a nested Computed not at all: send the engine's sentinel.
        return PropertyValue(UNKNOWN_SENTINEL)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        out = PropertyValue(value)
    elif isinstance(value, (int, float)):
        out = PropertyValue(float(value))
    elif isinstance(value, (list, tuple)):
        out = PropertyValue([to_value(x) for x in value])
    elif isinstance(value, Mapping):
        out = PropertyValue({k: to_value(x) for k, x in value.items()})
    else:
        raise TypeError(f"cannot send {type(value).__name__} to the engine")
    return out.with_secret(True) if secret else out


def to_props(values: Mapping[str, Any], secrets: set[str] = frozenset()) -> dict[str, PropertyValue]:
    return {k: to_value(v, k in secrets) for k, v in values.items()}


def contains_unknown(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if isinstance(value, list):
        return any(contains_unknown(x) for x in value)
    if isinstance(value, dict):
        return any(contains_unknown(x) for x in value.values())
    return False


class Resource:
    """One resource type's behaviour on plain values.

    ``inputs``: the input names it handles; ``updatable``: those changed in
    place (every other input change replaces); ``secret_outputs``: outputs the
    real provider marks secret.
    """

    token: str = ""
    inputs: frozenset[str] = frozenset()
    updatable: frozenset[str] = frozenset()
    secret_outputs: frozenset[str] = frozenset()
    defaults: Mapping[str, Any] = {}
    # Optional+Computed in the provider's schema: left out of the program's
    # inputs, the value in the state stands (no diff).
    computed: frozenset[str] = frozenset()
    # Sets in the provider's schema: order does not count.
    sets: frozenset[str] = frozenset()

    def check(self, news: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(news) - self.inputs)
        if unknown:
            raise Unsupported(f"{self.token}: the test double does not handle the inputs {unknown}")
        return {**self.defaults, **news}

    def diff(self, olds: dict[str, Any], news: dict[str, Any]) -> tuple[list[str], list[str]]:
        """(changed keys, keys whose change replaces)."""
        changed = [
            k for k in sorted(self.inputs)
            if not (k in self.computed and news.get(k) is None)
            and not self.same(k, olds.get(k), news.get(k))
        ]
        return changed, [k for k in changed if k not in self.updatable]

    def same(self, key: str, old: Any, new: Any) -> bool:
        if key in self.sets and isinstance(old, list) and isinstance(new, list):
            return sorted(map(canonical, old)) == sorted(map(canonical, new))
        return _same(old, new)

    def create(self, news: dict[str, Any], preview: bool, timeout: float) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def read(self, id_: str, state: dict[str, Any]) -> dict[str, Any] | None:
        return state

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any], preview: bool, timeout: float) -> dict[str, Any]:
        raise Unsupported(f"{self.token}: update of {sorted(self.diff(olds, news)[0])} is not modelled")

    def delete(self, id_: str, state: dict[str, Any], timeout: float) -> None:
        pass


def _zero(value: Any) -> bool:
    # The Terraform SDK stores an unset attribute as its zero value.
    return value is None or value is False or value == 0 or value in ([], {}, "")


def canonical(value: Any) -> str:
    """A set element, its zero-valued fields dropped, as comparable text."""
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if not _zero(v)}
    return repr(sorted(value.items())) if isinstance(value, dict) else repr(value)


def _same(a: Any, b: Any) -> bool:
    if a is UNKNOWN or b is UNKNOWN:
        return False  # not known yet: the engine shows it as a change
    if _zero(a) and _zero(b):
        return True
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return all(_same(a.get(k), b.get(k)) for k in set(a) | set(b))
    return a == b


def _log(message: str) -> None:
    log = os.environ.get("PREFECT_HA_PROVIDER_LOG")
    if log:
        with open(log, "a") as f:
            f.write(message + "\n")


class Plugin(p.Provider):
    def __init__(self, name: str, resources: list[Resource]):
        self.name = name
        self.resources = {r.token: r for r in resources}

    def _resource(self, token: str) -> Resource:
        # The request's type is the URN's: parent types first, joined by "$".
        token = token.rsplit("$", 1)[-1]
        try:
            return self.resources[token]
        except KeyError:
            raise Unsupported(f"the {self.name} test double does not model {token}") from None

    async def configure(self, request):
        # No Create calls in previews: the engine shows outputs as unknown,
        # as it does for a provider that cannot preview them.
        return p.ConfigureResponse(accept_secrets=True, supports_preview=False, accept_outputs=False,
                                   accept_resources=False)

    async def check(self, request):
        res = self._resource(request.type)
        news, secrets = to_plain(request.new_inputs)
        try:
            checked = res.check(news)
        except Unsupported:
            raise
        except ValueError as err:
            return p.CheckResponse(inputs=request.new_inputs, failures=[p.CheckFailure("", str(err))])
        return p.CheckResponse(inputs=to_props(checked, secrets))

    async def diff(self, request):
        res = self._resource(request.type)
        olds, old_secrets = to_plain(request.old_state)
        news, new_secrets = to_plain(request.new_inputs)
        changed, replaces = res.diff(olds, news)
        detailed = {
            k: p.PropertyDiff(p.PropertyDiffKind.UPDATE_REPLACE if k in replaces else p.PropertyDiffKind.UPDATE, True)
            for k in changed
        }
        _log(f"diff {request.urn}: changed={changed} replaces={replaces}")
        for k in changed:  # values of secret inputs stay out of the trace
            shown = "(secret)" if k in old_secrets | new_secrets else f"{olds.get(k)!r} -> {news.get(k)!r}"
            _log(f"  {k}: {shown}")
        return p.DiffResponse(changes=bool(changed), replaces=replaces, diffs=changed, detailed_diff=detailed)

    async def create(self, request):
        res = self._resource(request.type)
        news, secrets = to_plain(request.properties)
        _log(f"create {request.urn}")
        id_, state = res.create(news, request.preview, request.timeout)
        return p.CreateResponse(resource_id=id_, properties=to_props(state, secrets | res.secret_outputs))

    async def read(self, request):
        res = self._resource(request.type)
        state, secrets = to_plain(request.properties)
        inputs, input_secrets = to_plain(request.inputs)
        found = res.read(request.resource_id, state)
        if found is None:  # gone: the engine drops it from the state
            return p.ReadResponse(resource_id="", properties={}, inputs={})
        # What changed outside Pulumi shows as a change of inputs too, as the
        # bridged provider reports it.
        new_inputs = {k: found.get(k, v) for k, v in inputs.items()}
        return p.ReadResponse(
            resource_id=request.resource_id,
            properties=to_props(found, secrets | res.secret_outputs),
            inputs=to_props(new_inputs, input_secrets),
        )

    async def update(self, request):
        res = self._resource(request.type)
        olds, _ = to_plain(request.olds)
        news, secrets = to_plain(request.news)
        _log(f"update {request.urn}")
        state = res.update(request.resource_id, olds, news, request.preview, request.timeout)
        return p.UpdateResponse(properties=to_props(state, secrets | res.secret_outputs))

    async def delete(self, request):
        res = self._resource(request.type)
        state, _ = to_plain(request.properties)
        _log(f"delete {request.urn}")
        res.delete(request.resource_id, state, request.timeout)


def run(name: str, version: str, resources: list[Resource]) -> None:
    try:
        serve(sys.argv[1:], version, Plugin(name, resources))
    except Exception:  # noqa: BLE001 the engine shows stderr
        traceback.print_exc()
        raise
