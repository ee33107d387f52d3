#!/usr/bin/env bash
# bench/local.sh - local delivery (into Maildirs) throughput of tern serve,
# Postfix, chasquid and OpenSMTPD, side by side in one run (issue 9), with
# Postfix's smtp-sink as the ceiling of the load generator.
#
# Postfix's smtp-source sends 1 KiB messages (10 sessions, one message per
# connection) to u@local.test, a local user of the server under test.  A run
# is timed from the start of smtp-source until the last message file is in
# the user's Maildir new/ (the files are counted).  The ceiling: the same
# smtp-source into smtp-sink (no disk), timed until smtp-sink's -c counter has
# the last message.  Runs are interleaved (run 1 of every server, then run 2,
# ...); the table has medians of RUNS runs, the ratio of tern to each, and
# each server's CPU per message, counted until it is idle again: utime+stime
# (all threads) of its processes plus the cutime+cstime of the children they
# reaped (Postfix's local, chasquid's MDA, OpenSMTPD's mail.maildir), read
# from /proc/PID/stat.
#
# The servers as configured for the anchors (see ../shared/ANCHORS.md):
# tern [local] delivery = maildir (its default), user u added with `tern user
# add`; Postfix mydestination = local.test, home_mailbox = Maildir/, local(8)
# to the UNIX user u (a private instance: own config, queue and data, no
# chroot); chasquid with user u in its user database and as MDA a small C
# program (compiled here) that writes tmp/, fsyncs and renames into new/;
# OpenSMTPD `action maildir` for the UNIX user u.  Durability as shipped:
# tern and Postfix fsync the queue before their 250 and the Maildir file at
# delivery; chasquid and OpenSMTPD do not fsync their queue.
#
# Everything runs in a private network and mount namespace (unshare -n -m,
# needs root): user u (and OpenSMTPD's users) exist only in copies of
# /etc/passwd and /etc/group bind-mounted there; a dnsmasq answers chasquid's
# SPF lookups.  Without the namespace only tern and smtp-sink run.
# chasquid and OpenSMTPD come from their Debian packages, extracted (never
# installed) into $RELAY_BENCH_CACHE, as in bench/relay.sh.
#
#   bench/local.sh [path/to/tern] [messages] [runs]
#   env: SERVERS="tern postfix chasquid opensmtpd"  SESSIONS=10
#        SLOW_DIV=10 (OpenSMTPD gets 1/SLOW_DIV of the messages)
#        RUN_TIMEOUT=120 (seconds per run)
#        STRACE_MSGS=300 (after the timed runs: one run per server under
#        strace -c -f for the fsyncs per message; 0 = skip)
#        LOCAL_BENCH_KEEP=1 (keep the work folder with every server's log)
#        BENCH_FS=loop|host (loop: a new journaled ext4 for the run, below)
set -euo pipefail

TERN=$(realpath "${1:-build/tern}")
N=${2:-2000}
RUNS=${3:-3}
SERVERS=${SERVERS:-tern postfix chasquid opensmtpd}
SESSIONS=${SESSIONS:-10}
SLOW_DIV=${SLOW_DIV:-10}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
STRACE_MSGS=${STRACE_MSGS:-300}
CACHE=${RELAY_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tern-bench}
SINK=/usr/sbin/smtp-sink
SOURCE=/usr/sbin/smtp-source

die() { echo "bench/local.sh: $*" >&2; exit 2; }
note() { echo "# $*" >&2; }
for b in "$TERN" "$SINK" "$SOURCE"; do
    [ -x "$b" ] || die "$b not found (make build; scripts/install-deps)"
done

extract() { # $1 = package: extracted once into the cache; prints the folder
    local dir=$CACHE/$1
    if [ ! -d "$dir/usr" ]; then
        mkdir -p "$CACHE"
        (cd "$CACHE" && rm -f "$1"_*.deb && apt-get download "$1" >/dev/null 2>&1) || return 1
        rm -rf "$dir.tmp" && dpkg-deb -x "$CACHE/$1"_*.deb "$dir.tmp" && mv "$dir.tmp" "$dir" || return 1
    fi
    echo "$dir"
}

