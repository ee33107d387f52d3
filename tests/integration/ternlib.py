"""ternlib - helpers for the integration tests of `tern sink`.

Standard library only.  A test starts its own sink with `start_sink(self, ...)`:
every listener is on port 0 and the real ports are read from the start-up log
lines, so tests never race for ports.  The sink is stopped (SIGTERM to its PID,
then a wait) by a cleanup that also fails the test if the process exited badly
or printed a sanitizer report.

    sink = start_sink(self, "--max-size", "10K")
    with Dialogue(sink.smtp_port) as d:
        d.expect(220)
        d.cmd("EHLO client.test", 250)
    status, headers, body = http_get(sink.http_port, "/api/count")

Environment: TERN is the tern binary (default /work/main/build/tern).
"""

import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

TERN = os.environ.get("TERN", "/work/main/build/tern")

# Generous waits (not assertions): the binary may run under ASan, next to
# other tests on two cores.
START_TIMEOUT = 30.0
IO_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0

SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer")

# ---- a command in front of tern (valgrind) ---------------------------------------
# TERN_WRAPPER="valgrind --error-exitcode=99 -q ..." is put in front of every tern a
# test starts (any subprocess whose argv[0] is TERN: daemons and commands alike), and
# TERN_SLOW=N multiplies the waits above.  A wrapped tern that exits 99 fails the test
# program at exit even where its test did not look at the exit status, and a report
# in a daemon's log fails its check_clean_exit (valgrind -q prints nothing else).
TERN_WRAPPER = os.environ.get("TERN_WRAPPER", "").split()
WRAPPER_ERROR_EXIT = 99
_slow = float(os.environ.get("TERN_SLOW") or 1)
START_TIMEOUT *= _slow
IO_TIMEOUT *= _slow
STOP_TIMEOUT *= _slow
if TERN_WRAPPER:
    import atexit
    import sys

    SANITIZER_RE = re.compile(SANITIZER_RE.pattern + r"|^==\d+== (?!Warning)\S", re.M)
    _wrapper_errors = []

    class _WrappedPopen(subprocess.Popen):
        _tern_wrapped = _tern_noted = False

        def __init__(self, args, *rest, **kw):
            if isinstance(args, (list, tuple)) and args and args[0] == TERN:
                args, self._tern_wrapped = TERN_WRAPPER + list(args), True
            super().__init__(args, *rest, **kw)

        def _note(self, rc):
            if rc == WRAPPER_ERROR_EXIT and self._tern_wrapped and not self._tern_noted:
                self._tern_noted = True
                _wrapper_errors.append(self.args)
            return rc

        def poll(self):
            return self._note(super().poll())

        def wait(self, timeout=None):
            return self._note(super().wait(timeout))

    subprocess.Popen = _WrappedPopen

    @atexit.register
    def _fail_on_wrapper_errors():
        if _wrapper_errors:
            sys.stdout.flush()
            for argv in _wrapper_errors:
                sys.stderr.write("TERN_WRAPPER: exit %d (valgrind found errors): %s\n"
                                 % (WRAPPER_ERROR_EXIT, " ".join(map(str, argv))))
            sys.stderr.flush()
            os._exit(1)


