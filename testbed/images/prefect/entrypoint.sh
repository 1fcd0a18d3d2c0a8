#!/usr/bin/env bash
# Mirrors the official image's /opt/prefect/entrypoint.sh; EXTRA_PIP_PACKAGES is installed from
# the wheels baked into /wheels, because no package index is reachable from containers here.
set -e

if [ -f ~/.bashrc ]; then
  # shellcheck disable=SC1090
  . ~/.bashrc
fi

if [ -n "$EXTRA_PIP_PACKAGES" ]; then
  echo "+pip install --no-index --find-links /wheels $EXTRA_PIP_PACKAGES"
  # shellcheck disable=SC2086  # word splitting is the documented contract
  pip install --no-cache-dir --no-index --find-links /wheels $EXTRA_PIP_PACKAGES
fi

if [ -z "$*" ]; then
  exec bash --login
else
  exec "$@"
fi
