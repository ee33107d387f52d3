#!/usr/bin/env bash
# bench/relay.sh - relay throughput of tern serve, Postfix, chasquid and
# OpenSMTPD, side by side in one run (issue 5, "Benchmark").
#
# Postfix's smtp-source sends messages (10 sessions, one message per
# connection) into the server under test, which relays every one to Postfix's
# smtp-sink as the next hop.  A run is timed from the start of smtp-source
# until smtp-sink has received the last message (its -c counter, which counts
# each "." at the end of DATA, so the count is exact).  1 KiB and 100 KiB
# payloads; the median of RUNS runs, messages/second, and the ratio to tern.
# Runs are interleaved (run 1 of every server, then run 2, ...) so that drift
# of the machine affects all servers alike.
#
# Durability as shipped (see ../shared/ANCHORS.md): tern and Postfix fsync
# before their 250; chasquid 1.11 and OpenSMTPD 6.8 do not fsync their queue.
# Relay path: Postfix and OpenSMTPD relay for 127.0.0.0/8 (mynetworks, "from
# local") to x@relay.test; tern and chasquid relay only for authenticated
# clients, which smtp-source is not, so they receive u@local.test whose alias
# is x@relay.test (one lookup more for them, and the same relay work).
# Postfix: a private instance (own config, queue and data folders, no chroot,
# smtpd_peername_lookup = no) with a transport map relay.test ->
# smtp:[127.0.0.1]:SINK; chasquid: its test-only outgoing port flag and an MX
# record from dnsmasq; OpenSMTPD: "relay host smtp://127.0.0.1:SINK"; tern:
# [remote] routes = relay.test=[127.0.0.1]:SINK, other settings at defaults.
#
# Everything runs in a private network and mount namespace (unshare -n -m,
# needs root) with a dnsmasq on its own loopback for chasquid's MX lookups and
# OpenSMTPD's paths bind-mounted there; nothing on the host changes.  Without
# the namespace tern and Postfix still run; chasquid and OpenSMTPD are skipped.
# chasquid and OpenSMTPD come from their Debian packages, extracted (never
# installed; OpenSMTPD conflicts with postfix) into $RELAY_BENCH_CACHE.
#
#   bench/relay.sh [path/to/tern] [1KiB-messages] [100KiB-messages] [runs]
#   env: SERVERS="tern postfix chasquid opensmtpd"  SESSIONS=10
#        SLOW_DIV=10 (OpenSMTPD gets 1/SLOW_DIV of the messages: it relays
#        about 14 msg/s here)  RUN_TIMEOUT=120 (seconds per run)
#        TERN_REMOTE="per_destination = 16" (extra lines for tern's [remote])
#        RELAY_BENCH_KEEP=1 (keep the work folder with every server's log)
set -euo pipefail

TERN=$(realpath "${1:-build/tern}")
SMALL=${2:-5000}
LARGE=${3:-500}
RUNS=${4:-3}
SERVERS=${SERVERS:-tern postfix chasquid opensmtpd}
SESSIONS=${SESSIONS:-10}
SLOW_DIV=${SLOW_DIV:-10}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
TERN_REMOTE=${TERN_REMOTE:-}
CACHE=${RELAY_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tern-bench}
SINK=/usr/sbin/smtp-sink
SOURCE=/usr/sbin/smtp-source

die() { echo "bench/relay.sh: $*" >&2; exit 2; }
note() { echo "# $*" >&2; }
for b in "$TERN" "$SINK" "$SOURCE"; do
    [ -x "$b" ] || die "$b not found (make build; scripts/install-deps)"
done

# Extract a Debian package once into the cache; prints the folder.
extract() { # $1 = package
    local dir=$CACHE/$1
    if [ ! -d "$dir/usr" ]; then
        mkdir -p "$CACHE"
        (cd "$CACHE" && rm -f "$1"_*.deb && apt-get download "$1" >/dev/null 2>&1) || return 1
        rm -rf "$dir.tmp" && dpkg-deb -x "$CACHE/$1"_*.deb "$dir.tmp" && mv "$dir.tmp" "$dir" || return 1
    fi
    echo "$dir"
}

