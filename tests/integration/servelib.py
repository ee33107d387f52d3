"""servelib - helpers for the integration tests of `tern serve`.

Standard library only.  A test builds a server in a temporary folder with
`ServeEnv` (tern.conf, a certificate, users, aliases, scripts), then starts it
with `env.start()`: every listener is on port 0 and the real ports are read
from the start-up log lines.  The server is stopped (SIGTERM to its PID, then
a wait) by a cleanup that fails the test if it exited non-zero or printed a
sanitizer report.

    env = ServeEnv(self)                       # cleanup registered on the test
    env.add_user("alice@example.test", "pw-alice")
    env.write_aliases("example.test", "team: alice, bob\\n")
    srv = env.start()
    send_raw(srv.port("smtp"), "x@remote.test", ["alice@example.test"], message())
    msgs = env.wait_maildir("alice@example.test", 1)

Tests sharing one server per class pass `cls.addClassCleanup` as `cleanup`.

Run as root (as in CI), the server gets `[server] user = nobody` (SERVE_USER):
it binds as root, then delivers as that user.  The test folder is handed to
that user (so MDA and pipe scripts can write their records there) except
tern.conf and data/, which stay root's as on a real system.

Environment: TERN is the tern binary (default /work/main/build/tern).
"""

import atexit
import mailbox
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time

# SANITIZER_RE, temp_dir and wait_until are imported by tests from here too
from ternlib import IO_TIMEOUT, SANITIZER_RE, TERN, Daemon, temp_dir, wait_until, write_file  # noqa: F401

HOSTNAME = "mx.example.test"

# the unprivileged account `tern serve` runs as when the tests run as root
SERVE_USER = "nobody"
AS_ROOT = os.geteuid() == 0


def serve_user_ids():
    """(uid, gid) of SERVE_USER."""
    pw = pwd.getpwnam(SERVE_USER)
    return pw.pw_uid, pw.pw_gid

# ---- one certificate for the whole run ------------------------------------------

_certdir = None


def cert_paths():
    """(cert, key): a self-signed P-256 certificate for mx.example.test, 127.0.0.1 and ::1,
    made once per process (clients can verify it with the cert as their trust anchor)."""
    global _certdir
    if _certdir is None:
        d = tempfile.mkdtemp(prefix="tern-serve-cert-")
        atexit.register(shutil.rmtree, d, True)
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-keyout", os.path.join(d, "key.pem"),
                            "-out", os.path.join(d, "cert.pem"), "-days", "30", "-subj",
                            "/CN=" + HOSTNAME, "-addext",
                            "subjectAltName=DNS:%s,IP:127.0.0.1,IP:::1" % HOSTNAME],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("openssl req failed: %s" % p.stdout.decode(errors="replace"))
        _certdir = d
    return os.path.join(_certdir, "cert.pem"), os.path.join(_certdir, "key.pem")


# ---- the folder of one server -------------------------------------------------------


def default_conf():
    cert, key = cert_paths()
    server = {"hostname": HOSTNAME, "data_dir": "data"}
    if AS_ROOT:
        server["user"] = SERVE_USER
    return {
        "server": server,
        "listen": {"smtp": "127.0.0.1:0", "submission": "127.0.0.1:0", "submissions": "127.0.0.1:0"},
        "tls": {"cert": cert, "key": key},
        "queue": {"retry": "1s 2s", "give_up": "60s", "delay_warning": "off",
                  "min_free_space": "1M"},
        "local": {"delivery": "maildir"},
    }


