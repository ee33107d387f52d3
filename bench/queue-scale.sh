#!/usr/bin/env bash
# bench/queue-scale.sh - tern serve with a large queue: start-up recovery time,
# memory per queued item, local delivery rate beside the backlog, and the CPU
# of the trickle of retries ("Queue at scale").
#
# N items are written straight into a spool as files (.msg + .env in the real
# envelope format, as tern's own deferred items look): one recipient each at
# dead.test (or dead0.test .. deadK-1.test with DOMAINS=K, item i at i mod K),
# whose route ([remote] routes) points at a loopback port where nothing
# listens (127.0.0.1, or 127.0.0.(2+k) for deadk.test: a next hop of its own
# each), so every attempt is refused at once and deferred.  Created
# five minutes ago, four attempts made (the next retry is an hour away), next
# attempts spread uniformly over SPREAD seconds starting QUIET seconds after
# the generation ends: the first phases see a queue with nothing due, the
# later ones a trickle of N/SPREAD retries per second.
#
# The empty server is measured before the spool is generated.  Two servers
# with identical configurations (local domain example.test, user
# user@example.test, Maildir delivery, [queue] max_items above N, no per-address
# session or connection-rate limit, as root [server] user = nobody): "empty"
# (no queue) and "backlog" (the N items).  Phases:
#   1. start-up: each started, time from the exec to the log line "ready:";
#      the log also gives exec -> "listening" (configuration, TLS and, as
#      root, handing DATA_DIR/queue to [server] user = nobody: a look at every
#      file) and "listening" -> "queue recovered" (the recovery proper).  Warm page cache (the generator just wrote the files);
#      then one cold start after `sync; echo 3 > /proc/sys/vm/drop_caches` if
#      permitted (COLD=0 skips it).
#   2. memory: VmRSS, VmHWM and Pss (smaps_rollup) 2 s after "ready", backlog
#      minus empty, divided by N.
#   3. CPU: utime+stime (/proc/PID/stat) over IDLE seconds with nothing due
#      (both servers), then over IDLE seconds of the trickle (backlog): CPU
#      per attempt (attempts = log lines "via=smtp").
#   4. local delivery: smtp-source (SESSIONS sessions, one message per
#      connection, SIZE bytes) to user@example.test, timed until the last
#      message is a file in the Maildir's new/; empty and backlog alternated
#      (restarted for every run: more start-up samples), RUNS each, medians.
#      After each start the script waits (SETTLE_MAX at most) until the retries
#      that fell due while the server was down have been made; a run on the
#      backlog then includes the trickle of retries falling due during it.
#   5. the scheduler alone: bench/schedule-bench.c (add / next+done / drain
#      per operation at 100000 and 1000000 items, no I/O), built from src/ into
#      the work folder when build/schedule-bench is not next to tern.
#
#   bench/queue-scale.sh [path/to/tern] [N]        (N default 100000)
#   env: RUNS=5 MESSAGES=2000 SESSIONS=10 SIZE=1024 SPREAD=3600 (s)
#        QUIET=auto (s after the generation; 30 + IDLE + N/10000) IDLE=20 (s per CPU window)
#        DOMAINS=1 (dead domains, each its own next hop; 1..30: one routes line)
#        ENV_VERSION=auto (2, with the message's size and CRC-32C, when tern
#        knows "msg-crc32c"; else 1)
#        COLD=1 (try one start with a dropped page cache; needs root)
#        PROFILE=0 (1: one more backlog start under `perf record`, top symbols)
#        SCHED_BENCH=1 (0: skip phase 5)  RUN_TIMEOUT=120 (s per delivery run)
#        SETTLE_MAX=120 (s: after a restart, the wait for overdue retries to be made)
#        START_TIMEOUT=600 (s until "ready")  QUEUE_SCALE_KEEP=1 (keep the work folder)
#        TMPDIR (where the spools go: about 8.5 KB and 2 inodes per item)
#
# Loopback only; every loop is bounded in count and time; only the processes
# this script starts are stopped, by PID.  Markdown tables on stdout, progress
# on stderr.  About 4-7 minutes for N = 100000 on 2 cores (a minute of it
# writing the spool, and as long again cold-starting and removing it); about 20
# for N = 1000000.
set -euo pipefail