# Fetch them now: the namespace has no network.
if [ -z "${RELAY_BENCH_NS:-}" ]; then
    for s in $SERVERS; do
        case $s in chasquid | opensmtpd) extract "$s" >/dev/null || note "apt-get download $s failed" ;; esac
    done
fi

# ---- a private network + mount namespace ---------------------------------------
if [ -z "${RELAY_BENCH_NS:-}" ]; then
    if [ "$(id -u)" -eq 0 ] && unshare -n -m true 2>/dev/null; then
        export RELAY_BENCH_NS=1 SERVERS SESSIONS SLOW_DIV RUN_TIMEOUT TERN_REMOTE RELAY_BENCH_CACHE="$CACHE" RELAY_BENCH_KEEP
        exec unshare -n -m "$(realpath "$0")" "$TERN" "$SMALL" "$LARGE" "$RUNS"
    fi
    RELAY_BENCH_NS=0
    note "no network namespace (needs root and unshare): chasquid and OpenSMTPD are skipped"
fi
[ "$RELAY_BENCH_NS" = 1 ] && ip link set lo up

work=$(mktemp -d "${TMPDIR:-/tmp}/tern-relay-bench.XXXXXX")
chmod 755 "$work" # Postfix's daemons run as user postfix
pids=()           # every process we start, stopped by PID at exit
pf_etc=""
cleanup() {
    set +e
    [ -n "$pf_etc" ] && postfix -c "$pf_etc" stop >/dev/null 2>&1
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    if [ -n "$pf_etc" ]; then # the master's children: processes with our MAIL_CONFIG
        for _ in $(seq 100); do
            left=$(grep -las "MAIL_CONFIG=$pf_etc" /proc/[0-9]*/environ | cut -d/ -f3)
            [ -z "$left" ] && break
            sleep 0.1
        done
        [ -n "$left" ] && kill -9 $left 2>/dev/null
    fi
    if [ -n "${RELAY_BENCH_KEEP:-}" ]; then echo "# logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # $1 = port: until something answers with a 220 greeting
    for _ in $(seq 200); do
        if python3 - "$1" 2>/dev/null <<'PY'; then return 0; fi
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
sys.exit(0 if s.recv(512).startswith(b"220") else 1)
PY
        sleep 0.1
    done
    return 1
}

# ---- the next hop: smtp-sink with its running counter ---------------------------
sink_port=$(free_port)
user=()
[ "$(id -u)" -eq 0 ] && user=(-u nobody)
"$SINK" "${user[@]}" -c 127.0.0.1:"$sink_port" 1024 >"$work/sink.count" 2>"$work/sink.err" &
pids+=($!)
wait_port "$sink_port" || die "smtp-sink did not start: $(cat "$work/sink.err")"

# measure.py SINK_COUNT N TIMEOUT -- smtp-source ...: time from the start of the
# command until the sink's counter has grown by N; prints messages/second.
cat >"$work/measure.py" <<'PY'
import os, re, subprocess, sys, time
path, n, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
cmd = sys.argv[5:]
f = open(path, "rb")
rx = re.compile(rb"mesg=(\d+)")
state = {"partial": b"", "count": 0}
def count():
    data = state["partial"] + f.read()
    records = data.split(b"\r")        # smtp-sink -c ends each update with \r
    state["partial"] = records.pop()   # an incomplete record waits for the next read
    for rec in reversed(records):
        m = rx.search(rec)
        if m:
            state["count"] = int(m.group(1))
            break
    return state["count"]
target = count() + n
t0 = time.monotonic()
src = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
deadline = t0 + timeout
t_src = None  # when smtp-source had handed over its last message (accept time)
while count() < target and time.monotonic() < deadline:
    if t_src is None and src.poll() is not None:
        t_src = time.monotonic()
    time.sleep(0.005)
t1 = time.monotonic()
got = n - (target - count())
try:
    err = src.communicate(timeout=max(1.0, deadline - time.monotonic()))[1]
except subprocess.TimeoutExpired:
    src.kill()
    err = src.communicate()[1]
if t_src is None:  # smtp-source ended after the sink had the last message
    t_src = time.monotonic()
