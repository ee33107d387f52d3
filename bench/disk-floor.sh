#!/usr/bin/env bash
# bench/disk-floor.sh - what the disk alone allows: N "messages" by 10 threads
# (the 10 sessions of bench/local.sh), each doing only the file-system work
# that durable local delivery needs, no SMTP and no parsing:
#   queue:  write a 1.3 KiB file, fsync, rename it into a folder, fsync the folder
#   local:  the same again for the Maildir (after the queue part, same thread)
# on a new journaled ext4 on a loop device (as bench/local.sh, needs root and
# unshare -m), or on the file system of $TMPDIR with BENCH_FS=host.  Prints
# messages per second for "queue" and for "queue+local".
#   bench/disk-floor.sh [messages]
set -euo pipefail
N=${1:-4000}
if [ "${BENCH_FS:-loop}" = loop ] && [ -z "${DISK_FLOOR_NS:-}" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "bench/disk-floor.sh: needs root (or BENCH_FS=host)" >&2; exit 2; }
    export DISK_FLOOR_NS=1
    exec unshare -m "$(realpath "$0")" "$N"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/tern-disk-floor.XXXXXX")
img=""
if [ "${BENCH_FS:-loop}" = loop ]; then
    img=$(mktemp "${TMPDIR:-/tmp}/tern-disk-floor-fs.XXXXXX")
    truncate -s 2G "$img" && mkfs.ext4 -q -F "$img" && mount -o loop "$img" "$work"
fi
trap 'if [ -n "$img" ]; then umount "$work"; rm -f "$img"; rmdir "$work"; else rm -rf "$work"; fi' EXIT
for mode in queue local; do
    python3 - "$work/$mode" "$N" "$mode" <<'PY'
import os, sys, threading, time
base, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for d in ("tmp", "queue", "md/tmp", "md/new"):
    os.makedirs(os.path.join(base, d))
dirs = {d: os.open(os.path.join(base, d), os.O_RDONLY) for d in ("queue", "md/new")}
data = b"x" * 1300
def durable(tmp, final, name):
    fd = os.open(os.path.join(base, tmp, name), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    os.rename(os.path.join(base, tmp, name), os.path.join(base, final, name))
    os.fsync(dirs[final])
def worker(t):
    for i in range(n // 10):
        durable("tmp", "queue", "%d-%d" % (t, i))
        if mode == "local":
            durable("md/tmp", "md/new", "%d-%d" % (t, i))
t0 = time.time()
threads = [threading.Thread(target=worker, args=(t,)) for t in range(10)]
for th in threads:
    th.start()
for th in threads:
    th.join()
print("%-12s %6.0f msg/s" % ("queue" if mode == "queue" else "queue+local", n / (time.time() - t0)))
PY
done