TERN=$(realpath "${1:-build/tern}")
N=${2:-100000}
RUNS=${RUNS:-5}
MESSAGES=${MESSAGES:-2000}
SESSIONS=${SESSIONS:-10}
SIZE=${SIZE:-1024}
SPREAD=${SPREAD:-3600}
DOMAINS=${DOMAINS:-1}
ENV_VERSION=${ENV_VERSION:-auto}
IDLE=${IDLE:-20}
QUIET=${QUIET:-$((30 + IDLE + N / 10000))}
COLD=${COLD:-1}
PROFILE=${PROFILE:-0}
SCHED_BENCH=${SCHED_BENCH:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
SETTLE_MAX=${SETTLE_MAX:-120}
START_TIMEOUT=${START_TIMEOUT:-600}
SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "bench/queue-scale.sh: $*" >&2; exit 2; }
note() { echo "# $*" >&2; }
[ -x "$TERN" ] || die "$TERN not found (cmake --build BUILD --target tern)"
[ -x "$SOURCE" ] || die "$SOURCE not found (scripts/install-deps)"
command -v python3 >/dev/null || die "python3 not found"
if ! [[ $N =~ ^[0-9]+$ ]] || [ "$N" -lt 1 ] || [ "$N" -gt 10000000 ]; then die "N: 1..10000000"; fi
if ! [[ $DOMAINS =~ ^[0-9]+$ ]] || [ "$DOMAINS" -lt 1 ] || [ "$DOMAINS" -gt 30 ]; then die "DOMAINS: 1..30"; fi
if [ "$ENV_VERSION" = auto ]; then # version 2 (message size and CRC-32C) if this tern knows it
    if grep -qa 'msg-crc32c' "$TERN"; then ENV_VERSION=2; else ENV_VERSION=1; fi
fi
case $ENV_VERSION in 1 | 2) ;; *) die "ENV_VERSION: auto, 1 or 2" ;; esac

