#!/usr/bin/env bash
# bench/send.sh - `tern send` against Postfix's smtp-source, both sending the
# same number of 1 KiB messages into Postfix's smtp-sink on loopback, with 1
# and 8 connections, in one run.  tern send also renders a template per
# message and commits every outcome to its SQLite ledger; smtp-source sends a
# fixed message.  Reports the median of RUNS runs (messages/second, wall
# clock including start-up) and the ratio tern/smtp-source.
#
#   bench/send.sh [path/to/tern] [messages] [runs]
set -euo pipefail

TERN=${1:-build/tern}
MSGS=${2:-5000}
RUNS=${3:-3}
SINK=/usr/sbin/smtp-sink
SOURCE=/usr/sbin/smtp-source
for b in "$TERN" "$SINK" "$SOURCE"; do
    [ -x "$b" ] || { echo "bench/send.sh: $b not found (make build; scripts/install-deps)" >&2; exit 2; }
done

work=$(mktemp -d)
sink_pid=""
cleanup() {
    [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null && wait "$sink_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user=()
[ "$(id -u)" -eq 0 ] && user=(-u nobody)
"$SINK" "${user[@]}" -c 127.0.0.1:"$port" 1024 >/dev/null 2>&1 &
sink_pid=$!
for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
    sleep 0.1
done

# A list of MSGS recipients and a template whose rendering is about 1 KiB.
python3 - "$work" "$MSGS" <<'PY'
import csv, sys
d, n = sys.argv[1], int(sys.argv[2])
with open(d + "/list.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["email", "name", "code"])
    for i in range(n):
        w.writerow(["user%d@example.net" % i, "User %d" % i, "%08d" % i])
body = "".join("Line %02d of the notice, padded to make a one kilobyte message.\n" % i for i in range(12))
with open(d + "/t.txt", "w") as f:
    f.write("From: Notices <notices@example.org>\nTo: {{name}} <{{email}}>\n"
            "Subject: Notice for {{name}}\n\nDear {{name}}, your code is {{code}}.\n" + body)
PY

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }

rate_tern() { # $1 = connections
    rm -f "$work"/list.csv.ledger*
    local t0 t1
    t0=$(now)
    "$TERN" send --quiet --to "$work/list.csv" --template "$work/t.txt" --from notices@example.org \
        --server 127.0.0.1:"$port" --parallel "$1" >/dev/null
    t1=$(now)
    echo "$MSGS / ($t1 - $t0)" | bc -l
}

rate_source() { # $1 = connections
    local t0 t1
    t0=$(now)
    "$SOURCE" -s "$1" -m "$MSGS" -l 1024 -f notices@example.org -t user@example.net 127.0.0.1:"$port"
    t1=$(now)
    echo "$MSGS / ($t1 - $t0)" | bc -l
}

echo "| connections | smtp-source msg/s | tern send msg/s | tern / smtp-source |"
echo "| --- | --- | --- | --- |"
for conns in 1 8; do
    s=$(for _ in $(seq "$RUNS"); do rate_source "$conns"; done | median)
    t=$(for _ in $(seq "$RUNS"); do rate_tern "$conns"; done | median)
    printf "| %d | %.0f | %.0f | %.2f |\n" "$conns" "$s" "$t" "$(echo "$t / $s" | bc -l)"
done
echo
echo "($MSGS messages of about 1 KiB per run, median of $RUNS runs, into smtp-sink on loopback;"
echo " tern send renders the template and commits its SQLite ledger for every message)"
