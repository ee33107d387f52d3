#!/usr/bin/env bash
# bench/sink.sh - `tern sink` side by side with Postfix's smtp-sink, both
# driven by Postfix's smtp-source on loopback (see /work/shared/ANCHORS.md).
#
#   bench/sink.sh [path/to/tern]        (default build/tern)
#
# Scenarios: 10 sessions x 1 KiB, 1 session x 1 KiB, 10 sessions x 100 KiB;
# one connection per message (smtp-source's default).  Each is run RUNS times
# (default 3), alternating the two servers, and the median rate is reported.
# tern sink runs in several modes (VARIANTS, default all four):
#   api-off  --http none (the figures of issue 2)
#   idle     the HTTP listener on, serving the API and the web inbox, no client
#   sse      the same with one SSE client (curl -N .../api/events) connected,
#            started and stopped by PID; it must have received one "new"
#            event per message
#   store    --store DIR on this machine's disk (no fsync; tmp + rename)
# Also: server CPU per message (from /proc/PID/stat), tern sink's peak RSS
# (VmHWM) over the api-off runs, and the memory held per stored message
# (RSS growth of a sink that keeps everything, against the bytes it stores).
#
# Prints a Markdown table on stdout; progress on stderr.  Every client run is
# bounded by `timeout`; the whole takes about 1.5 minutes on 2 cores with the
# default RUNS=3 (2 with RUNS=5).  Only the processes this script starts are
# stopped, by PID.
set -euo pipefail

TERN=${1:-build/tern}
RUNS=${RUNS:-3}
SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
PSINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
RUN_TIMEOUT=60
VARIANTS=${VARIANTS:-api-off idle sse store}

# name sessions messages length
SCENARIOS=(
    "10 sessions, 1 KiB|10|4000|1024"
    "1 session, 1 KiB|1|2000|1024"
    "10 sessions, 100 KiB|10|1500|102400"
)
MEM_WARMUP=500
MEM_MESSAGES=5000

die() {
    echo "bench/sink.sh: $*" >&2
    exit 1
}
say() { echo "$*" >&2; }

[[ -x $TERN ]] || die "$TERN: no tern binary (build it, or pass its path as \$1)"
[[ -x $SOURCE ]] || die "$SOURCE not found (apt-get install postfix)"
[[ -x $PSINK ]] || die "$PSINK not found (apt-get install postfix)"
command -v curl >/dev/null || die "curl not found"
command -v python3 >/dev/null || die "python3 not found"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CLK_TCK=$(getconf CLK_TCK)

# CPU time (utime + stime) of a process, in milliseconds.
cpu_ms() {
    awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); print int(($12 + $13) * 1000 / hz) }' "/proc/$1/stat"
}