# ---- a private network + mount namespace (fetch the packages first) -------------
if [ -z "${LOCAL_BENCH_NS:-}" ]; then
    for s in $SERVERS; do
        case $s in chasquid | opensmtpd) extract "$s" >/dev/null || note "apt-get download $s failed" ;; esac
    done
    if [ "$(id -u)" -eq 0 ] && unshare -n -m true 2>/dev/null; then
        export LOCAL_BENCH_NS=1 SERVERS SESSIONS SLOW_DIV RUN_TIMEOUT STRACE_MSGS RELAY_BENCH_CACHE="$CACHE" LOCAL_BENCH_KEEP BENCH_FS
        exec unshare -n -m "$(realpath "$0")" "$TERN" "$N" "$RUNS"
    fi
    LOCAL_BENCH_NS=0
    note "no network namespace (needs root and unshare): only tern and smtp-sink run"
fi
[ "$LOCAL_BENCH_NS" = 1 ] && ip link set lo up

work=$(mktemp -d "${TMPDIR:-/tmp}/tern-local-bench.XXXXXX")
# BENCH_FS=loop (the default, in the namespace): every server's queue and
# Maildirs on a new ext4 file system made for this run (mkfs defaults: with
# a journal, as a mail server's disk would be), loop-mounted over the work
# folder.  Repeatable: the host's file system here is ext4 WITHOUT a
# journal, shared with whatever else runs, where creating a file costs more
# the more files were deleted in the last minutes (by the previous run, by
# another bench) -- the same command gave 0.8 or 1.9 ms per message
# depending on that history.  BENCH_FS=host measures on the host's.
img=""
if [ "$LOCAL_BENCH_NS" = 1 ] && [ "${BENCH_FS:-loop}" = loop ]; then
    img=$(mktemp "${TMPDIR:-/tmp}/tern-local-bench-fs.XXXXXX")
    if truncate -s 4G "$img" && mkfs.ext4 -q -F "$img" && mount -o loop "$img" "$work"; then
        note "file system: a new ext4 (with journal) on a loop device"
    else
        die "BENCH_FS=loop: cannot make or mount an ext4 image (BENCH_FS=host to measure on the host's)"
    fi
fi
chmod 755 "$work" # tern delivers as nobody, Postfix's and OpenSMTPD's as u
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
    if [ -n "${LOCAL_BENCH_KEEP:-}" ]; then
        echo "# logs kept in $work${img:+ (on $img, mounted only in the namespace of the bench)}" >&2
    elif [ -n "$img" ]; then
        umount "$work" && rm -f "$img" && rmdir "$work"
    else
        rm -rf "$work"
    fi
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

# ---- user u, only inside the namespace ---------------------------------------------
U_UID=64992
if [ "$LOCAL_BENCH_NS" = 1 ]; then
    cp /etc/passwd "$work/passwd" && cp /etc/group "$work/group"
    getent passwd u >/dev/null && die "a user u exists already"
    echo "u:x:$U_UID:$U_UID::$work/home/u:/usr/sbin/nologin" >>"$work/passwd"
    echo "u:x:$U_UID:" >>"$work/group"
    getent passwd opensmtpd >/dev/null || echo "opensmtpd:x:64990:64990::/var/lib/opensmtpd/empty:/usr/sbin/nologin" >>"$work/passwd"
    getent passwd opensmtpq >/dev/null || echo "opensmtpq:x:64991:64991::/var/lib/opensmtpd/empty:/usr/sbin/nologin" >>"$work/passwd"
    getent group opensmtpd >/dev/null || echo "opensmtpd:x:64990:" >>"$work/group"
    getent group opensmtpq >/dev/null || echo "opensmtpq:x:64991:" >>"$work/group"
    mount --bind "$work/passwd" /etc/passwd
    mount --bind "$work/group" /etc/group
    mkdir -p "$work/home/u"
    chown "$U_UID:$U_UID" "$work/home/u"
    chmod 755 "$work/home"
fi