if got < n:
    sys.stderr.write("timeout: %d of %d messages in %.0f s; smtp-source: %s\n" % (got, n, timeout, err.decode(errors="replace").strip()))
    print("nan")
    sys.exit(0)
if src.returncode != 0:
    sys.stderr.write("smtp-source exit %d: %s\n" % (src.returncode, err.decode(errors="replace").strip()))
sys.stderr.write("smtp-source done at %.0f msg/s, " % (n / (t_src - t0)))
print("%.1f" % (n / (t1 - t0)))
PY

# ---- DNS for chasquid's MX lookups (inside the namespace only) ----------------------
if [ "$RELAY_BENCH_NS" = 1 ] && command -v dnsmasq >/dev/null; then
    dnsmasq --keep-in-foreground --conf-file=/dev/null --pid-file= --port=53 \
        --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
        --local=/test/ --local=/in-addr.arpa/ --mx-host=relay.test,mx.relay.test,10 \
        --host-record=mx.relay.test,127.0.0.1 --host-record=localhost,127.0.0.1 \
        2>"$work/dnsmasq.log" &
    pids+=($!)
    echo "nameserver 127.0.0.1" >"$work/resolv.conf"
    mount --bind "$work/resolv.conf" /etc/resolv.conf
    have_dns=1
else
    have_dns=0
fi

# ---- the servers ------------------------------------------------------------------
declare -A port rcpt why durable

start_tern() {
    local d=$work/tern
    mkdir -p "$d/data/domains/local.test"
    echo "u: x@relay.test" >"$d/data/domains/local.test/aliases"
    port[tern]=$(free_port)
    chmod 755 "$work" "$d" # as root, tern serve runs as nobody after binding
    cat >"$d/tern.conf" <<EOF
[server]
hostname = mx.tern.test
data_dir = data
$([ "$(id -u)" -eq 0 ] && echo "user = nobody")
# every load client is 127.0.0.1: no per-client limits (the other servers have none)
max_sessions_per_ip = 0
max_connect_rate_per_ip = 0
[listen]
smtp = 127.0.0.1:${port[tern]}
[queue]
delay_warning = off
[local]
delivery = maildir
[remote]
routes = relay.test=[127.0.0.1]:$sink_port
$TERN_REMOTE
EOF
    "$TERN" check-config --config "$d/tern.conf" >"$d/check.log" 2>&1 || {
        why[tern]="check-config: $(cat "$d/check.log")"
        return 1
    }
    "$TERN" serve --config "$d/tern.conf" >"$d/serve.log" 2>&1 &
    pids+=($!)
    rcpt[tern]=u@local.test
    durable[tern]="fsync before 250"
    wait_port "${port[tern]}" || { why[tern]="did not start: $(tail -5 "$d/serve.log")"; return 1; }
}

start_postfix() {
    local d=$work/postfix
    [ "$(id -u)" -eq 0 ] || { why[postfix]="needs root"; return 1; }
    command -v postfix >/dev/null || { why[postfix]="not installed"; return 1; }
    mkdir -p "$d/etc" "$d/spool" "$d/data"
    chown postfix:postfix "$d/data"
    port[postfix]=$(free_port)
    cat >"$d/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $d/spool
data_directory = $d/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.postfix.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = $d/postfix.log
maillog_file_prefixes = $d
transport_maps = hash:$d/etc/transport
alias_maps =
alias_database =
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
biff = no
EOF
    # own listener; no chroot (the private queue is not set up as a jail)
    cat >"$d/etc/master.cf" <<EOF
127.0.0.1:${port[postfix]} inet n - n - - smtpd
pickup     unix n - n 60 1 pickup
cleanup    unix n - n - 0 cleanup
qmgr       unix n - n 300 1 qmgr
tlsmgr     unix - - n 1000? 1 tlsmgr
rewrite    unix - - n - - trivial-rewrite
bounce     unix - - n - 0 bounce
defer      unix - - n - 0 bounce
trace      unix - - n - 0 bounce
verify     unix - - n - 1 verify
flush      unix n - n 1000? 0 flush
proxymap   unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp       unix - - n - - smtp
relay      unix - - n - - smtp
showq      unix n - n - - showq
error      unix - - n - - error
retry      unix - - n - - error
discard    unix - - n - - discard
anvil      unix - - n - 1 anvil
scache     unix - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
EOF
    echo "relay.test smtp:[127.0.0.1]:$sink_port" >"$d/etc/transport"
    postmap -c "$d/etc" "$d/etc/transport"
    pf_etc=$d/etc
    if ! postfix -c "$d/etc" start >"$d/start.log" 2>&1; then
        why[postfix]="did not start: $(cat "$d/start.log") $(tail -5 "$d/postfix.log" 2>/dev/null)"
        return 1
    fi
    rcpt[postfix]=x@relay.test
    durable[postfix]="fsync before 250"
    wait_port "${port[postfix]}" || { why[postfix]="not answering: $(tail -5 "$d/postfix.log")"; return 1; }
}