work=$(mktemp -d "${TMPDIR:-/tmp}/tern-queue-scale.XXXXXX")
chmod 755 "$work" # [server] user = nobody (as root) must reach its data folders
declare -A running # PIDs started here and not yet waited for (never a reaped, reusable one)
cleanup() {
    local p
    for p in "${!running[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${!running[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "${QUEUE_SCALE_KEEP:-}" ]; then note "work folder kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- room: ~8.5 KB (two 4 KiB blocks and the directory entries) and 2 inodes per item
avail_kb=$(df -Pk "$work" | awk 'NR == 2 {print $4}')
ifree=$(df -Pi "$work" | awk 'NR == 2 {print $4}')
need_kb=$((N * 17 / 2 + 1024 * 1024))
[ "$avail_kb" -ge "$need_kb" ] || die "$work: $((avail_kb / 1024)) MiB free, $((need_kb / 1024)) MiB needed for $N items"
[ "$ifree" = - ] || [ "$ifree" -ge $((2 * N + 10000)) ] || die "$work: $ifree inodes free, $((2 * N + 10000)) needed"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
dead_port=$(free_port) # nothing listens here: every attempt to dead.test is refused
if [ "$DOMAINS" = 1 ]; then
    routes="dead.test=[127.0.0.1]:$dead_port"
else
    routes=$(for ((k = 0; k < DOMAINS; k++)); do printf 'dead%d.test=[127.0.0.%d]:%d ' "$k" $((k + 2)) "$dead_port"; done)
fi

# ---- the two servers: same configuration, own data folder and port ---------------
run_as="" owner="-1 -1" # started as root, tern serve needs [server] user; the spool is then its
if [ "$(id -u)" -eq 0 ]; then run_as="user = nobody" owner="$(id -u nobody) $(id -g nobody)"; fi
declare -A port dir pid
for s in empty backlog; do
    d=$work/$s
    dir[$s]=$d
    port[$s]=$(free_port)
    mkdir -p "$d/data/domains/example.test"
    cat >"$d/tern.conf" <<EOF
[server]
hostname = mx.tern.test
data_dir = data
$run_as
max_sessions_per_ip = 0
max_connect_rate_per_ip = 0
[listen]
smtp = 127.0.0.1:${port[$s]}
[queue]
max_items = $((N + 100000))
[local]
delivery = maildir
[remote]
routes = $routes
EOF
    echo "password" >"$d/password"
    "$TERN" user add --config "$d/tern.conf" --password-file "$d/password" user@example.test >/dev/null
    "$TERN" check-config --config "$d/tern.conf" >"$d/check.log" 2>&1 || die "check-config: $(cat "$d/check.log")"
    mkdir -p "$d/data/queue/queue" "$d/data/queue/tmp" "$d/data/queue/quarantine"
    chmod 700 "$d/data/queue" "$d/data/queue/queue" "$d/data/queue/tmp" "$d/data/queue/quarantine"
done

# ---- the backlog: N items written as files ---------------------------------------
cat >"$work/gen.py" <<'PY'
# gen.py QUEUE_DIR N DEAD_PORT QUIET SPREAD CREATED DOMAINS VERSION UID GID: N
# items (owned by UID:GID unless -1), .msg then .env of each (as tern writes them: their inodes side by side), two
# processes (2 cores), no fsync (the script syncs once afterwards).  VERSION 2
# envelopes carry msg-size and msg-crc32c (recovery then reads every .msg);
# the message is the same for every item but for its last line, so that its
# CRC-32C is the prefix's continued over a few octets.  An item's first retry
# falls due QUIET seconds after the end of the generation as projected when
# it is written (the pace so far, times 2 for the fuller folder), plus a
# uniform part over SPREAD; prints the earliest due time (Unix seconds).
import os, random, sys, time
from multiprocessing import Process, Queue
qdir, n, port, quiet, spread, created, domains, version, uid, gid = sys.argv[1], *map(int, sys.argv[2:11])
procs = min(2, os.cpu_count() or 1)
flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
M64 = (1 << 64) - 1
CRC_TABLE = []
for b in range(256):
    c = b
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    CRC_TABLE.append(c)
def crc32c(crc, data):  # chains like crc32c_update() in src/core/crc32c.c
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
assert crc32c(0, b"123456789") == 0xE3069283
PREFIX = (b"Received: from client.remote.test (127.0.0.1:40000)\n"
          b"\tby mx.tern.test (tern) with ESMTP\n"
          b"\tfor <u@example.test>; Wed, 25 Nov 2026 16:20:18 +0000\n"
          b"From: <a@remote.test>\nTo: <backlog@dead.test>\nSubject: backlog\n"
          b"Message-Id: <backlog@client.remote.test>\n\n"
          + b"".join(b"%d%s\n" % (j, b"X" * 77) for j in range(5)))
PREFIX_CRC = crc32c(0, PREFIX)
def item_id(i):  # the random part: a splitmix64 of i
    z = ((i + 1) * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return "%010d-%08x-%016x" % (created, i, z ^ (z >> 31))
def dom(i):
    return "dead.test" if domains == 1 else "dead%d.test" % (i % domains)
def hop(i):
    return "127.0.0.1" if domains == 1 else "127.0.0.%d" % (i % domains + 2)
def put(name, data):
    fd = os.open(os.path.join(qdir, name), flags, 0o600)
    try:
        if uid >= 0:
            os.fchown(fd, uid, gid)
        os.write(fd, data)
    finally:
        os.close(fd)
def work(k, out):
    rnd = random.Random(1000 + k)
    t0 = time.time()
    first = None
    for done, i in enumerate(range(k, n, procs)):
        iid = item_id(i)
        now = time.time()
        left = (n - i) / procs * ((now - t0) / done if done >= 200 else 0.002)
        due = int(now + 2 * left) + quiet + rnd.randrange(spread)
        first = due if first is None else min(first, due)
        tail = b"item %s\n" % iid.encode()
        put(iid + ".msg", PREFIX + tail)
        sums = ("msg-size %d\nmsg-crc32c %08x\n" % (len(PREFIX) + len(tail), crc32c(PREFIX_CRC, tail))
                if version >= 2 else "")
        put(iid + ".env", ("tern-envelope %d\nid %s\ncreated %d\nnext-attempt %d\n%s"
            "sender <a@remote.test>\nsmtputf8 no\n8bitmime no\ndelay-warned no\n"
            "helo client.remote.test\npeer 127.0.0.1:40000\nrcpt x%d@%s\ntarget smtp\n"
            "status pending\nattempts 4\nlast-attempt %d\n"
            "error 4.4.1 connect to %s:%d: Connection refused\nend\n"
            % (version, iid, created, due, sums, i, dom(i), created + 60, hop(i), port)).encode())
    out.put(first if first is not None else 0)
out = Queue()
ps = [Process(target=work, args=(k, out)) for k in range(procs)]
for p in ps:
    p.start()
firsts = [out.get() for _ in ps]
for p in ps:
    p.join()
if any(p.exitcode for p in ps):
    sys.exit(1)
print(min(f for f in firsts if f) if any(firsts) else int(time.time()) + quiet)
PY
generate() {
    note "generating $N items in ${dir[backlog]}/data/queue/queue"
    local t
    t=$(date +%s%N)
    first_due=$(python3 "$work/gen.py" "${dir[backlog]}/data/queue/queue" "$N" "$dead_port" "$QUIET" \
        "$SPREAD" $(($(date +%s) - 300)) "$DOMAINS" "$ENV_VERSION" $owner)
    gen_ms=$((($(date +%s%N) - t) / 1000000))
    t=$(date +%s%N)
    sync
    sync_ms=$((($(date +%s%N) - t) / 1000000))
    spool_mb=$(du -sm "${dir[backlog]}/data/queue/queue" | cut -f1)
    note "generated in $gen_ms ms, sync $sync_ms ms, $spool_mb MiB on disk; retries due from +$((first_due - $(date +%s)))s over ${SPREAD}s"
    "$TERN" queue --config "${dir[backlog]}/tern.conf" show \
        "$(basename -s .env "$(find "${dir[backlog]}/data/queue/queue" -name '*.env' -print -quit)")" \
        >"$work/show.txt" 2>&1 || die "the generated item does not read back: $(cat "$work/show.txt")"
}

# ---- helpers ---------------------------------------------------------------------------
log_ms() { # $1 log, $2 pattern: the timestamp (Unix ms) of the first matching line
    local ts
    ts=$(grep -m1 -- "$2" "$1" | cut -d' ' -f1) || return 1
    [ -n "$ts" ] && date -u -d "$ts" +%s%3N
}
cpu_ms() { # utime + stime of the process (all its threads), ms
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) * 1000 / hz }' "/proc/$1/stat"
}
attempts() { grep -c 'via=smtp' "$1" || true; }
declare -A start_ms recover_ms listen_ms
start() { # $1 server [$2 wrapper...]: start it, wait for "ready", set start_ms/listen_ms/recover_ms
    local s=$1 log t0 t_listen t_rec t_ready i
    shift
    log=${dir[$s]}/serve.log
    : >"$log"
    t0=$(date +%s%3N)
    "$@" "$TERN" serve --config "${dir[$s]}/tern.conf" 2>"$log" &
    pid[$s]=$!
    running[$!]=1
    for ((i = 0; i < START_TIMEOUT * 50; i++)); do
        grep -q 'serve info: ready:' "$log" && break
        kill -0 "${pid[$s]}" 2>/dev/null || die "$s did not start: $(tail -5 "$log")"
        sleep 0.02
    done
    grep -q 'serve info: ready:' "$log" || die "$s: not ready after $START_TIMEOUT s"
    t_listen=$(log_ms "$log" 'listening on')
    t_rec=$(log_ms "$log" 'serve info: queue recovered:')
    t_ready=$(log_ms "$log" 'serve info: ready:')
    start_ms[$s]=$((t_ready - t0))
    listen_ms[$s]=$((t_listen - t0)) # configuration, TLS, handing the spool to [server] user
    recover_ms[$s]=$((t_rec - t_listen))
}
stop() { # $1 server: SIGTERM, wait (bounded), the process is ours
    local s=$1 p=${pid[$1]} i
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 1500; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.02; done
    kill -0 "$p" 2>/dev/null && { note "$s did not stop in 30 s: SIGKILL"; kill -KILL "$p"; }
    wait "$p" 2>/dev/null || true
    unset "running[$p]"
}
mem() { # $1 pid: "rss_kb hwm_kb pss_kb"
    local rss hwm pss
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status")
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$1/status")
    pss=$(awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0)
    echo "$rss $hwm $pss"
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "nan")}'; }

