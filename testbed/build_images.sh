#!/usr/bin/env bash
# Builds the local stand-ins for the official images the program deploys (no image registry is
# reachable here), all tagged under prefect-ha-test/:
#
#   prefect-ha-test/base:bookworm   debootstrap --variant=minbase bookworm, imported with docker import
#   prefect-ha-test/prefect:<pin>   Debian python3 + venv with prefect/prefect-redis (wheels from the host);
#                                   /wheels also holds prefect-docker's wheels for EXTRA_PIP_PACKAGES
#   prefect-ha-test/prefect:<next pin>  prefect-next: the same image (images/prefect/'s Dockerfile,
#                                   entrypoint and extra-requirements.txt) with the pins of
#                                   images/prefect-next/, the version the upgrade tests move to
#   prefect-ha-test/prefect-worker:<pin>  the prefect image with prefect-docker installed (a Docker worker)
#   prefect-ha-test/flows:1         the prefect image with a test flow at /opt/prefect/flows.py (flow `hello`)
#   prefect-ha-test/postgres:15     Debian postgresql-15, official-image entrypoint contract
#   prefect-ha-test/redis:7         Debian redis-server 7.0
#   prefect-ha-test/nginx:1.22      Debian nginx 1.22 + curl
#
# Usage: testbed/build_images.sh [--force] [base|prefect|prefect-next|prefect-worker|flows|postgres|redis|nginx ...]
#   (no names: all of them; the base is built first whenever it is missing or stale, and the
#   prefect image before prefect-worker and flows, which are built FROM it).
#
# Every image carries the label prefect-ha-test.inputs=<sha256 of its build inputs>: its build
# context (Dockerfile, scripts, wheels), the id of the image it was built on (base, or prefect for
# prefect-worker and flows), and the recipe. An image whose label matches is not rebuilt, and a
# rebuilt parent rebuilds its children. --force rebuilds the named images without docker's layer
# cache (and, for base, runs debootstrap again instead of using the cached rootfs); a parent that
# was not named is only built when missing or stale.
#
# Environment:
#   PREFECT_HA_CACHE          download cache (default: <repo>/.ci/cache): rootfs tarball, wheels (one set
#                             per prefect image), logs
#   DEBIAN_MIRROR             Debian mirror for debootstrap and the images (default: the host's apt source)
#   DEBIAN_SECURITY_MIRROR    mirror for bookworm-security (default: the host's, if it has one)
#   PREFECT_HA_EXTRA_WHEELS   more requirement specifiers whose wheels are put into the prefect image's
#                             /wheels (not installed) for EXTRA_PIP_PACKAGES, on top of
#                             images/prefect/extra-requirements.txt (prefect-docker, always there);
#                             both prefect images (prefect, prefect-next) get them
#   VERBOSE=1                 stream docker build output instead of logging it to the cache
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
CACHE="${PREFECT_HA_CACHE:-$REPO/.ci/cache}"
IMAGES_DIR="$HERE/images"
PREFIX="prefect-ha-test"
LABEL="prefect-ha-test.inputs"
SUITE="bookworm"
BASE_IMAGE="$PREFIX/base:$SUITE"
# Bump when the way images are built changes in a way their build contexts do not show.
RECIPE_VERSION=1
# The legacy builder: Debian's docker.io has no buildx, and it needs no extra component.
export DOCKER_BUILDKIT=0

log() { printf '[build_images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
sha256() { sha256sum | cut -d' ' -f1; }

FORCE=0
WANTED=()
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    base|prefect|prefect-next|prefect-worker|flows|postgres|redis|nginx) WANTED+=("$arg") ;;
    *) die "unknown argument: $arg (see --help)" ;;
  esac