start_chasquid() {
    local d=$work/chasquid x
    [ "$have_dns" = 1 ] || { why[chasquid]="needs the namespace with dnsmasq for its MX lookup"; return 1; }
    x=$(extract chasquid) || { why[chasquid]="apt-get download chasquid failed"; return 1; }
    mkdir -p "$d/etc/domains/local.test" "$d/etc/certs" "$d/data"
    echo "u: x@relay.test" >"$d/etc/domains/local.test/aliases"
    mkdir -p "$d/etc/certs/mx.chasquid.test" # it will not start without a certificate
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -keyout "$d/etc/certs/mx.chasquid.test/privkey.pem" \
        -out "$d/etc/certs/mx.chasquid.test/fullchain.pem" -subj /CN=mx.chasquid.test 2>/dev/null
    port[chasquid]=$(free_port)
    cat >"$d/etc/chasquid.conf" <<EOF
hostname: "mx.chasquid.test"
smtp_address: "127.0.0.1:${port[chasquid]}"
submission_address: "127.0.0.1:$(free_port)"
submission_over_tls_address: "127.0.0.1:$(free_port)"
data_dir: "$d/data"
mail_log_path: "$d/mail.log"
EOF
    "$x/usr/bin/chasquid" -config_dir "$d/etc" -testing__outgoing_smtp_port "$sink_port" \
        -logfile "$d/chasquid.log" >"$d/stderr.log" 2>&1 &
    pids+=($!)
    rcpt[chasquid]=u@local.test
    durable[chasquid]="no fsync (rename only)"
    wait_port "${port[chasquid]}" || {
        why[chasquid]="did not start: $(tail -5 "$d/chasquid.log" "$d/stderr.log")"
        return 1
    }
}

start_opensmtpd() {
    local d=$work/opensmtpd x
    [ "$RELAY_BENCH_NS" = 1 ] || { why[opensmtpd]="needs the mount namespace for its fixed paths"; return 1; }
    x=$(extract opensmtpd) || { why[opensmtpd]="apt-get download opensmtpd failed"; return 1; }
    mkdir -p "$d/varlib/opensmtpd/empty" "$d/spool" "$d/run"
    chmod 755 "$d/varlib" "$d/varlib/opensmtpd" "$d/varlib/opensmtpd/empty" "$d/spool"
    # its users, in copies of passwd/group bind-mounted in its own mount namespace
    cp /etc/passwd "$d/passwd" && cp /etc/group "$d/group"
    getent passwd opensmtpd >/dev/null || echo "opensmtpd:x:64990:64990::/var/lib/opensmtpd/empty:/usr/sbin/nologin" >>"$d/passwd"
    getent passwd opensmtpq >/dev/null || echo "opensmtpq:x:64991:64991::/var/lib/opensmtpd/empty:/usr/sbin/nologin" >>"$d/passwd"
    getent group opensmtpd >/dev/null || echo "opensmtpd:x:64990:" >>"$d/group"
    getent group opensmtpq >/dev/null || echo "opensmtpq:x:64991:" >>"$d/group"
    port[opensmtpd]=$(free_port)
    cat >"$d/smtpd.conf" <<EOF
listen on 127.0.0.1 port ${port[opensmtpd]} hostname mx.opensmtpd.test
action "relay" relay host smtp://127.0.0.1:$sink_port
match from local for domain "relay.test" action "relay"
EOF
    unshare -m sh -c '
        d=$1; x=$2
        mount --bind "$d/varlib" /var/lib && mount --bind "$d/spool" /var/spool &&
        mount --bind "$d/run" /run && mount --bind "$d/passwd" /etc/passwd &&
        mount --bind "$d/group" /etc/group &&
        exec "$x/usr/sbin/smtpd" -d -f "$d/smtpd.conf"' sh "$d" "$x" >"$d/smtpd.log" 2>&1 &
    pids+=($!)
    rcpt[opensmtpd]=x@relay.test
    durable[opensmtpd]="no fsync (rename only)"
    wait_port "${port[opensmtpd]}" || { why[opensmtpd]="did not start: $(tail -5 "$d/smtpd.log")"; return 1; }
}