# ---- the ceiling: smtp-sink with its running counter ---------------------------------
sink_port=$(free_port)
user=()
[ "$(id -u)" -eq 0 ] && user=(-u nobody)
"$SINK" "${user[@]}" -c 127.0.0.1:"$sink_port" 1024 >"$work/sink.count" 2>"$work/sink.err" &
pids+=($!)
sink_pid=$!
wait_port "$sink_port" || die "smtp-sink did not start: $(cat "$work/sink.err")"

# measure.py (maildir DIR | sink COUNTFILE) N TIMEOUT PID -- smtp-source ...:
# time from the start of the command until N more messages are in DIR/new (or
# counted by the sink); prints "msg/s cpu-ms-per-message", where the CPU is
# that of PID's process tree over the run.
cat >"$work/measure.py" <<'PY'
import os, re, subprocess, sys, time
mode, path, n, timeout, pid = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
cmd = sys.argv[7:]
HZ = os.sysconf("SC_CLK_TCK")

def tree_cpu(root):
    """utime+stime+cutime+cstime (ticks) of root and its descendants."""
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])   # fields 14-17 of stat(5)
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return total

if mode == "sink":
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
else:
    new = os.path.join(path, "new")
    def count():
        try:
            return len(os.listdir(new))
        except FileNotFoundError:
            return 0
target = count() + n
cpu0 = tree_cpu(pid)
t0 = time.monotonic()
src = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
deadline = t0 + timeout
t_src = None  # when smtp-source had handed over its last message (accept time)
while count() < target and time.monotonic() < deadline:
    if t_src is None and src.poll() is not None:
        t_src = time.monotonic()
    time.sleep(0.01 if mode == "maildir" else 0.005)
t1 = time.monotonic()
got = n - (target - count())
try:
    err = src.communicate(timeout=max(1.0, deadline - time.monotonic()))[1]
except subprocess.TimeoutExpired:
    src.kill()
    err = src.communicate()[1]
if t_src is None:  # smtp-source ended after the last message was delivered
    t_src = time.monotonic()
# the CPU until the server is idle again (a delivered item is removed from the
# queue after its file is in new/): until two reads 0.3 s apart agree, at most 5 s
cpu1 = tree_cpu(pid)
for _ in range(16):
    time.sleep(0.3)
    c = tree_cpu(pid)
    if c == cpu1:
        break
    cpu1 = c
if got < n:
    sys.stderr.write("timeout: %d of %d messages in %.0f s; smtp-source: %s\n" % (got, n, timeout, err.decode(errors="replace").strip()))
    print("nan nan")
    sys.exit(0)
if src.returncode != 0:
    sys.stderr.write("smtp-source exit %d: %s\n" % (src.returncode, err.decode(errors="replace").strip()))
sys.stderr.write("smtp-source done at %.0f msg/s, " % (n / (t_src - t0)))
print("%.1f %.3f" % (n / (t1 - t0), (cpu1 - cpu0) * 1000.0 / HZ / n))
PY

# chasquid's MDA: write tmp/NAME, fsync, rename into new/ (argv[1] = the Maildir)
cat >"$work/mda.c" <<'C'
#include <fcntl.h>
#include <stdio.h>
#include <sys/time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char tmp[4096], new[4096], buf[65536];
    struct timeval tv;
    ssize_t n;
    int fd;
    if (argc != 2) return 75;
    gettimeofday(&tv, NULL);
    snprintf(tmp, sizeof tmp, "%s/tmp/%ld.M%ldP%d.bench", argv[1], (long)tv.tv_sec, (long)tv.tv_usec, (int)getpid());
    snprintf(new, sizeof new, "%s/new/%ld.M%ldP%d.bench", argv[1], (long)tv.tv_sec, (long)tv.tv_usec, (int)getpid());
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600)) < 0) return 75;
    while ((n = read(0, buf, sizeof buf)) > 0)
        if (write(fd, buf, (size_t)n) != n) return 75;
    if (n < 0 || fsync(fd) != 0 || close(fd) != 0 || rename(tmp, new) != 0) return 75;
    return 0;
}
C