class ServeEnv:
    """A temporary folder with tern.conf and data/ (domains, queue, mail)."""

    def __init__(self, test=None, cleanup=None, **sections):
        """sections: {"queue": {"give_up": "3s"}, ...} merged over default_conf();
        a value of None removes the key.  cleanup: how to register clean-ups
        (default test.addCleanup)."""
        self._cleanup = cleanup or test.addCleanup
        self.dir = temp_dir(self._cleanup, "tern-serve-")
        self.conf_path = os.path.join(self.dir, "tern.conf")
        self.data_dir = os.path.join(self.dir, "data")
        self.queue_dir = os.path.join(self.data_dir, "queue")
        os.makedirs(os.path.join(self.data_dir, "domains"))
        if AS_ROOT:
            os.chmod(self.dir, 0o755)  # mkdtemp's 0700: the server's user must get through
        self.conf = default_conf()
        for sec, kv in sections.items():
            self.conf.setdefault(sec, {})
            for k, v in kv.items():
                if v is None:
                    self.conf[sec].pop(k, None)
                else:
                    self.conf[sec][k] = v
        self.write_conf()

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def write_conf(self):
        with open(self.conf_path, "w") as f:
            for sec, kv in self.conf.items():
                f.write("[%s]\n" % sec)
                for k, v in kv.items():
                    f.write("%s = %s\n" % (k, v))

    def tern(self, *args, input=None, timeout=60):
        """Run `tern ARGS --config tern.conf`-style admin commands (config inserted after the verb)."""
        argv = [TERN] + list(args[:2]) + ["--config", self.conf_path] + list(args[2:])
        return subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout)

    def add_user(self, address, password):
        p = self.tern("user", "add", address, input=(password + "\n").encode())
        if p.returncode != 0:
            raise RuntimeError("tern user add %s: %s" % (address, p.stdout.decode(errors="replace")))

    def add_domain(self, domain):
        os.makedirs(os.path.join(self.data_dir, "domains", domain), exist_ok=True)

    def write_aliases(self, domain, text):
        self.add_domain(domain)
        write_file(os.path.join(self.data_dir, "domains", domain, "aliases"), text)

    def write_script(self, name, text):
        """An executable file in the folder; returns its absolute path."""
        return write_file(self.path(name), text, 0o755)

    # -- mailboxes ----------------------------------------------------------------

    def maildir_path(self, address):
        return maildir_path(self.data_dir, address)

    def maildir(self, address):
        """The messages of a local user's Maildir (new/ and cur/), oldest first; [] if none."""
        path = self.maildir_path(address)
        if not all(os.path.isdir(os.path.join(path, sub)) for sub in ("tmp", "new", "cur")):
            return []  # not there yet (or being created by the first delivery)
        md = mailbox.Maildir(path, factory=None, create=False)
        msgs = []
        for key in md.keys():
            m = md[key]
            m.raw = md.get_bytes(key)  # the file's bytes, for email.message_from_bytes
            msgs.append((os.path.getmtime(os.path.join(path, m.get_subdir(), key)), key, m))
        msgs.sort(key=lambda t: (t[0], t[1]))
        return [m for _, _, m in msgs]

    def wait_maildir(self, address, count, timeout=IO_TIMEOUT, subject=None):
        """Poll (bounded) until the Maildir holds at least `count` messages (with that
        subject, if given); returns them (all, or only those with the subject)."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.maildir(address)
            if subject is not None:
                msgs = [m for m in msgs if m["Subject"] == subject]
            if len(msgs) >= count or time.monotonic() > deadline:
                return msgs
            time.sleep(0.05)

    # -- the queue on disk --------------------------------------------------------

    def queue_files(self, sub="queue"):
        return queue_files(self.data_dir, sub)

    # -- the server ---------------------------------------------------------------

    def hand_over(self):
        """Root only: give the test folder and what the test put in it (scripts, record
        folders), but not tern.conf and data/, to SERVE_USER."""
        if not AS_ROOT:
            return
        uid, gid = serve_user_ids()
        os.chown(self.dir, uid, gid)
        for name in os.listdir(self.dir):
            if name in ("tern.conf", "data"):
                continue
            top = os.path.join(self.dir, name)
            os.lchown(top, uid, gid)
            for root, dirs, files in os.walk(top):
                for n in dirs + files:
                    os.lchown(os.path.join(root, n), uid, gid)

    def start(self, check_exit=True):
        self.hand_over()
        srv = Serve(self.conf_path)
        self._cleanup(srv.check_clean_exit if check_exit else srv.stop)
        return srv


class Serve(Daemon):
    """A running `tern serve` process and what its start-up log said (log_path: a copy of
    the log in that file)."""

    name = "serve"
    kinds = ("smtp", "submission", "submissions")

    def __init__(self, conf_path, log_path=None):
        super().__init__([TERN, "serve", "--config", conf_path], log_path=log_path)
        m = re.search(r"serve info: ready: .* data_dir=(\S+)", self.log)
        self.data_dir = m.group(1) if m else None

    def port(self, kind="smtp"):
        return self.listeners[kind][0][1]


def refused_port(cleanup):
    """A loopback TCP port that refuses connections for as long as the test runs: a socket bound
    to it without listen() (so no other process can take the port meanwhile)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    cleanup(sock.close)
    return sock.getsockname()[1]