# ---- phases 1-3: start-up, memory, idle CPU; then the trickle ------------------------------
declare -A rss hwm pss idle_cpu idle_att idle_len
for s in empty backlog; do
    [ "$s" = backlog ] && generate
    start "$s"
    note "$s: ready ${start_ms[$s]} ms after exec (listening after ${listen_ms[$s]} ms, then recovery ${recover_ms[$s]} ms): $(grep -m1 'ready:' "${dir[$s]}/serve.log" | cut -d' ' -f5-)"
    sleep 2
    read -r rss[$s] hwm[$s] pss[$s] < <(mem "${pid[$s]}")
    len=$IDLE # the backlog's window ends before its first retry is due
    [ "$s" = backlog ] && [ $((first_due - 1 - $(date +%s))) -lt "$len" ] && len=$((first_due - 1 - $(date +%s)))
    [ "$len" -ge 1 ] || len=1
    c0=$(cpu_ms "${pid[$s]}") a0=$(attempts "${dir[$s]}/serve.log")
    sleep "$len"
    idle_cpu[$s]=$(($(cpu_ms "${pid[$s]}") - c0))
    idle_att[$s]=$(($(attempts "${dir[$s]}/serve.log") - a0))
    idle_len[$s]=$len
    note "$s: RSS ${rss[$s]} KiB (peak ${hwm[$s]}), PSS ${pss[$s]} KiB; idle ${len}s: ${idle_cpu[$s]} ms CPU, ${idle_att[$s]} attempts"
    [ "$s" = empty ] && stop empty