done
# Build order: every image after the one it is built FROM.
ALL_IMAGES=(base prefect prefect-next prefect-worker flows postgres redis nginx)
((${#WANTED[@]})) || WANTED=("${ALL_IMAGES[@]}")
wanted() { [[ " ${WANTED[*]} " == *" $1 "* ]]; }
parent_of() {  # $1: name; prints the name of the image its Dockerfile is FROM
  case "$1" in
    prefect-worker|flows) echo prefect ;;
    *) echo base ;;
  esac
}
# What to build, in order: the wanted images and the parents they need (the base always).
BUILD=()
for name in "${ALL_IMAGES[@]}"; do
  if wanted "$name" || [[ "$name" == base ]]; then BUILD+=("$name"); continue; fi
  for child in "${WANTED[@]}"; do
    if [[ "$(parent_of "$child")" == "$name" ]]; then BUILD+=("$name"); break; fi
  done
done
FORCE_BASE=0
if [[ $FORCE -eq 1 ]] && wanted base; then FORCE_BASE=1; fi

docker info >/dev/null 2>&1 || die "the Docker engine does not answer; run testbed/dockerd.sh first"
command -v debootstrap >/dev/null || die "debootstrap is missing; run testbed/dockerd.sh first"

mkdir -p "$CACHE/logs" "$CACHE/rootfs" "$CACHE/wheels" "$CACHE/contexts"
CACHE="$(cd "$CACHE" && pwd)"
# One build at a time per cache (parallel test sessions may call this script).
exec 9>"$CACHE/.build_images.lock"
flock 9

# ---------------------------------------------------------------------------------------------
# Debian mirrors: whatever apt on the host uses (one-line and deb822 sources), unless overridden.
host_debian_uri() {  # $1: suite, prints the first URI of an enabled "deb" source for it
  python3 - "$1" <<'PY'
import glob, sys
suite = sys.argv[1]
def one_line(path):
    for line in open(path, encoding="utf-8", errors="replace"):
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):          # [ options ]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2 and words[1] == suite:
            yield words[0]
def deb822(path):
    for stanza in open(path, encoding="utf-8", errors="replace").read().split("\n\n"):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" in fields.get("types", "").split() and suite in fields.get("suites", "").split():
            yield from fields.get("uris", "").split()[:1]
paths = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
for p in paths:
    try:
        for uri in one_line(p):
            print(uri); sys.exit(0)
    except OSError:
        pass
for p in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    try:
        for uri in deb822(p):
            print(uri); sys.exit(0)
    except OSError:
        pass
PY
}
MIRROR="${DEBIAN_MIRROR:-$(host_debian_uri "$SUITE")}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR-$(host_debian_uri "$SUITE-security")}"

image_label() {  # $1: image; prints its inputs label, empty if the image does not exist
  docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true
}
image_id() { docker image inspect -f '{{ .Id }}' "$1" 2>/dev/null || true; }

# Remove the image a rebuild replaced, if nothing else uses it (ignore failures: it may be in use).
drop_replaced() {  # $1: old id, $2: new id
  if [[ -n "$1" && "$1" != "$2" ]]; then
    docker rmi "$1" >/dev/null 2>&1 || true
  fi
}

BUILT=()
SKIPPED=()