def split_hostport(addr):
    """'127.0.0.1:25' or '[::1]:25' -> ('127.0.0.1', 25) / ('::1', 25)."""
    host, _, port = addr.rpartition(":")
    if host.startswith("["):
        host = host[1:-1]
    return host, int(port)


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _bind_port(host, port):
    """The TCP port that binding (host, port) gives, or None if it is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return None
        return s.getsockname()[1]


def free_port(*hosts, below_ephemeral=False):
    """A TCP port that is free on every one of `hosts` (default 127.0.0.1) right now: for
    programs that need a number in their configuration.  below_ephemeral: tried first in
    10000 .. the start of the ephemeral range, so that a client's source port can never be it
    (a server restarted on it while clients reconnect could meet a TCP self-connect)."""
    hosts = hosts or ("127.0.0.1",)
    candidates = []
    if below_ephemeral:
        try:
            with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                low = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            low = 0
        if low > 11000:
            candidates = [random.randrange(10000, low) for _ in range(50)]
    for port in candidates + [0] * 50:
        port = _bind_port(hosts[0], port)
        if port is not None and all(_bind_port(h, port) == port for h in hosts[1:]):
            return port
    raise RuntimeError("no port free on all of %r" % (hosts,))


def temp_dir(cleanup, prefix="tern-"):
    """A new temporary folder, removed by `cleanup` (e.g. test.addCleanup) unless TERN_KEEP
    is set in the environment (then it is kept for a look after the run)."""
    d = tempfile.mkdtemp(prefix=prefix)
    if not os.environ.get("TERN_KEEP"):
        cleanup(shutil.rmtree, d, True)
    return d


def temp_file(cleanup, name, data, mode=None):
    """A file `name` holding data (str or bytes) in a new temp_dir(cleanup); its path."""
    return write_file(os.path.join(temp_dir(cleanup), name), data, mode)


def wait_until(pred, timeout=IO_TIMEOUT, step=0.05):
    """Poll pred() until it is true or the deadline passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def write_file(path, data, mode=None):
    """Write data (str or bytes) to path, then chmod it to mode if given; returns path."""
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)
    return path