status_kb() { # PID FIELD -> kB
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# Start tern sink with port-0 listeners; sets TERN_PID, TERN_PORT, TERN_HTTP.
start_tern() { # LOG ARGS...
    local log=$1
    shift
    "$TERN" sink --smtp 127.0.0.1:0 "$@" 2>"$log" &
    TERN_PID=$!
    PIDS+=("$TERN_PID")
    local i
    for ((i = 0; i < 200; i++)); do
        grep -q 'sink info: ready:' "$log" 2>/dev/null && break
        kill -0 "$TERN_PID" 2>/dev/null || die "tern sink did not start: $(cat "$log")"
        sleep 0.05
    done
    TERN_PORT=$(sed -n 's/.*sink info: smtp listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
    TERN_HTTP=$(sed -n 's/.*sink info: http listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
    [[ -n $TERN_PORT ]] || die "no smtp port in the tern sink log: $(cat "$log")"
}

stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Start smtp-sink; sets PSINK_PID, PSINK_PORT.  It cannot report a port-0 bind,
# so take a free port and retry on the (unlikely) race.
start_psink() {
    local i user=()
    [[ $(id -u) -eq 0 ]] && user=(-u nobody)
    for _ in 1 2 3 4 5; do
        PSINK_PORT=$(free_port)
        "$PSINK" "${user[@]}" "127.0.0.1:$PSINK_PORT" 1000 >/dev/null 2>"$WORK/psink.log" &
        PSINK_PID=$!
        for ((i = 0; i < 100; i++)); do
            if ! kill -0 "$PSINK_PID" 2>/dev/null; then
                break
            fi
            if (exec 3<>"/dev/tcp/127.0.0.1/$PSINK_PORT") 2>/dev/null; then
                PIDS+=("$PSINK_PID")
                return 0
            fi
            sleep 0.05
        done
        stop_pid "$PSINK_PID"
    done
    die "smtp-sink did not start: $(cat "$WORK/psink.log")"
}

# One smtp-source run; prints "RATE CPU_MS" (messages/s, server CPU ms used).
run_source() { # PORT SERVER_PID SESSIONS MESSAGES LENGTH
    local port=$1 pid=$2 s=$3 m=$4 l=$5 t0 t1 c0 c1
    c0=$(cpu_ms "$pid")
    t0=$(date +%s%N)
    timeout "$RUN_TIMEOUT" "$SOURCE" -s "$s" -m "$m" -l "$l" -f bench@example.com \
        -t sink@example.net "127.0.0.1:$port" >"$WORK/source.out" 2>&1 ||
        die "smtp-source failed against port $port: $(tail -3 "$WORK/source.out")"
    t1=$(date +%s%N)
    c1=$(cpu_ms "$pid")
    awk -v m="$m" -v ns=$((t1 - t0)) -v cpu=$((c1 - c0)) 'BEGIN { printf "%.1f %d\n", m / (ns / 1e9), cpu }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ---- throughput --------------------------------------------------------------

start_psink
say "smtp-sink pid $PSINK_PID port $PSINK_PORT; $RUNS runs; modes: $VARIANTS"
run_source "$PSINK_PORT" "$PSINK_PID" 5 200 1024 >/dev/null

SSE_PID=
ROWS=()
SSE_NOTE=""
for variant in $VARIANTS; do
    args=(--quiet --max-messages 1000)
    case $variant in
    api-off) args+=(--http none) ;;
    idle | sse) args+=(--http 127.0.0.1:0) ;;
    store)
        rm -rf "$WORK/store"
        args+=(--http none --store "$WORK/store")
        ;;
    *) die "unknown mode $variant (VARIANTS: api-off idle sse store)" ;;
    esac
    start_tern "$WORK/tern-$variant.log" "${args[@]}"
    say "mode $variant: tern sink pid $TERN_PID port $TERN_PORT"
    if [[ $variant == sse ]]; then
        [[ -n $TERN_HTTP ]] || die "no http port in the tern sink log"
        curl -sN -o "$WORK/sse.out" "http://127.0.0.1:$TERN_HTTP/api/events" &
        SSE_PID=$!
        PIDS+=("$SSE_PID")
        for ((i = 0; i < 100; i++)); do
            [[ -s $WORK/sse.out ]] && break
            kill -0 "$SSE_PID" 2>/dev/null || die "the SSE client (curl) exited: is GET /api/events served?"
            sleep 0.05
        done
        kill -0 "$SSE_PID" 2>/dev/null || die "the SSE client (curl) exited"
    fi
    # warm up (page faults, first allocations) outside the measurement
    run_source "$TERN_PORT" "$TERN_PID" 5 200 1024 >/dev/null
    sent=200
    for sc in "${SCENARIOS[@]}"; do
        IFS='|' read -r name sess msgs len <<<"$sc"
        : >"$WORK/tern.rates"
        : >"$WORK/psink.rates"
        tcpu=0
        pcpu=0
        for ((r = 1; r <= RUNS; r++)); do
            read -r rate cpu < <(run_source "$TERN_PORT" "$TERN_PID" "$sess" "$msgs" "$len")
            echo "$rate" >>"$WORK/tern.rates"
            tcpu=$((tcpu + cpu))
            sent=$((sent + msgs))
            say "  $variant, $name, run $r: tern sink $rate msg/s"
            read -r rate cpu < <(run_source "$PSINK_PORT" "$PSINK_PID" "$sess" "$msgs" "$len")
            echo "$rate" >>"$WORK/psink.rates"
            pcpu=$((pcpu + cpu))
            say "  $variant, $name, run $r: smtp-sink $rate msg/s"
        done
        t=$(median <"$WORK/tern.rates")
        p=$(median <"$WORK/psink.rates")
        ROWS+=("$(awk -v v="$variant" -v n="$name" -v m="$msgs" -v t="$t" -v p="$p" -v tc="$tcpu" -v pc="$pcpu" -v runs="$RUNS" \
            'BEGIN { printf "| %s | %s | %d | %.0f | %.0f | %.2f | %.3f | %.3f |", v, n, m, t, p, t / p,
                     tc / (m * runs), pc / (m * runs) }')")
    done
    if [[ $variant == api-off ]]; then
        TERN_HWM=$(status_kb "$TERN_PID" VmHWM)
        TERN_RSS_END=$(status_kb "$TERN_PID" VmRSS)
    fi
    if [[ $variant == sse ]]; then
        sleep 0.2
        kill -0 "$SSE_PID" 2>/dev/null || die "the SSE client (curl) was disconnected during the runs"
        events=$(grep -c '"new"\|^event: new' "$WORK/sse.out" || true)
        stop_pid "$SSE_PID"
        SSE_NOTE="- SSE client: connected through all runs, received $events \"new\" events for $sent messages"
        say "$SSE_NOTE"
    fi
    if [[ $variant == store ]]; then
        nfiles=$(find "$WORK/store" -name '*.eml' | wc -l)
        STORE_NOTE="- --store: $nfiles .eml files left in the directory at the end (--max-messages 1000; dropped ones are deleted)"
    fi
    stop_pid "$TERN_PID"