done
warm_start=${start_ms[backlog]} warm_recover=${recover_ms[backlog]} warm_listen=${listen_ms[backlog]}
[ "${idle_att[backlog]}" -eq 0 ] || note "retries fell due during the quiet window: raise QUIET"

# the trickle: wait (bounded by QUIET) until retries have been due for 10 s
# (the first connection of each worker thread to a next hop builds its TLS
# context: about 20 ms of CPU, not per attempt), then IDLE seconds
wait_s=$((first_due + 10 - $(date +%s)))
if [ "$wait_s" -gt 0 ]; then note "waiting ${wait_s}s for the first retries to fall due"; sleep "$wait_s"; fi
c0=$(cpu_ms "${pid[backlog]}") a0=$(attempts "${dir[backlog]}/serve.log") t=$(date +%s%N)
sleep "$IDLE"
trickle_cpu=$(($(cpu_ms "${pid[backlog]}") - c0))
trickle_att=$(($(attempts "${dir[backlog]}/serve.log") - a0))
trickle_s=$(awk -v t="$t" -v n="$(date +%s%N)" 'BEGIN {printf "%.1f", (n - t) / 1e9}')
note "backlog trickle: $trickle_att attempts in ${trickle_s}s, $trickle_cpu ms CPU"
grep -q 'Connection refused' "${dir[backlog]}/serve.log" || note "no attempt was refused: is something listening on $dead_port?"
stop backlog