# ---- DNS for chasquid's SPF lookups (inside the namespace only) ---------------------
if [ "$LOCAL_BENCH_NS" = 1 ] && command -v dnsmasq >/dev/null; then
    dnsmasq --keep-in-foreground --conf-file=/dev/null --pid-file= --port=53 \
        --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
        --local=/test/ --local=/in-addr.arpa/ --host-record=localhost,127.0.0.1 \
        2>"$work/dnsmasq.log" &
    pids+=($!)
    echo "nameserver 127.0.0.1" >"$work/resolv.conf"
    mount --bind "$work/resolv.conf" /etc/resolv.conf
fi

# ---- the servers -------------------------------------------------------------------
declare -A port why durable maildir spid

start_tern() {
    local d=$work/tern
    mkdir -p "$d/data/domains/local.test"
    port[tern]=$(free_port)
    {
        echo "[server]"
        [ "$(id -u)" -eq 0 ] && echo "user = nobody" # required as root: binds, then drops to it
        cat <<EOF
hostname = mx.tern.test
data_dir = data
# every load client is 127.0.0.1: no per-client limits (the other servers have none)
max_sessions_per_ip = 0
max_connect_rate_per_ip = 0
[listen]
smtp = 127.0.0.1:${port[tern]}
[queue]
delay_warning = off
[local]
delivery = maildir
EOF
    } >"$d/tern.conf"
    chmod 755 "$d"
    "$TERN" check-config --config "$d/tern.conf" >"$d/check.log" 2>&1 || {
        why[tern]="check-config: $(cat "$d/check.log")"
        return 1
    }
    echo pw | "$TERN" user add --config "$d/tern.conf" u@local.test >"$d/user.log" 2>&1 || {
        why[tern]="user add: $(cat "$d/user.log")"
        return 1
    }
    "$TERN" serve --config "$d/tern.conf" >"$d/serve.log" 2>&1 &
    pids+=($!)
    spid[tern]=$!
    maildir[tern]=$d/data/mail/local.test/u/Maildir
    durable[tern]="fsync before 250"
    wait_port "${port[tern]}" || { why[tern]="did not start: $(tail -5 "$d/serve.log")"; return 1; }
}

start_postfix() {
    local d=$work/postfix
    [ "$LOCAL_BENCH_NS" = 1 ] || { why[postfix]="needs the namespace (user u)"; return 1; }
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
mydestination = local.test
home_mailbox = Maildir/
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = $d/postfix.log
maillog_file_prefixes = $d
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
local      unix - n n - - local
anvil      unix - - n - 1 anvil
scache     unix - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
EOF
    pf_etc=$d/etc
    if ! postfix -c "$d/etc" start >"$d/start.log" 2>&1; then
        why[postfix]="did not start: $(cat "$d/start.log") $(tail -5 "$d/postfix.log" 2>/dev/null)"
        return 1
    fi
    maildir[postfix]=$work/home/u/Maildir
    durable[postfix]="fsync before 250"
    wait_port "${port[postfix]}" || { why[postfix]="not answering: $(tail -5 "$d/postfix.log")"; return 1; }
    spid[postfix]=$(cat "$d/spool/pid/master.pid" | tr -d ' ')
}

start_chasquid() {
    local d=$work/chasquid x
    [ "$LOCAL_BENCH_NS" = 1 ] || { why[chasquid]="needs the namespace (dnsmasq)"; return 1; }
    x=$(extract chasquid) || { why[chasquid]="apt-get download chasquid failed"; return 1; }
    gcc -O2 -o "$work/mda" "$work/mda.c" || { why[chasquid]="cannot compile its MDA"; return 1; }
    mkdir -p "$d/etc/domains/local.test" "$d/etc/certs/mx.chasquid.test" "$d/data" \
        "$d/Maildir/tmp" "$d/Maildir/new" "$d/Maildir/cur"
    # it will not start without a certificate
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
mail_delivery_agent_bin: "$work/mda"
mail_delivery_agent_args: "$d/Maildir"
EOF
    "$x/usr/bin/chasquid-util" -C="$d/etc" user-add u@local.test --password=pw >"$d/user.log" 2>&1 || {
        why[chasquid]="chasquid-util user-add: $(cat "$d/user.log")"
        return 1
    }
    "$x/usr/bin/chasquid" -config_dir "$d/etc" -logfile "$d/chasquid.log" >"$d/stderr.log" 2>&1 &
    pids+=($!)
    spid[chasquid]=$!
    maildir[chasquid]=$d/Maildir
    durable[chasquid]="no fsync of the queue"
    wait_port "${port[chasquid]}" || {
        why[chasquid]="did not start: $(tail -5 "$d/chasquid.log" "$d/stderr.log")"
        return 1
    }
}