# ---------------------------------------------------------------------------------------------
# base: debootstrap once (cached as a tarball), docker import.
configure_rootfs() {  # $1: root directory. Everything in here is part of the base's inputs.
  local root="${1:?}"
  # it deletes things under $root: never let it near the host's own tree
  [[ "$root" == "$CACHE"/rootfs/tmp.*/root && -d "$root/etc/apt" ]] || die "refusing to configure '$root'"
  {
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    if [[ -n "$SECURITY_MIRROR" ]]; then echo "deb $SECURITY_MIRROR $SUITE-security main"; fi
  } > "$root/etc/apt/sources.list"
  # like the debian:*-slim images: no recommends, no caches, no docs, no services started by dpkg
  cat > "$root/etc/apt/apt.conf.d/90prefect-ha-test" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Acquire::Retries "3";
Acquire::Check-Valid-Until "false";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
EOF
  cat > "$root/etc/dpkg/dpkg.cfg.d/90prefect-ha-test" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
EOF
  printf '#!/bin/sh\n# no services are started during image builds\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
  chmod 0755 "$root/usr/sbin/policy-rc.d"
  # what the dpkg excludes above keep out of later installs, out of debootstrap's packages too
  find "${root:?}/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  rm -rf "${root:?}"/usr/share/{man,info,locale,groff,lintian}/* "${root:?}"/var/cache/debconf/*-old
  rm -rf "${root:?}"/var/lib/apt/lists/* "${root:?}"/var/cache/apt/*.bin "${root:?}"/var/cache/apt/archives/*.deb \
         "${root:?}"/var/log/*.log "${root:?}"/var/log/apt/* "${root:?}"/tmp/* "${root:?}"/var/tmp/* "${root:?}"/dev/*
  : > "$root/etc/resolv.conf"
  : > "$root/etc/hostname"
}

base_inputs_hash() {
  {
    echo "recipe=$RECIPE_VERSION suite=$SUITE variant=minbase mirror=$MIRROR security=$SECURITY_MIRROR"
    declare -f configure_rootfs
  } | sha256
}

mounted_under() { awk -v p="$1" 'index($2, p) == 1 { found = 1 } END { exit !found }' /proc/mounts; }

build_base() {
  local hash tarball tmp current old_id
  hash="$(base_inputs_hash)"
  current="$(image_label "$BASE_IMAGE")"
  if [[ $FORCE_BASE -eq 0 && "$current" == "$hash" ]]; then
    log "$BASE_IMAGE is up to date"; SKIPPED+=("$BASE_IMAGE"); return
  fi
  tarball="$CACHE/rootfs/$SUITE-minbase-${hash:0:16}.tar"
  if [[ ! -s "$tarball" || $FORCE_BASE -eq 1 ]]; then
    tmp="$(mktemp -d "$CACHE/rootfs/tmp.XXXXXX")"
    log "debootstrap --variant=minbase $SUITE from $MIRROR (log: $CACHE/logs/debootstrap.log)"
    if ! debootstrap --variant=minbase "$SUITE" "$tmp/root" "$MIRROR" >"$CACHE/logs/debootstrap.log" 2>&1; then
      tail -n 30 "$CACHE/logs/debootstrap.log" >&2
      mounted_under "$tmp/" && die "debootstrap failed and left mounts under $tmp; unmount them, then remove it"
      rm -rf "$tmp"
      die "debootstrap failed (full log: $CACHE/logs/debootstrap.log)"
    fi
    # never rm -rf a tree that still has /proc or /sys mounted in it
    mounted_under "$tmp/" && die "something is still mounted under $tmp; unmount it, then remove it"
    configure_rootfs "$tmp/root"
    tar --numeric-owner -C "$tmp/root" -cf "$tmp/rootfs.tar" .
    rm -f "$CACHE"/rootfs/"$SUITE"-minbase-*.tar   # stale tarballs of older recipes
    mv "$tmp/rootfs.tar" "$tarball"
    rm -rf "$tmp"
  else
    log "using cached rootfs $tarball"
  fi
  old_id="$(image_id "$BASE_IMAGE")"
  docker import \
    --change "LABEL $LABEL=$hash" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["bash"]' \
    "$tarball" "$BASE_IMAGE" >/dev/null
  drop_replaced "$old_id" "$(image_id "$BASE_IMAGE")"
  log "built $BASE_IMAGE"; BUILT+=("$BASE_IMAGE")
}

# ---------------------------------------------------------------------------------------------
# wheels for the prefect images, downloaded on the host (pip in a container cannot verify TLS here).
# Their build contexts hold (see build_image):
#   requirements.txt        installed in the image; its prefect==X pin is the image's tag
#   extra-requirements.txt  downloaded with the above (so one resolve under the constraints), into
#                           /wheels, not installed
#   constraints.txt         the whole resolved set
# prefect-next is images/prefect/ with images/prefect-next/'s requirements.txt and constraints.txt.
prefect_pin() {  # $1: requirements file; prints its prefect==X version
  sed -n 's/^prefect==\([^ ;#]*\).*/\1/p' "$1"
}
PREFECT_VERSION="$(prefect_pin "$IMAGES_DIR/prefect/requirements.txt")"
[[ -n "$PREFECT_VERSION" ]] || die "no 'prefect==X' pin in $IMAGES_DIR/prefect/requirements.txt"
PREFECT_NEXT_VERSION="$(prefect_pin "$IMAGES_DIR/prefect-next/requirements.txt")"
[[ -n "$PREFECT_NEXT_VERSION" ]] || die "no 'prefect==X' pin in $IMAGES_DIR/prefect-next/requirements.txt"
[[ "$PREFECT_NEXT_VERSION" != "$PREFECT_VERSION" ]] \
  || die "prefect and prefect-next both pin prefect==$PREFECT_VERSION (they would share a tag)"