done
stop_pid "$PSINK_PID"

# ---- memory per stored message ----------------------------------------------------

start_tern "$WORK/mem.log" --quiet --http 127.0.0.1:0 --max-messages 1000000 --max-memory 4G
stored_bytes() {
    curl -fsS "http://127.0.0.1:$TERN_HTTP/api/stats" |
        python3 -c 'import json, sys; j = json.load(sys.stdin); print(j["stored"], j["stored_bytes"])'
}
run_source "$TERN_PORT" "$TERN_PID" 10 "$MEM_WARMUP" 1024 >/dev/null
read -r n0 b0 < <(stored_bytes)
rss0=$(status_kb "$TERN_PID" VmRSS)
run_source "$TERN_PORT" "$TERN_PID" 10 "$MEM_MESSAGES" 1024 >/dev/null
read -r n1 b1 < <(stored_bytes)
rss1=$(status_kb "$TERN_PID" VmRSS)
stop_pid "$TERN_PID"
[[ $((n1 - n0)) -eq $MEM_MESSAGES ]] || die "memory run stored $((n1 - n0)) messages, expected $MEM_MESSAGES"

# ---- report -------------------------------------------------------------------------

commit=$(git -C "$(dirname "$0")/.." rev-parse --short HEAD 2>/dev/null || echo "?")
echo "## tern sink vs Postfix smtp-sink ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, commit $commit)"
echo
echo "smtp-source on loopback, one connection per message; medians of $RUNS runs; msg/s."
echo
echo "| tern mode | scenario | messages/run | tern sink msg/s | smtp-sink msg/s | tern / smtp-sink | tern CPU ms/msg | smtp-sink CPU ms/msg |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${ROWS[@]}"
echo
[[ -n $SSE_NOTE ]] && echo "$SSE_NOTE"
[[ -n ${STORE_NOTE:-} ]] && echo "$STORE_NOTE"
[[ -n ${TERN_HWM:-} ]] && awk -v hwm="$TERN_HWM" -v rss="$TERN_RSS_END" 'BEGIN {
    printf "- tern sink peak RSS (VmHWM) over the throughput runs (--max-messages 1000): %.1f MiB (%.1f MiB at the end)\n",
           hwm / 1024, rss / 1024 }'
awk -v n="$MEM_MESSAGES" -v r0="$rss0" -v r1="$rss1" -v b0="$b0" -v b1="$b1" 'BEGIN {
    per = (r1 - r0) * 1024 / n; data = (b1 - b0) / n
    printf "- memory held per stored message (%d messages of ~1 KiB kept): %.0f bytes RSS per message, of which %.0f message data, %.0f overhead\n",
           n, per, data, per - data }'