start_opensmtpd() {
    local d=$work/opensmtpd x
    [ "$LOCAL_BENCH_NS" = 1 ] || { why[opensmtpd]="needs the mount namespace for its fixed paths"; return 1; }
    x=$(extract opensmtpd) || { why[opensmtpd]="apt-get download opensmtpd failed"; return 1; }
    mkdir -p "$d/varlib/opensmtpd/empty" "$d/spool" "$d/run" "$d/libexec"
    chmod 755 "$d" "$d/libexec" "$d/varlib" "$d/varlib/opensmtpd" "$d/varlib/opensmtpd/empty" "$d/spool"
    cp -r "$x/usr/libexec/opensmtpd" "$d/libexec/" # its mail.maildir, run as u (the cache may be closed to u)
    chmod -R go+rX "$d/libexec"
    mkdir -p "$d/Maildir"
    chown "$U_UID:$U_UID" "$d/Maildir"
    port[opensmtpd]=$(free_port)
    cat >"$d/smtpd.conf" <<EOF
listen on 127.0.0.1 port ${port[opensmtpd]} hostname mx.opensmtpd.test
action "local" maildir "$d/Maildir"
match from any for domain "local.test" action "local"
EOF
    unshare -m sh -c '
        d=$1; x=$2
        mount --bind "$d/varlib" /var/lib && mount --bind "$d/spool" /var/spool &&
        mount --bind "$d/run" /run && mount --bind "$d/libexec" /usr/libexec &&
        exec "$x/usr/sbin/smtpd" -d -f "$d/smtpd.conf"' sh "$d" "$x" >"$d/smtpd.log" 2>&1 &
    pids+=($!)
    spid[opensmtpd]=$!
    maildir[opensmtpd]=$d/Maildir
    durable[opensmtpd]="no fsync of the queue"
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
port[sink]=$sink_port
spid[sink]=$sink_pid
durable[sink]="none (discards)"

msgs_for() { if [ "$1" = opensmtpd ]; then echo $(((N + SLOW_DIV - 1) / SLOW_DIV)); else echo "$N"; fi; }

measure() { # $1 server, $2 messages: prints "msg/s cpu-ms-per-message"
    local how=(sink "$work/sink.count")
    [ "$1" = sink ] || how=(maildir "${maildir[$1]}")
    python3 "$work/measure.py" "${how[@]}" "$2" "$RUN_TIMEOUT" "${spid[$1]}" -- \
        "$SOURCE" -s "$SESSIONS" -m "$2" -l 1024 -f s@src.test -t u@local.test 127.0.0.1:"${port[$1]}"
}
empty_new() { # $1 server: the delivered files go, so that counting stays cheap
    # new/ is renamed aside and made again (same owner and mode), not emptied:
    # deleting thousands of files right before a timed run would make that run
    # pay for them -- ext4 without a journal (this machine) steps over every
    # inode freed in the last minutes when it creates a file.  Everything goes
    # at the end with the work folder.
    [ "$1" = sink ] && return 0
    local new=${maildir[$1]}/new
    [ -d "$new" ] || return 0
    local old=$new.$((++emptied))
    mv "$new" "$old" && mkdir "$new" && chown --reference="$old" "$new" && chmod --reference="$old" "$new"
}
emptied=0

# Warm-up (not timed): processes started, caches filled, first connection made.
for s in sink "${active[@]}"; do
    r=$(measure "$s" 20 2>"$work/measure.err")
    [ "${r%% *}" = nan ] && note "$s: warm-up did not deliver: $(cat "$work/measure.err")"
    sleep 1
    empty_new "$s"
done

declare -A res cpu
note "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
for run in $(seq "$RUNS"); do
    for s in sink "${active[@]}"; do
        n=$(msgs_for "$s")
        r=$(measure "$s" "$n" 2>"$work/measure.err")
        note "$s run $run: $n messages, $(cat "$work/measure.err")${r% *} msg/s end-to-end, ${r#* } ms CPU/msg"
        res[$s]+="${r% *} "
        cpu[$s]+="${r#* } "
        sleep 1 # the queue empties (Postfix, tern remove their items after the delivery)
        empty_new "$s"
    done
done
note "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# fsyncs per message: one more run of each under strace -c -f (all its processes)
declare -A fs
if [ "$STRACE_MSGS" -gt 0 ] && command -v strace >/dev/null; then
    for s in "${active[@]}"; do
        n=$STRACE_MSGS
        [ "$s" = opensmtpd ] && n=$(((n + SLOW_DIV - 1) / SLOW_DIV))
        tree=$(python3 - "${spid[$s]}" <<'PY'
import os, sys
todo, out = [int(sys.argv[1])], []
while todo:
    p = todo.pop(); out.append(p)
    try:
        for t in os.listdir("/proc/%d/task" % p):
            out.append(int(t))
            todo += [int(c) for c in open("/proc/%d/task/%s/children" % (p, t)).read().split()]
    except FileNotFoundError:
        pass
print(" ".join("-p %d" % p for p in sorted(set(out))))
PY
)
        # shellcheck disable=SC2086
        strace -f -c -o "$work/strace.$s" -e trace=fsync,fdatasync $tree 2>/dev/null &
        st=$!
        sleep 1
        measure "$s" "$n" >/dev/null 2>&1 || true
        sleep 2 # the queue's removals after the last delivery
        kill -INT "$st" 2>/dev/null
        wait "$st" 2>/dev/null || true
        fs[$s]=$(awk -v n="$n" '$NF == "fsync" || $NF == "fdatasync" { c += $4 } END { printf "%.2f", c / n }' "$work/strace.$s")
        empty_new "$s"
    done
fi

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "nan")}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "-"; else printf "%.2f", a / b }'; }