active=()
for s in $SERVERS; do
    if "start_$s"; then
        active+=("$s")
    else
        note "$s skipped: ${why[$s]}"
    fi
done
[ "${#active[@]}" -gt 0 ] || die "no server started"

msgs_for() { # $1 server, $2 size class -> message count
    local n
    if [ "$2" = small ]; then n=$SMALL; else n=$LARGE; fi
    [ "$1" = opensmtpd ] && n=$(((n + SLOW_DIV - 1) / SLOW_DIV))
    echo "$n"
}
bytes_for() { if [ "$1" = small ]; then echo 1024; else echo 102400; fi; }

measure() { # $1 server, $2 size class, $3 messages
    python3 "$work/measure.py" "$work/sink.count" "$3" "$RUN_TIMEOUT" -- \
        "$SOURCE" -s "$SESSIONS" -m "$3" -l "$(bytes_for "$2")" -f s@src.test \
        -t "${rcpt[$1]}" 127.0.0.1:"${port[$1]}"
}

# Warm-up (not timed): processes started, caches filled, first connection made.
for s in "${active[@]}"; do
    r=$(measure "$s" small 20 2>"$work/measure.err")
    [ "$r" = nan ] && note "$s: warm-up did not reach the sink"
done

declare -A res
note "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
for size in small large; do
    for run in $(seq "$RUNS"); do
        for s in "${active[@]}"; do
            n=$(msgs_for "$s" "$size")
            r=$(measure "$s" "$size" "$n" 2>"$work/measure.err")
            note "$s $(bytes_for "$size") bytes run $run: $n messages, $(cat "$work/measure.err")$r msg/s end-to-end"
            res[$s.$size]+="$r "
            sleep 1
        done
    done
done

note "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "nan")}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "-"; else printf "%.2f", a / b }'; }

echo
echo "relay throughput, smtp-source ($SESSIONS sessions, one message per connection) -> server -> smtp-sink;"
echo "messages/second until the last message reached smtp-sink, median of $RUNS (all runs in brackets);"
echo "$SMALL x 1 KiB and $LARGE x 100 KiB per run (OpenSMTPD: 1/$SLOW_DIV of that)"
echo
echo "| server | durability | 1 KiB msg/s | tern / it | 100 KiB msg/s | tern / it |"
echo "| --- | --- | --- | --- | --- | --- |"
declare -A med
for s in "${active[@]}"; do
    for size in small large; do
        med[$s.$size]=$(echo "${res[$s.$size]}" | median)
    done
done
for s in "${active[@]}"; do
    printf "| %s | %s | %s (%s) | %s | %s (%s) | %s |\n" "$s" "${durable[$s]}" \
        "${med[$s.small]}" "$(echo ${res[$s.small]} | tr ' ' '/')" "$(ratio "${med[tern.small]:-nan}" "${med[$s.small]}")" \
        "${med[$s.large]}" "$(echo ${res[$s.large]} | tr ' ' '/')" "$(ratio "${med[tern.large]:-nan}" "${med[$s.large]}")"
done
for s in $SERVERS; do
    [ -n "${why[$s]:-}" ] && echo "| $s | skipped: ${why[$s]} | | | | |"
done
exit 0