def unreachable_remote(cleanup, domains=("remote.test",)):
    """[remote] settings under which mail to `domains` is deferred (connection refused), whether
    or not this tern delivers to other servers yet: merge into ServeEnv(..., remote=...)."""
    port = refused_port(cleanup)
    return {"routes": " ".join("%s=[127.0.0.1]:%d" % (d, port) for d in domains), "tls": "none"}


def maildir_path(data_dir, address):
    """The Maildir of a local user (user@domain) under data_dir."""
    user, _, domain = address.partition("@")
    return os.path.join(data_dir, "mail", domain, user, "Maildir")


def queue_files(data_dir, sub="queue"):
    """The sorted names in data_dir/queue/sub ([] if it is not there)."""
    try:
        return sorted(os.listdir(os.path.join(data_dir, "queue", sub)))
    except (FileNotFoundError, NotADirectoryError):
        return []


# ---- queue items on disk ---------------------------------------------------------
#
# One file per item, data_dir/queue/queue/ID (no extension): the envelope text as
# envelope_format() writes it ("tern-envelope 2" ... "end\n", with msg-size and the
# message's msg-crc32c), immediately followed by exactly msg-size octets of message.
# An older tern left two files, ID.env (envelope) and ID.msg (message): "legacy".

_CRC32C_TABLE = []
for _b in range(256):
    _c = _b
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli) of data, chained like crc32c_update() in src/core/crc32c.c."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def envelope_end(data):
    """The offset just after the first line "end" of a queue item's octets, or -1 if there is none
    (the envelope was cut short)."""
    if data.startswith(b"end\n"):
        return 4
    i = data.find(b"\nend\n")
    return -1 if i < 0 else i + 5


def split_item(path):
    """(envelope text, message octets) of the one-file queue item at path: the text up to and
    including the first line "end", and what follows it.  (whole text, None) if there is no
    end line."""
    with open(path, "rb") as f:
        data = f.read()
    end = envelope_end(data)
    if end < 0:
        return data.decode("utf-8", "replace"), None
    return data[:end].decode("utf-8", "replace"), data[end:]


def item_envelope(path):
    """The envelope text of the one-file queue item at path (see split_item)."""
    return split_item(path)[0]


def item_problem(path):
    """None if the one-file item at path is whole: a version 2 envelope up to its first "end"
    line, then exactly msg-size octets whose CRC-32C is msg-crc32c; else what is wrong."""
    envtext, msg = split_item(path)
    if msg is None:
        return "no end line"
    if not envtext.startswith("tern-envelope 2\n"):
        return "not a version 2 envelope: %r" % envtext[:40]
    size = re.search(r"^msg-size (\d+)$", envtext, re.M)
    crc = re.search(r"^msg-crc32c ([0-9a-f]{8})$", envtext, re.M)
    if not size or not crc:
        return "no msg-size or msg-crc32c line"
    if int(size.group(1)) != len(msg):
        return "%d octets after the envelope, msg-size says %s" % (len(msg), size.group(1))
    if crc32c(msg) != int(crc.group(1), 16):
        return "CRC-32C %08x, msg-crc32c says %s" % (crc32c(msg), crc.group(1))
    return None


def item_path(data_dir, qid, sub="queue"):
    """data_dir/queue/sub/ID: where the one-file item ID is (or is quarantined)."""
    return os.path.join(data_dir, "queue", sub, qid)


def envelope_v2(qid, msg, rest, created=None, next_attempt=None):
    """A version 2 envelope of message msg (octets) as envelope_format() writes it: the header
    lines, msg-size and msg-crc32c, then rest (the lines from "sender <...>" on, with or without
    the closing "end" line)."""
    now = int(time.time())
    created = now - 5 if created is None else created
    next_attempt = now - 5 if next_attempt is None else next_attempt
    return ("tern-envelope 2\nid %s\ncreated %d\nnext-attempt %d\nmsg-size %d\nmsg-crc32c %08x\n%s"
            % (qid, created, next_attempt, len(msg), crc32c(msg), rest))


def queued_id(reply):
    """The queue id from a '250 2.0.0 Ok: queued as ID' reply (a ternlib Reply, or text/bytes)."""
    text = reply.text if hasattr(reply, "text") else reply
    if isinstance(text, bytes):
        text = text.decode()
    m = re.search(r"queued as (\S+)", text)
    if not m:
        raise AssertionError("no queue id in %r" % text)
    return m.group(1)
