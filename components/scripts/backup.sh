# prefect-ha backups: logical backups of the Prefect database (pg_dump, custom format).
#
#   sh /tmp/prefect-backup loop     one backup now, then one every $BACKUP_INTERVAL seconds
#                                   (the backup container's command)
#   sh /tmp/prefect-backup now      one backup now; prints its line, exits non-zero on failure
#   sh /tmp/prefect-backup list     the backups, newest first: name, bytes, time
#   sh /tmp/prefect-backup health   exit 0 unless the last backup failed, or the newest is more
#                                   than $BACKUP_MAX_AGE s old (counted from the loop's start
#                                   while it has taken none yet)
#
# Each backup is dumped into a hidden partial file, read back in full (pg_restore
# --list, then a whole restore into /dev/null, which decompresses every table's
# data), and only then renamed into place as prefect-<UTC time>.dump: a file with
# that name is always a complete, readable archive. Then all but the newest
# $BACKUP_KEEP are deleted. The connection comes from libpq's environment
# (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD); nothing secret is on a command line.
# POSIX sh and coreutils/busybox only: it runs in the Postgres image.
set -u

dir=${BACKUP_DIR:-/backups}
keep=${BACKUP_KEEP:-7}
interval=${BACKUP_INTERVAL:-86400}
max_age=${BACKUP_MAX_AGE:-$((2 * interval + 600))}
partial=""
# Per container life (tmpfs): when the loop started, and why the last backup failed.
state=${BACKUP_STATE_DIR:-/tmp}
failed_file="$state/prefect-backup.failed"
started_file="$state/prefect-backup.started"

log() { printf '%s prefect-ha backup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

failed() {
    log "FAILED: $*"
    printf '%s\n' "$*" > "$failed_file" 2>/dev/null
    return 1
}

# Backups by name, newest first (the UTC time in the name sorts as text).
backups() {
    ls -1 "$dir" 2>/dev/null | grep -E '^prefect-[0-9]{8}T[0-9]{6}Z\.dump$' | sort -r
}

backup() {
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    while [ -e "$dir/prefect-$stamp.dump" ]; do
        sleep 1
        stamp=$(date -u +%Y%m%dT%H%M%SZ)
    done
    name="prefect-$stamp.dump"
    partial="$dir/.partial-$stamp-$$.dump"
    started=$(date +%s)
    if ! pg_dump --no-password --format=custom --file="$partial"; then
        rm -f "$partial"; partial=""
        failed "pg_dump of database ${PGDATABASE:-?} exited non-zero; no backup was written"
        return 1
    fi
    dumped=$(date +%s)
    if ! pg_restore --list "$partial" >/dev/null || ! pg_restore --file=/dev/null "$partial"; then
        rm -f "$partial"; partial=""
        failed "the dump of database ${PGDATABASE:-?} did not read back (pg_restore); it was deleted"
        return 1
    fi
    if ! mv "$partial" "$dir/$name"; then
        rm -f "$partial"; partial=""
        failed "could not move the backup into place as $dir/$name"
        return 1
    fi
    partial=""
    rm -f "$failed_file"
    finished=$(date +%s)
    size=$(wc -c < "$dir/$name" | tr -d ' ')
    log "backup $name bytes=$size seconds=$((finished - started)) dump_seconds=$((dumped - started)) verify_seconds=$((finished - dumped)) database=${PGDATABASE:-?}"
    prune
}

prune() {
    backups | tail -n +$((keep + 1)) | while read -r old; do
        rm -f "$dir/$old" && log "pruned $old (keeping the newest $keep)"
    done
}

health() {
    if [ -f "$failed_file" ]; then
        echo "the last backup failed: $(cat "$failed_file")"
        return 1
    fi
    now=$(date +%s)
    newest=$(backups | head -n 1)
    if [ -n "$newest" ]; then
        age=$((now - $(stat -c %Y "$dir/$newest")))
        if [ "$age" -le "$max_age" ]; then
            echo "newest backup $newest, ${age} s old"
            return 0
        fi
    fi
    started=$(cat "$started_file" 2>/dev/null || echo 0)
    if [ $((now - started)) -le "$max_age" ]; then
        echo "no recent backup yet; the loop started $((now - started)) s ago and takes one at start"
        return 0
    fi
    if [ -n "$newest" ]; then
        echo "the newest backup, $newest, is ${age} s old (more than ${max_age} s)"
    else
        echo "no backup in $dir"
    fi
    return 1
}

list() {
    backups | while read -r name; do
        printf '%s\t%s bytes\t%s\n' "$name" "$(wc -c < "$dir/$name" | tr -d ' ')" "$(stat -c %y "$dir/$name")"
    done
}

case "${1:-}" in
    loop)
        sleeper=""
        trap 'log "stopping"; [ -n "$partial" ] && rm -f "$partial"; [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null; exit 0' TERM INT
        date +%s > "$started_file"
        rm -f "$failed_file"
        # Partial files of a backup that was cut off (container killed mid-dump).
        find "$dir" -maxdepth 1 -name '.partial-*' -mmin +"$((interval / 60 + 60))" -exec rm -f {} + 2>/dev/null
        log "every ${interval} s into $dir, keeping the newest $keep"
        while :; do
            backup || true
            sleep "$interval" &
            sleeper=$!
            wait "$sleeper"
            sleeper=""
        done
        ;;
    now) backup ;;
    list) list ;;
    health) health ;;
    *)
        echo "usage: sh $0 loop|now|list|health" >&2
        exit 2
        ;;
esac