# one start with a cold page cache
cold="not tried (COLD=0)"
if [ "$COLD" = 1 ]; then
    sync
    if (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
        start backlog
        cold="${start_ms[backlog]} ms (listening after ${listen_ms[backlog]} ms, recovery ${recover_ms[backlog]} ms)"
        stop backlog
    else
        cold="refused: cannot write /proc/sys/vm/drop_caches"
    fi
    note "cold start: $cold"
fi

if [ "$PROFILE" = 1 ]; then
    if command -v perf >/dev/null; then
        start backlog perf record -F 999 -g -o "$work/perf.data" -q --
        # pid[backlog] is perf; tern is its only child
        tpid=$(cat "/proc/${pid[backlog]}/task/${pid[backlog]}/children" 2>/dev/null | cut -d' ' -f1)
        [ -n "$tpid" ] && kill -TERM "$tpid"
        stop backlog
        echo
        echo "perf of a backlog start-up (self time, top 25):"
        echo '```'
        perf report -i "$work/perf.data" --no-children --sort dso,symbol -g none --stdio 2>/dev/null |
            grep -v '^#' | grep '%' | sed 's/ *- *- *$//' | head -25 || true
        echo '```'
    else
        note "PROFILE=1: perf not installed"
    fi
fi

# ---- phase 4: local delivery, empty and backlog alternated -------------------------------
cat >"$work/measure.py" <<'PY'
# measure.py MAILDIR_NEW N TIMEOUT -- smtp-source ...: time from the start of
# the command until N more files are in MAILDIR_NEW; prints messages/second.
import os, subprocess, sys, time
path, n, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def count():
    try:
        return sum(1 for _ in os.scandir(path))
    except FileNotFoundError:
        return 0
target = count() + n
t0 = time.monotonic()
src = subprocess.Popen(sys.argv[5:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
deadline = t0 + timeout
while count() < target and time.monotonic() < deadline:
    time.sleep(0.01)
t1 = time.monotonic()
got = n - (target - count())
try:
    err = src.communicate(timeout=max(1.0, deadline - time.monotonic()))[1]
except subprocess.TimeoutExpired:
    src.kill()
    err = src.communicate()[1]
if got < n:
    sys.stderr.write("timeout: %d of %d in %.0f s; smtp-source: %s\n" % (got, n, timeout, err.decode(errors="replace").strip()))
    print("nan")
elif src.returncode != 0:
    sys.stderr.write("smtp-source exit %d: %s\n" % (src.returncode, err.decode(errors="replace").strip()))
    print("nan")
else:
    print("%.1f" % (n / (t1 - t0)))
PY
declare -A rate starts runcpu runatt settled
settle() { # $1 server: 2 s, then (bounded) until the retries that fell due while it was
    # down have been made: attempts over the last second back to the trickle's pace
    local s=$1 i a b limit=$((2 * N / SPREAD + 5))
    sleep 2
    a=$(attempts "${dir[$s]}/serve.log")
    for ((i = 0; i < SETTLE_MAX; i++)); do
        sleep 1
        b=$(attempts "${dir[$s]}/serve.log")
        [ $((b - a)) -le "$limit" ] && break
        a=$b
    done
    settled[$s]+="$((i + 2)) "
}
measure() { # $1 server, $2 messages
    local s=$1
    python3 "$work/measure.py" "${dir[$s]}/data/mail/example.test/user/Maildir/new" "$2" "$RUN_TIMEOUT" -- \
        "$SOURCE" -s "$SESSIONS" -m "$2" -l "$SIZE" -f a@remote.test -t user@example.test 127.0.0.1:"${port[$s]}"
}
note "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
for run in $(seq "$RUNS"); do
    for s in empty backlog; do
        rm -rf "${dir[$s]}/data/mail/example.test/user/Maildir/new"
        start "$s"
        starts[$s]+="${start_ms[$s]} "
        settle "$s"
        measure "$s" 20 >/dev/null 2>"$work/measure.err" # warm-up, not timed
        sync # the previous run's files reach the disk before this one, not during it
        c0=$(cpu_ms "${pid[$s]}") a0=$(attempts "${dir[$s]}/serve.log")
        r=$(measure "$s" "$MESSAGES" 2>"$work/measure.err")
        c=$(($(cpu_ms "${pid[$s]}") - c0)) a=$(($(attempts "${dir[$s]}/serve.log") - a0))
        note "$s run $run: start ${start_ms[$s]} ms, $r msg/s, server CPU $c ms, $a retries during the run $(cat "$work/measure.err")"
        rate[$s]+="$r "
        runcpu[$s]+="$c "
        runatt[$s]+="$a "
        stop "$s"
    done
done
note "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- phase 5: the scheduler alone ------------------------------------------------------
sched_out=""
if [ "$SCHED_BENCH" = 1 ]; then
    sb=$(dirname "$TERN")/schedule-bench
    if [ ! -x "$sb" ]; then
        sb=$work/schedule-bench
        cc -O2 -std=c11 -D_GNU_SOURCE -I"$SRC_DIR/src" "$SRC_DIR/bench/schedule-bench.c" \
            "$SRC_DIR/src/queue/schedule.c" "$SRC_DIR/src/core/log.c" -o "$sb" 2>"$work/cc.log" ||
            { note "schedule-bench did not build: $(head -5 "$work/cc.log")"; sb=""; }
    fi
    [ -n "$sb" ] && sched_out=$(timeout 300 "$sb" 100000 1000000 || true)
fi

# ---- report ---------------------------------------------------------------------------
kb_per_item() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN {printf "%.0f", (b - a) * 1024 / n}'; }
med_e=$(echo "${rate[empty]}" | median) med_b=$(echo "${rate[backlog]}" | median)
ratio=$(awk -v a="$med_b" -v b="$med_e" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "-"; else printf "%.2f", a / b }')
echo
echo "tern serve with $N queued items (envelope version $ENV_VERSION) to $DOMAINS dead domain(s) ($spool_mb MiB spool, generated in $((gen_ms / 1000)) s + sync $((sync_ms / 1000)) s);"
echo "$(nproc) CPUs, $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| measure | empty queue | $N items | per item / ratio | goal |"
echo "| --- | --- | --- | --- | --- |"
echo "| start-up, exec to \"ready\" (warm cache) | ${start_ms[empty]} ms | $warm_start ms (listening after $warm_listen ms, recovery $warm_recover ms) | $(awk -v a="$warm_recover" -v n="$N" 'BEGIN {printf "%.1f µs", a * 1000 / n}') | < 5 s |"
echo "| start-up, restarts before each delivery run | $(echo ${starts[empty]} | tr ' ' '/') ms | $(echo ${starts[backlog]} | tr ' ' '/') ms | | |"
echo "| start-up, cold page cache | | $cold | | |"
echo "| RSS 2 s after ready | ${rss[empty]} KiB | ${rss[backlog]} KiB | $(kb_per_item "${rss[empty]}" "${rss[backlog]}") B | |"
echo "| PSS 2 s after ready | ${pss[empty]} KiB | ${pss[backlog]} KiB | $(kb_per_item "${pss[empty]}" "${pss[backlog]}") B | |"
echo "| peak RSS (VmHWM) | ${hwm[empty]} KiB | ${hwm[backlog]} KiB | $(kb_per_item "${hwm[empty]}" "${hwm[backlog]}") B | |"
echo "| CPU with nothing due (over ${idle_len[empty]} s / ${idle_len[backlog]} s) | ${idle_cpu[empty]} ms (${idle_att[empty]} attempts) | ${idle_cpu[backlog]} ms (${idle_att[backlog]} attempts) | | ~0 |"
echo "| CPU over ${trickle_s} s of retries | | $trickle_cpu ms, $trickle_att attempts | $(awk -v c="$trickle_cpu" -v a="$trickle_att" 'BEGIN { if (a > 0) printf "%.2f ms/attempt", c / a; else print "-" }') | |"
echo "| local delivery msg/s, median of $RUNS | $med_e ($(echo ${rate[empty]} | tr ' ' '/')) | $med_b ($(echo ${rate[backlog]} | tr ' ' '/')) | $ratio | ≥ 0.9 |"
echo "| server CPU ms per delivery run | $(echo ${runcpu[empty]} | tr ' ' '/') | $(echo ${runcpu[backlog]} | tr ' ' '/') | | |"
echo "| retries during each delivery run | $(echo ${runatt[empty]} | tr ' ' '/') | $(echo ${runatt[backlog]} | tr ' ' '/') | | |"
echo "| s waited after start for overdue retries | $(echo ${settled[empty]} | tr ' ' '/') | $(echo ${settled[backlog]} | tr ' ' '/') | | |"
echo
echo "local delivery: smtp-source -s $SESSIONS -m $MESSAGES -l $SIZE to user@example.test (Maildir), until the last file is in new/"
if [ -n "$sched_out" ]; then
    echo
    echo "scheduler alone (bench/schedule-bench.c, no I/O; 1000 destinations, per_dest 4, max_inflight 16):"
    echo
    echo "$sched_out"
fi
exit 0