def unverified_context():
    """A TLS client context that accepts any certificate (the test servers' are self-signed)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Daemon:
    """A tern process started for a test: its log (read by a thread, waited on with
    deadlines; also copied to log_path if given), its listeners (from the "KIND listening
    on ADDR" lines), and a stop by PID that fails the test on a bad exit or a sanitizer
    report (only the latter after a kill -9 by kill()).  Sink and Serve (servelib) add what
    is particular to each command."""

    name = "tern"
    kinds = ()

    def __init__(self, argv, log_path=None):
        self.argv = argv
        self._lines = []
        self._size = 0
        self._cond = threading.Condition()
        self._eof = False
        self._checked = False
        self.killed = False
        self._log_file = open(log_path, "wb") if log_path else None
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self.returncode = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self.wait_log(r"%s info: ready:" % self.name, START_TIMEOUT):
            self.stop()
            raise RuntimeError("tern %s did not start: %r\n%s" % (self.name, argv, self.log))
        self.listeners = {k: [] for k in self.kinds}
        rx = re.compile(r"%s info: (%s) listening on (\S+)" % (self.name, "|".join(self.kinds)))
        for m in rx.finditer(self.log):
            self.listeners[m.group(1)].append(split_hostport(m.group(2)))

    # -- the log -------------------------------------------------------------

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            if self._log_file:
                self._log_file.write(raw)
                self._log_file.flush()
            with self._cond:
                self._lines.append(raw.decode("utf-8", "replace"))
                self._size += len(raw)
                self._cond.notify_all()
        if self._log_file:
            self._log_file.close()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def log(self):
        with self._cond:
            return "".join(self._lines)

    def log_size(self):
        """Octets logged so far (it grows while the process is busy)."""
        with self._cond:
            return self._size

    def wait_log(self, pattern, timeout=IO_TIMEOUT, count=1):
        """Wait until `pattern` (a regex, multi-line mode) matches `count` times in the
        log; the list of matches, or None on time-out (or if the process ended first)."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = rx.findall("".join(self._lines))
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    return None
                self._cond.wait(min(left, 0.5))

    def count_log(self, pattern, expect, timeout=IO_TIMEOUT):
        """The number of matches of `pattern`, after waiting (bounded) for at least `expect`."""
        self.wait_log(pattern, timeout, max(expect, 1))
        return len(re.findall(pattern, self.log, re.M))

    # -- life cycle ------------------------------------------------------------

    def running(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def stop(self):
        """SIGTERM (by PID) and wait; SIGKILL if it does not exit. Returns the exit code."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT)
        self._reader.join(STOP_TIMEOUT)
        if not self._reader.is_alive():
            self.proc.stdout.close()
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self):
        """SIGKILL (by PID) and reap: a crash on purpose, so that check_clean_exit() then
        only looks for sanitizer reports. Returns the exit code."""
        self.killed = True
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        return self.stop()

    def check_clean_exit(self):
        """Stop, and raise if the exit was not clean (unless killed on purpose) or a
        sanitizer spoke (once)."""
        rc = self.stop()
        if self._checked:
            return
        self._checked = True
        self.proc.stdout.close()
        log = self.log
        if (rc != 0 and not self.killed) or SANITIZER_RE.search(log):
            raise AssertionError("tern %s exited with %s\n--- log tail ---\n%s"
                                 % (self.name, rc, log[-8000:]))


class Sink(Daemon):
    """A running `tern sink` process and what its start-up log said."""

    name = "sink"
    kinds = ("smtp", "smtps", "http")

    def __init__(self, args, smtp=("127.0.0.1:0",), smtps=(), http="127.0.0.1:0"):
        argv = [TERN, "sink"]
        for a in smtp:
            argv += ["--smtp", a]
        for a in smtps:
            argv += ["--smtps", a]
        argv += ["--http", http or "none"]
        super().__init__(argv + list(args))
        n_expected = len(smtp) + len(smtps) + (1 if http and http != "none" else 0)
        got = sum(len(v) for v in self.listeners.values())
        if got != n_expected:
            self.stop()
            raise RuntimeError("expected %d listening lines, got %d:\n%s" % (n_expected, got, self.log))

    @property
    def smtp_port(self):
        return self.listeners["smtp"][0][1]

    @property
    def smtps_port(self):
        return self.listeners["smtps"][0][1]

    @property
    def http_port(self):
        return self.listeners["http"][0][1]


def start_sink(test, *args, smtp=("127.0.0.1:0",), smtps=(), http="127.0.0.1:0", check_exit=True):
    """Start a sink for a unittest.TestCase; it is stopped by a cleanup."""
    sink = Sink(args, smtp=smtp, smtps=smtps, http=http)
    test.addCleanup(sink.check_clean_exit if check_exit else sink.stop)
    return sink


# ---- HTTP ----------------------------------------------------------------------


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # a dict with lower-case names
        self.body = body  # bytes

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    @property
    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:200])


def http_request(port, method, path, body=None, headers=None, host="127.0.0.1"):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection(host, port, timeout=IO_TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def http_get(port, path, **kw):
    return http_request(port, "GET", path, **kw)


def http_put(port, path, body=None, **kw):
    return http_request(port, "PUT", path, body=body, **kw)


def http_post(port, path, body=None, **kw):
    return http_request(port, "POST", path, body=body, **kw)


def http_delete(port, path, **kw):
    return http_request(port, "DELETE", path, **kw)


def api_json(port, path):
    """GET path, insisting on 200 and JSON."""
    r = http_get(port, path)
    if r.status != 200:
        raise AssertionError("GET %s: %r" % (path, r))
    return r.json


def api_count(port, query=""):
    return api_json(port, "/api/count" + query)["count"]


def api_stats(port):
    return api_json(port, "/api/stats")


# ---- raw SMTP -------------------------------------------------------------------


class Reply:
    """One SMTP reply: code, lines of text (without the code), raw bytes."""

    def __init__(self, code, lines, raw):
        self.code = code
        self.lines = lines
        self.raw = raw

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def enh(self):
        """The enhanced status code of the first line, or None."""
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})(?: |$)", self.lines[0] if self.lines else "")
        return m.group(1) if m else None

    def __repr__(self):
        return "<Reply %r>" % self.raw


class ConnectionClosed(Exception):
    pass


class Dialogue:
    """A raw SMTP conversation over a socket: send bytes, read whole replies."""

    def __init__(self, port, host="127.0.0.1", timeout=IO_TIMEOUT, tls=False):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""
        if tls:
            self.starttls_wrap()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def settimeout(self, t):
        self.sock.settimeout(t)

    def starttls_wrap(self):
        if self.buf:
            raise AssertionError("data pending before TLS: %r" % self.buf)
        self.sock = unverified_context().wrap_socket(self.sock, server_hostname="localhost")

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except ssl.SSLError as e:
            raise ConnectionClosed("TLS: %s" % e)
        except ConnectionResetError as e:
            raise ConnectionClosed("reset: %s" % e)
        if not chunk:
            raise ConnectionClosed("connection closed; unparsed %r" % self.buf)
        self.buf += chunk

    def readline(self):
        while b"\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def reply(self):
        """Read one complete reply (all lines of a multi-line one)."""
        raw = b""
        lines = []
        while True:
            line = self.readline()
            raw += line
            m = re.match(rb"(\d{3})([ -])(.*?)\r?\n$", line, re.S)
            if not m:
                raise AssertionError("malformed reply line %r" % line)
            lines.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) == b" ":
                return Reply(int(m.group(1)), lines, raw)

    def expect(self, code, enh=None):
        r = self.reply()
        if r.code != code or (enh is not None and r.enh != enh):
            raise AssertionError("expected %s %s, got %r" % (code, enh or "", r.raw))
        return r

    def cmd(self, line, code=None, enh=None):
        """Send one command line (CRLF added) and read its reply, checked if code is given."""
        self.send(line.encode() + b"\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply() if code is None else self.expect(code, enh)

    def transaction(self, mail_from, rcpts, data):
        """MAIL, RCPT (each must get 250), DATA and the message (dot-stuffed, CRLF added if
        missing); the end-of-data reply."""
        self.cmd("MAIL FROM:<%s>" % mail_from, 250)
        for r in rcpts:
            self.cmd("RCPT TO:<%s>" % r, 250)
        self.cmd("DATA", 354)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        self.send(dot_stuff(data) + b".\r\n")
        return self.reply()

    def is_closed(self, timeout=IO_TIMEOUT):
        """True if the peer closes the connection (EOF or reset) with nothing more to read."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            if self.buf:
                return False
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                return True
            except socket.timeout:
                return False
            if data:
                self.buf += data
                return False
            return True
        finally:
            self.sock.settimeout(old)

    def nothing_pending(self, wait=0.3):
        """True if no further reply arrives within `wait` seconds (a short look, not a proof)."""
        if self.buf:
            return False
        old = self.sock.gettimeout()
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        except (ConnectionResetError, ssl.SSLError):
            return True
        finally:
            self.sock.settimeout(old)
        if data:
            self.buf += data
            return False
        return True


def message(subject="test", frm="sender@example.com", to="rcpt@example.com", body="Hello.\r\n"):
    """A small RFC 5322 message with CRLF line ends."""
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@tern.test>\r\n\r\n%s"
            % (frm, to, subject, abs(hash((subject, time.monotonic()))), body)).encode()


def dot_stuff(data):
    """SMTP transparency (RFC 5321 4.5.2) of CRLF text."""
    out = data.replace(b"\r\n.", b"\r\n..")
    if out.startswith(b"."):
        out = b"." + out
    return out


def send_raw(port, mail_from, rcpts, data, ehlo="client.test", host="127.0.0.1"):
    """One full transaction over a raw socket; returns the end-of-data reply."""
    with Dialogue(port, host=host) as d:
        d.expect(220)
        d.cmd("EHLO " + ehlo, 250)
        r = d.transaction(mail_from, rcpts, data)
        d.cmd("QUIT", 221)
        return r


def run(argv, timeout=60, input=None):
    """Run a client program; CompletedProcess with text output."""
    return subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout)