declare -A med mcpu
for s in sink "${active[@]}"; do
    med[$s]=$(echo "${res[$s]}" | median)
    mcpu[$s]=$(echo "${cpu[$s]}" | median)
done
echo
echo "local delivery, smtp-source ($SESSIONS sessions, one message per connection, 1 KiB) -> server -> Maildir;"
echo "messages/second until the last file was in new/, median of $RUNS interleaved runs (all runs in brackets);"
echo "$N messages per run (OpenSMTPD: 1/$SLOW_DIV of that); CPU: the server's processes, ms per message (median)"
echo
echo "| server | durability | msg/s | tern / it | CPU ms/msg | fsync/msg |"
echo "| --- | --- | --- | --- | --- | --- |"
for s in sink "${active[@]}"; do
    name=$s
    [ "$s" = sink ] && name="smtp-sink (ceiling, no disk)"
    printf "| %s | %s | %s (%s) | %s | %s | %s |\n" "$name" "${durable[$s]}" "${med[$s]}" \
        "$(echo ${res[$s]} | tr ' ' '/')" "$(ratio "${med[tern]:-nan}" "${med[$s]}")" \
        "${mcpu[$s]}" "${fs[$s]:--}"
done
for s in $SERVERS; do
    [ -n "${why[$s]:-}" ] && echo "| $s | skipped: ${why[$s]} | | | | |"
done
if [ -n "${med[tern]:-}" ]; then
    echo
    echo "tern / smtp-sink ceiling: $(ratio "${med[tern]}" "${med[sink]}") (goal >= 0.50); tern CPU per message: ${mcpu[tern]} ms (goal <= 0.5)"
fi
exit 0
