#!/usr/bin/env bash
# bench/local-fsync.sh - system calls per local (Maildir) delivery of tern
# serve (issue 9): how many fsyncs, renames, links and unlinks one message
# costs from DATA to its file in new/.
#
# Postfix's smtp-source sends N messages (1 KiB, SESSIONS parallel sessions,
# one message per connection) to u@local.test, a local user with the default
# Maildir delivery; tern serve runs under `strace -f -c`, and the run ends
# once every message is in the Maildir and the queue is empty.  Prints the
# strace summary and the calls per message; rates under strace mean little,
# the counts are exact.
#
#   bench/local-fsync.sh [path/to/tern] [messages]      env: SESSIONS=5
set -euo pipefail

TERN=$(realpath "${1:-build/tern}")
N=${2:-500}
SESSIONS=${SESSIONS:-5}
SOURCE=/usr/sbin/smtp-source
die() { echo "bench/local-fsync.sh: $*" >&2; exit 2; }
for b in "$TERN" "$SOURCE" /usr/bin/strace; do [ -x "$b" ] || die "$b not found"; done

work=$(mktemp -d "${TMPDIR:-/tmp}/tern-fsync-bench.XXXXXX")
spid=
cleanup() {
    if [ -n "$spid" ]; then
        local child
        child=$(pgrep -P "$spid" || true)
        [ -n "$child" ] && kill -TERM "$child" 2>/dev/null || true
        wait "$spid" 2>/dev/null || true
    fi
    [ -n "${FSYNC_BENCH_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/tern.conf" <<CONF
[server]
hostname = mx.tern.test
data_dir = data
max_sessions_per_ip = 0
max_connect_rate_per_ip = 0
[listen]
smtp = 127.0.0.1:$port
[queue]
delay_warning = off
[local]
delivery = maildir
CONF
if [ "$(id -u)" = 0 ]; then
    sed -i "2a user = nobody" "$work/tern.conf"
    chmod 0755 "$work"
fi
# an older tern without these keys (to measure before/after): drop them
if ! "$TERN" check-config --config "$work/tern.conf" >/dev/null 2>&1; then
    sed -i -e '/^user = /d' -e '/^max_sessions_per_ip/d' -e '/^max_connect_rate_per_ip/d' "$work/tern.conf"
fi
echo pw | "$TERN" user add --config "$work/tern.conf" u@local.test >/dev/null
strace -f -c -o "$work/strace.txt" \
    -e trace=fsync,fdatasync,sync_file_range,rename,renameat,renameat2,link,linkat,unlink,unlinkat,openat,write,writev \
    "$TERN" serve --config "$work/tern.conf" >"$work/serve.log" 2>&1 &
spid=$!
for _ in $(seq 100); do
    grep -q "ready:" "$work/serve.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "ready:" "$work/serve.log" || die "tern serve did not start: $(tail -5 "$work/serve.log")"

md=$work/data/mail/local.test/u/Maildir
t0=$(date +%s.%N)
"$SOURCE" -c -m "$N" -s "$SESSIONS" -l 1024 -f s@client.test -t u@local.test "127.0.0.1:$port" >/dev/null
for _ in $(seq 600); do
    have=$(find "$md/new" -type f 2>/dev/null | wc -l)
    left=$(find "$work/data/queue/queue" -type f 2>/dev/null | wc -l)
    [ "$have" -ge "$N" ] && [ "$left" -eq 0 ] && break
    sleep 0.1
done
t1=$(date +%s.%N)
child=$(pgrep -P "$spid")
kill -TERM "$child"
wait "$spid" || true
spid=
echo "# $N messages of 1 KiB, $SESSIONS sessions, $have delivered, $(echo "$t1 - $t0" | bc) s under strace"
cat "$work/strace.txt"
echo "# calls per message"
awk -v n="$N" '$NF ~ /^[a-z_0-9]+$/ && $(NF-1) ~ /^[0-9]+$/ && $NF != "total" {
    calls = ($4 ~ /^[0-9]+$/ && NF == 6) ? $4 : $(NF-1); }
    $NF ~ /^(fsync|fdatasync|rename|renameat|renameat2|link|linkat|unlink|unlinkat|openat|write|writev)$/ {
    printf "%-10s %6.2f\n", $NF, $4 / n }' "$work/strace.txt"
