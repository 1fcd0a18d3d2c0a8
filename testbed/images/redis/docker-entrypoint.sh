#!/bin/sh
# Mirrors the official redis image's docker-entrypoint.sh: a first argument that is an option
# ("-..."), or a "*.conf" file, gets "redis-server" put in front; the server runs as the redis user
# after /data (the working directory) is chowned to it.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
  find . \! -user redis -exec chown redis '{}' + || :
  exec gosu redis "$0" "$@"
fi

if [ "$1" = 'redis-server' ]; then
  # The official image compiles protected-mode's default to "no"; Debian's binary keeps "yes".
  # Without a config file, pass it on the command line (later options still override it).
  # With a config file, the file decides (Debian's default "yes" applies if it says nothing).
  case "${2-}" in
    -|-v|-h|--version|--help|--test-memory|--check-system) ;;
    ''|--*)
      shift
      set -- redis-server --protected-mode no "$@" ;;
  esac
  # an appropriate umask, as the official image sets
  if [ "$(umask)" = '0022' ]; then
    umask 0077
  fi
fi

exec "$@"
