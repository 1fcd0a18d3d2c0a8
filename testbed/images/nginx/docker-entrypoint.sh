#!/bin/sh
# Mirrors the official nginx image's /docker-entrypoint.sh: when the command is nginx, run the
# executable *.sh hooks in /docker-entrypoint.d, and render /etc/nginx/templates/*.template with
# envsubst into /etc/nginx/conf.d (only variables that are set are substituted).
set -e

entrypoint_log() {
  if [ -z "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then
    echo "$@"
  fi
}

render_templates() {
  template_dir="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
  suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
  output_dir="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
  [ -d "$template_dir" ] || return 0
  if [ ! -w "$output_dir" ]; then
    entrypoint_log "$0: ERROR: $template_dir exists, but $output_dir is not writable"
    return 0
  fi
  # "${A} ${B} ...": envsubst replaces only variables that are set, leaving nginx's own $vars alone
  # shellcheck disable=SC2016,SC2046
  defined_envs=$(printf '${%s} ' $(env | cut -d= -f1))
  find "$template_dir" -follow -type f -name "*$suffix" -print | while read -r template; do
    relative_path="${template#"$template_dir/"}"
    output_path="$output_dir/${relative_path%"$suffix"}"
    mkdir -p "$(dirname "$output_path")"
    entrypoint_log "$0: Running envsubst on $template to $output_path"
    envsubst "$defined_envs" < "$template" > "$output_path"
  done
}

if [ "$1" = "nginx" ] || [ "$1" = "nginx-debug" ]; then
  render_templates
  if find /docker-entrypoint.d/ -mindepth 1 -maxdepth 1 -type f -print -quit 2>/dev/null | read -r _; then
    entrypoint_log "$0: Looking for shell scripts in /docker-entrypoint.d/"
    find /docker-entrypoint.d/ -follow -type f -print | sort -V | while read -r f; do
      case "$f" in
        *.sh)
          if [ -x "$f" ]; then entrypoint_log "$0: Launching $f"; "$f"
          else entrypoint_log "$0: Ignoring $f, not executable"; fi ;;
        *) entrypoint_log "$0: Ignoring $f" ;;
      esac
    done
  fi
  entrypoint_log "$0: Configuration complete; ready for start up"
fi

exec "$@"