# CPython 3.11 on glibc 2.36 (bookworm), x86_64. pip does not widen --platform by itself, so every
# manylinux tag bookworm satisfies is listed. Markers are still evaluated against the host's Python.
WHEEL_TARGET=(--python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none)
for _glibc_minor in $(seq 36 -1 5); do
  WHEEL_TARGET+=(--platform "manylinux_2_${_glibc_minor}_x86_64")
done
WHEEL_TARGET+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64
               --platform manylinux1_x86_64 --platform linux_x86_64 --platform any)

ensure_wheels() {  # $1: image name, $2: its staged build context; prints the directory holding the wheels
  local name="$1" ctx="$2" key dir tmp pip_log extra=()
  local requirements="$ctx/requirements.txt" extra_requirements="$ctx/extra-requirements.txt"
  local constraints="$ctx/constraints.txt"
  read -r -a extra <<< "${PREFECT_HA_EXTRA_WHEELS:-}"
  key="$( { cat "$requirements" "$extra_requirements" "$constraints"
            echo "extra=${extra[*]:-}"; echo "${WHEEL_TARGET[*]}"; } | sha256)"
  dir="$CACHE/wheels/$name/${key:0:16}"
  if [[ -f "$dir/.complete" ]]; then
    echo "$dir"; return
  fi
  if ! python3 -m pip --version >/dev/null 2>&1; then
    die "the host needs python3 with pip to download the wheels"
  fi
  mkdir -p "$CACHE/wheels/$name"
  tmp="$(mktemp -d "$CACHE/wheels/$name/tmp.XXXXXX")"
  chmod 0755 "$tmp"
  pip_log="$CACHE/logs/pip-download-$name.log"
  log "downloading wheels for $name: $(grep -hv '^#' "$requirements" "$extra_requirements" | xargs) ${extra[*]:-} (log: $pip_log)"
  if ! python3 -m pip download --disable-pip-version-check -d "$tmp" --only-binary=:all: \
        "${WHEEL_TARGET[@]}" -r "$requirements" -r "$extra_requirements" \
        -c "$constraints" ${extra[@]+"${extra[@]}"} \
        >"$pip_log" 2>&1; then
    tail -n 30 "$pip_log" >&2
    rm -rf "$tmp"
    die "pip download failed (full log: $pip_log)"
  fi
  touch "$tmp/.complete"
  # drop this image's wheel sets of older requirement lists, and sets of the layout before
  # wheels/<image>/ (directly under wheels/)
  find "$CACHE/wheels/$name" -mindepth 1 -maxdepth 1 -type d ! -name "tmp.*" -exec rm -rf {} +
  find "$CACHE/wheels" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended \
       -regex '.*/[0-9a-f]{16}' -exec rm -rf {} +
  mv "$tmp" "$dir"
  echo "$dir"
}

# ---------------------------------------------------------------------------------------------
# the stand-ins, and the test images built on the prefect one
image_tag() {
  case "$1" in
    base)     echo "$BASE_IMAGE" ;;
    prefect)  echo "$PREFIX/prefect:$PREFECT_VERSION" ;;
    prefect-next) echo "$PREFIX/prefect:$PREFECT_NEXT_VERSION" ;;
    prefect-worker) echo "$PREFIX/prefect-worker:$PREFECT_VERSION" ;;
    flows)    echo "$PREFIX/flows:1" ;;
    postgres) echo "$PREFIX/postgres:15" ;;
    redis)    echo "$PREFIX/redis:7" ;;
    nginx)    echo "$PREFIX/nginx:1.22" ;;
  esac
}

