#!/usr/bin/env bash
# bench/abuse.sh - how `tern serve` holds up under abuse (issue 9, item 3).
#
# One legitimate client measures NOOP round trips (median and p99 of NOOPS
# commands on one session) against a quiet server, then again while these run
# at once: IDLE connections that say nothing, SLOW slowloris clients (one
# octet a second of a never-ending command line; cut by command_timeout (1m), they
# reconnect) and GUESSERS AUTH password guessers (STARTTLS on submission, AUTH
# PLAIN with wrong passwords, reconnecting when cut off).  Every attacking
# connection comes from its own loopback address (127.X.Y.1, its own /24), so
# the per-client limits admit them and the server really holds them all; the
# legitimate client uses 127.0.0.1.  Also reported: the server's RSS (VmRSS)
# quiet and at its peak under attack, and how many attacking connections were
# open at the end.
#
# Loopback only; bounded counts and time (ATTACK_SECONDS of attack); every
# process started here is ended by its PID.  Raises its own RLIMIT_NOFILE as
# far as the hard limit allows.
#
#   bench/abuse.sh [path/to/tern]
#   env: IDLE=1000 SLOW=100 GUESSERS=8 NOOPS=2000 ATTACK_SECONDS=75 ABUSE_BENCH_KEEP=1
set -euo pipefail

TERN=$(realpath "${1:-build/tern}")
IDLE=${IDLE:-1000}
SLOW=${SLOW:-100}
GUESSERS=${GUESSERS:-8}
NOOPS=${NOOPS:-2000}
ATTACK_SECONDS=${ATTACK_SECONDS:-75}

die() { echo "bench/abuse.sh: $*" >&2; exit 2; }
[ -x "$TERN" ] || die "$TERN not found (make build)"
command -v openssl >/dev/null || die "openssl not found"

