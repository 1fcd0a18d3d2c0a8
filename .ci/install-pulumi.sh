#!/usr/bin/env bash
# Builds the Pulumi CLI at a pinned version from the Go module proxy and prints
# the binary's path on stdout (progress goes to stderr). Idempotent: when the
# pinned binary is already cached it only prints the path.
#
# Why: no Pulumi installer or release download works on this project's
# machines, but the Go module proxy serves github.com/pulumi/pulumi/pkg/v3 and
# sdk/v3. pkg's go.mod replaces sdk with ../sdk, so both module trees are
# copied side by side as pkg/ and sdk/ and the CLI is built in pkg/.
# Cold (empty Go caches) about 10 min on 2 cores; warm about 4 min; cached 0 s.
#
# The binary is kept machine-wide (PULUMI_CLI_CACHE, default
# /var/cache/prefect-ha), not in the clone, so a fresh CI clone on a machine
# that built it once does not build it again.
set -euo pipefail

PULUMI_VERSION="${PULUMI_VERSION:-3.276.0}"
cache_dir="${PULUMI_CLI_CACHE:-/var/cache/prefect-ha}"
exe="$cache_dir/pulumi-v$PULUMI_VERSION/bin/pulumi"

if [[ -x "$exe" ]] && "$exe" version 2>/dev/null | grep -qx "v$PULUMI_VERSION"; then
    echo "$exe"
    exit 0
fi
command -v go >/dev/null 2>&1 || {
    echo "install-pulumi: 'go' is not on PATH; install Go and rerun." >&2; exit 1; }

mkdir -p "$cache_dir"
work="$(mktemp -d "$cache_dir/.pulumi-build.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
start=$SECONDS
echo "install-pulumi: downloading pulumi pkg/sdk v$PULUMI_VERSION with $(go version)" >&2
for mod in pkg sdk; do
    dir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json \
        "github.com/pulumi/pulumi/$mod/v3@v$PULUMI_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    cp -r "$dir" "$work/$mod"
    chmod -R u+w "$work/$mod"
done
echo "install-pulumi: building (this takes minutes on a cold Go cache)" >&2
(cd "$work/pkg" && CGO_ENABLED=0 go build -o "$work/pulumi" \
    -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
    ./cmd/pulumi) >&2
got="$("$work/pulumi" version 2>/dev/null || true)"
if [[ "$got" != "v$PULUMI_VERSION" ]]; then
    echo "install-pulumi: built binary reports '$got', expected v$PULUMI_VERSION" >&2
    exit 1
fi
mkdir -p "$(dirname "$exe")"
mv -f "$work/pulumi" "$exe"
echo "install-pulumi: built in $((SECONDS - start)) s" >&2
echo "$exe"