REPLACED=()  # ids of replaced images that were still in use (e.g. by a child image) when replaced

build_image() {  # $1: name (a directory under images/)
  local name="$1" image ctx parent parent_image parent_id hash current old_id new_id wheels buildlog force=0
  local build_args=()
  image="$(image_tag "$name")"
  parent="$(parent_of "$name")"
  parent_image="$(image_tag "$parent")"
  parent_id="$(image_id "$parent_image")"
  [[ -n "$parent_id" ]] || die "$parent_image is missing; build it first (testbed/build_images.sh $parent)"
  # the Dockerfiles of images built on prefect say FROM ${PREFECT_IMAGE}
  if [[ "$parent" == prefect ]]; then build_args=(--build-arg "PREFECT_IMAGE=$parent_image"); fi
  # --force applies to the images named, not to parents built because a named image needs them
  if [[ $FORCE -eq 1 ]] && wanted "$name"; then force=1; fi

  # stage the build context: the image's directory (+ hard links to the wheels for the prefect
  # images); prefect-next is the prefect image's directory with its own pins laid over it
  ctx="$CACHE/contexts/$name"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  if [[ "$name" == prefect-next ]]; then cp -a "$IMAGES_DIR/prefect/." "$ctx/"; fi
  cp -a "$IMAGES_DIR/$name/." "$ctx/"
  if [[ "$name" == prefect || "$name" == prefect-next ]]; then
    wheels="$(ensure_wheels "$name" "$ctx")"
    mkdir -p "$ctx/wheels"
    cp -al "$wheels"/*.whl "$ctx/wheels/" 2>/dev/null || cp -a "$wheels"/*.whl "$ctx/wheels/"
  fi

  hash="$( {
    echo "recipe=$RECIPE_VERSION image=$image base=$parent_id${build_args[*]:+ ${build_args[*]}}"
    cd "$ctx"
    find . -printf '%y %m %p\n' | LC_ALL=C sort
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256)"
  current="$(image_label "$image")"
  if [[ $force -eq 0 && "$current" == "$hash" ]]; then
    log "$image is up to date"; SKIPPED+=("$image"); return
  fi

  old_id="$(image_id "$image")"
  buildlog="$CACHE/logs/build-$name.log"
  log "building $image (log: $buildlog)"
  local cmd=(docker build --rm --force-rm --label "$LABEL=$hash" -t "$image" ${build_args[@]+"${build_args[@]}"})
  if [[ $force -eq 1 ]]; then cmd+=(--no-cache); fi
  cmd+=("$ctx")
  if [[ "${VERBOSE:-0}" == 1 ]]; then
    "${cmd[@]}" 2>&1 | tee "$buildlog" >&2 || die "docker build of $image failed (log: $buildlog)"
  elif ! "${cmd[@]}" >"$buildlog" 2>&1; then
    tail -n 40 "$buildlog" >&2
    die "docker build of $image failed (full log: $buildlog)"
  fi
  new_id="$(image_id "$image")"
  drop_replaced "$old_id" "$new_id"
  if [[ -n "$old_id" && "$old_id" != "$new_id" ]] && docker image inspect "$old_id" >/dev/null 2>&1; then
    REPLACED+=("$old_id")
  fi
  log "built $image"; BUILT+=("$image")
}

# ---------------------------------------------------------------------------------------------
start=$SECONDS
build_base   # always: every other image depends on it, and it is a no-op when up to date
for name in "${BUILD[@]}"; do
  [[ "$name" == base ]] || build_image "$name"
done
# a replaced prefect image could not be removed while the old children built on it existed
for old_id in ${REPLACED[@]+"${REPLACED[@]}"}; do
  docker rmi "$old_id" >/dev/null 2>&1 || true
done

log "done in $((SECONDS - start))s; built: ${BUILT[*]:-none}; up to date: ${SKIPPED[*]:-none}"
for name in "${BUILD[@]}"; do
  image_tag "$name"
done | while read -r image; do
  docker image ls --format '{{.Repository}}:{{.Tag}}  {{.ID}}  {{.Size}}' "$image"
done