work=$(mktemp -d "${TMPDIR:-/tmp}/tern-abuse-bench.XXXXXX")
chmod 755 "$work"
pids=()
cleanup() {
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    if [ -n "${ABUSE_BENCH_KEEP:-}" ]; then echo "# logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ---- the server ----------------------------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=mx.abuse.test \
    -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1 || die "openssl req failed"
chmod 644 "$work/cert.pem"
chmod 600 "$work/key.pem"
mkdir -p "$work/data/domains/abuse.test"
smtp_port=$(free_port)
sub_port=$(free_port)
run_as=""
[ "$(id -u)" -eq 0 ] && run_as="user = nobody"
cat >"$work/tern.conf" <<EOF
[server]
hostname = mx.abuse.test
data_dir = data
$run_as
[listen]
smtp = 127.0.0.1:$smtp_port
submission = 127.0.0.1:$sub_port
[tls]
cert = $work/cert.pem
key = $work/key.pem
[local]
delivery = maildir
EOF
"$TERN" user add --config "$work/tern.conf" alice@abuse.test <<<"right-password" >"$work/user.log" 2>&1 ||
    die "tern user add: $(cat "$work/user.log")"
"$TERN" check-config --config "$work/tern.conf" >"$work/check.log" 2>&1 ||
    die "check-config: $(cat "$work/check.log")"
"$TERN" serve --config "$work/tern.conf" >"$work/serve.log" 2>&1 &
serve_pid=$!
pids+=($serve_pid)

# ---- the clients (one Python process, ended by the trap too) ----------------------
cat >"$work/abuse.py" <<'PY'
import base64, os, resource, socket, ssl, statistics, sys, threading, time

smtp_port, sub_port, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
IDLE, SLOW, GUESSERS, NOOPS, SECONDS = (int(x) for x in sys.argv[4:9])

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = IDLE + SLOW + GUESSERS + 256
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    if min(want, hard) < want:
        print("# RLIMIT_NOFILE hard limit %d: fewer attackers than asked" % hard, file=sys.stderr)

def rss_kib():
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def wait_ready():
    for _ in range(200):
        try:
            s = socket.create_connection(("127.0.0.1", smtp_port), timeout=2)
            ok = s.recv(512).startswith(b"220")
            s.close()
            if ok:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("the server did not start")

def addr(k):  # attacker k's own loopback address, in its own /24
    return "127.%d.%d.1" % (10 + k // 250, k % 250)

def reply(f):
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return line

def legit_session():
    s = socket.create_connection(("127.0.0.1", smtp_port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    if not reply(f).startswith(b"220"):
        raise SystemExit("the legitimate client was refused")
    s.sendall(b"EHLO legit.test\r\n")
    reply(f)
    return s, f

def noop_times(sf, n):
    s, f = sf
    times = []
    for _ in range(n):
        t = time.perf_counter()
        s.sendall(b"NOOP\r\n")
        if not reply(f).startswith(b"250"):
            raise SystemExit("NOOP refused")
        times.append((time.perf_counter() - t) * 1e6)
    return times

def stats(times):
    times = sorted(times)
    return statistics.median(times), times[max(0, int(len(times) * 0.99) - 1)]

stop = threading.Event()
count = {"idle": 0, "slow_cuts": 0, "slow_refused": 0, "auth_tries": 0, "auth_cuts": 0}
lock = threading.Lock()

def idle_clients(socks):
    for k in range(IDLE):
        try:
            s = socket.socket()
            s.bind((addr(k), 0))
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", smtp_port))
            socks.append(s)
        except OSError as e:
            print("# idle %d: %s" % (k, e), file=sys.stderr)
            break

def slow_client(k):
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", smtp_port), timeout=5,
                                         source_address=(addr(IDLE + k), 0))
            if not s.recv(512).startswith(b"220"):
                with lock:
                    count["slow_refused"] += 1
                s.close()
                stop.wait(1)
                continue
            while not stop.is_set():
                s.sendall(b"X")
                stop.wait(1)
        except OSError:
            with lock:
                count["slow_cuts"] += 1
            stop.wait(0.2)

def guesser(k):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    n = 0
    while not stop.is_set():
        try:
            raw = socket.create_connection(("127.0.0.1", sub_port), timeout=10,
                                           source_address=(addr(IDLE + SLOW + k), 0))
            f = raw.makefile("rb")
            if not reply(f).startswith(b"220"):
                raise ConnectionError("refused")
            raw.sendall(b"EHLO guess.test\r\n")
            reply(f)
            raw.sendall(b"STARTTLS\r\n")
            reply(f)
            s = ctx.wrap_socket(raw)
            f = s.makefile("rb")
            s.sendall(b"EHLO guess.test\r\n")
            reply(f)
            while not stop.is_set():
                n += 1
                cred = base64.b64encode(b"\0alice@abuse.test\0guess%d" % n)
                s.sendall(b"AUTH PLAIN " + cred + b"\r\n")
                r = reply(f)
                with lock:
                    count["auth_tries"] += 1
                if r.startswith(b"421"):
                    raise ConnectionError("cut")
        except (OSError, ConnectionError, ssl.SSLError):
            with lock:
                count["auth_cuts"] += 1
            stop.wait(0.5)

wait_ready()
rss_quiet = rss_kib()
legit = legit_session()
noop_times(legit, 200)  # warm-up
quiet = stats(noop_times(legit, NOOPS))

socks = []
idle_clients(socks)
threads = [threading.Thread(target=slow_client, args=(k,), daemon=True) for k in range(SLOW)]
threads += [threading.Thread(target=guesser, args=(k,), daemon=True) for k in range(GUESSERS)]
for t in threads:
    t.start()
t0 = time.monotonic()
time.sleep(3)  # let the crowd settle in
peak = rss_kib()
times = []
while time.monotonic() - t0 < SECONDS:  # the same session: commands keep it alive
    times += noop_times(legit, 100)
    peak = max(peak, rss_kib())
under = stats(times)
alive = 0
for s in socks:
    try:
        s.setblocking(False)
        alive += s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
stop.set()
for t in threads:
    t.join(15)
for s in socks:
    s.close()

print("| condition | NOOP median (us) | NOOP p99 (us) | server RSS (MiB) |")
print("| --- | --- | --- | --- |")
print("| quiet | %.0f | %.0f | %.1f |" % (quiet[0], quiet[1], rss_quiet / 1024))
print("| %d idle + %d slowloris + %d AUTH guessers | %.0f | %.0f | %.1f (peak) |"
      % (IDLE, SLOW, GUESSERS, under[0], under[1], peak / 1024))
print()
print("idle connections still open after %d s: %d of %d; slowloris connections cut: %d, "
      "refused: %d; AUTH attempts: %d, guesser connections cut or refused: %d"
      % (SECONDS, alive, len(socks), count["slow_cuts"], count["slow_refused"],
         count["auth_tries"], count["auth_cuts"]))
PY
python3 "$work/abuse.py" "$smtp_port" "$sub_port" "$serve_pid" "$IDLE" "$SLOW" "$GUESSERS" \
    "$NOOPS" "$ATTACK_SECONDS" &
pids+=($!)
wait "${pids[-1]}"
echo "# tern: $("$TERN" --version 2>/dev/null || echo "$TERN"); $(nproc) CPUs; log lines: $(wc -l <"$work/serve.log")"
