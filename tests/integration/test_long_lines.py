"""Long lines from real senders ([server] max_line_length, issue 10 item 7).

Three tern servers run for the whole module:
  - "strict": the default (a DATA line of at most 998 octets + CRLF), on 127.0.0.1:P;
  - "wide":   max_line_length = 2048, on 127.0.0.2:P (the same port number, so that
              chasquid, which has one outgoing port for every host, reaches both);
  - "huge":   max_line_length = 64K, on 127.0.0.1 (Python's smtplib only).
Each delivers its local domain (d.test, a.test, h.test) into Maildirs and relays r.test to
a next hop written here (Recorder) that keeps the raw DATA of every message.  The aliases
"both@a.test" / "both@h.test" go to the local user and to the next hop at once.

Checked, with smtplib for the edges (998, 999, the limit, the limit + 1, 64 KiB, 1 MiB):
the strict server refuses a line over 998 octets with 550 5.6.0 and the others over their
limit; an accepted message lands in the Maildir with its lines intact; the copy relayed to
the next hop has no line over 998 octets and is exactly what core/linebreak.h documents (a
Python reference here: CRLF before a run of white space, else CRLF SP after 990 octets);
bare CR / LF and NUL are still refused in long lines.

Real senders: a private Postfix (smtp_line_length_limit = 0, as people set it to keep DKIM
signatures whole; with Postfix's default it would break the lines itself) and chasquid
(Debian's package, extracted, never installed: it needs MX records, so it runs in a mount
namespace whose /etc/resolv.conf names a dnsmasq of ours on 127.0.83.1:53).  Each sends a
message with a 1500-octet line to the strict server (550 5.6.0, the sender gives up and
says so in its log) and to the wide one (delivered intact, relayed broken).  Both need
root; missing tools fail the test (scripts/install-deps provides them).
"""

import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from servelib import AS_ROOT, ServeEnv, cert_paths
from ternlib import IO_TIMEOUT, free_port, temp_dir, wait_until, write_file

LIMIT = 998  # what the next hop may see
WIDTH = 990  # pieces of a broken line
DELIVERY_TIMEOUT = 60.0
DNS_ADDR = "127.0.83.1"  # our dnsmasq, for chasquid's MX lookups
CHASQUID_DEB_CACHE = "/var/cache/tern-test"  # scripts/install-deps extracts chasquid there
REFUSED_998 = r"message refused: .*longer than 998 octets"


# ---- the documented line breaking, written again --------------------------------------

def ref_break(msg, limit=LIMIT, width=WIDTH):
    """What core/linebreak.c must produce: lines over `limit` cut into pieces of at most
    `width` octets, before a run of white space that follows text (CRLF inserted), else at
    the width backed off to a UTF-8 lead octet (CRLF SP inserted)."""
    out = bytearray()
    parts = re.split(rb"(\r\n|\r|\n)", msg)
    for k, s in enumerate(parts):
        if k % 2 == 1:
            out += s
            continue
        pad = 0
        while len(s) + pad > limit:
            w = width - pad
            cut, sep = None, b"\r\n"
            for q in range(w, 0, -1):
                if s[q] in b" \t" and s[q - 1] not in b" \t":
                    cut = q
                    break
            if cut is None:
                q = w
                while q > 1 and w - q < 3 and (s[q] & 0xC0) == 0x80:
                    q -= 1
                cut, sep = q, b"\r\n "
            out += s[:cut] + sep
            s = s[cut:]
            pad = len(sep) - 2
        out += s
    return bytes(out)


def longest_line(data):
    return max((len(x) for x in re.split(rb"\r\n|\r|\n", data)), default=0)


# ---- the next hop ---------------------------------------------------------------------

class Recorder:
    """A minimal SMTP server on 127.0.0.1 that accepts everything and keeps the raw DATA
    (as on the wire, dot-stuffed, up to the final ".CRLF") of each message."""

    def __init__(self, cleanup):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.messages = []  # (rcpts, raw)
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        cleanup(self.stop)

    def stop(self):
        self.stopping = True
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
        except OSError:
            pass
        self.thread.join(5)
        self.sock.close()

    def _serve(self):
        while not self.stopping:
            conn, _ = self.sock.accept()
            if self.stopping:
                conn.close()
                break
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        conn.settimeout(IO_TIMEOUT)
        f = conn.makefile("rb")
        rcpts = []
        try:
            conn.sendall(b"220 recorder.test ESMTP\r\n")
            while True:
                line = f.readline(4096)
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-recorder.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                elif verb == b"RCPT":
                    rcpts.append(line.strip().decode(errors="replace"))
                    conn.sendall(b"250 ok\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go on\r\n")
                    raw = bytearray()
                    while not (raw.endswith(b"\r\n.\r\n") or raw == b".\r\n"):
                        chunk = f.readline(1 << 20)
                        if not chunk or len(raw) > (16 << 20):
                            return
                        raw += chunk
                    with self.lock:
                        self.messages.append((rcpts, bytes(raw)))
                    rcpts = []
                    conn.sendall(b"250 recorded\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")
        except OSError:
            pass
        finally:
            f.close()
            conn.close()

    def find(self, marker, timeout=DELIVERY_TIMEOUT):
        """The raw DATA of the message containing `marker`, waiting (bounded) for it."""
        def look():
            with self.lock:
                for _r, raw in self.messages:
                    if marker in raw:
                        return raw
            return None
        return wait_until(look, timeout, 0.05)


def unstuff(raw):
    """Wire DATA (ending in .CRLF) to the message: dots removed, the end marker dropped."""
    assert raw.endswith(b".\r\n")
    body = raw[:-3]
    lines = body.split(b"\r\n")
    return b"\r\n".join(x[1:] if x.startswith(b".") else x for x in lines)


# ---- module fixtures: the three tern servers and the next hop --------------------------

M = {}


def start_tern(name, addr, port, extra):
    env = ServeEnv(cleanup=unittest.addModuleCleanup,
                   server=dict({"hostname": "mx.%s.tern.test" % name}, **extra),
                   listen={"smtp": "%s:%d" % (addr, port), "submission": None,
                           "submissions": None},
                   remote={"routes": "r.test=[127.0.0.1]:%d" % M["rec"].port, "timeout": "20s"})
    domain = {"strict": "d.test", "wide": "a.test", "huge": "h.test"}[name]
    env.add_user("u@" + domain, "pw")
    env.write_aliases(domain, "both: u@%s, x@r.test\n" % domain)
    srv = env.start()
    return env, srv, domain


def setUpModule():
    M["rec"] = Recorder(unittest.addModuleCleanup)
    port = free_port("127.0.0.1", "127.0.0.2")
    M["port"] = port
    M["strict"] = start_tern("strict", "127.0.0.1", port, {})
    M["wide"] = start_tern("wide", "127.0.0.2", port, {"max_line_length": "2048"})
    M["huge"] = start_tern("huge", "127.0.0.1", 0, {"max_line_length": "64K"})


def message(subject, body, headers=b""):
    return (b"From: <s@ext.test>\r\nTo: <u@x.test>\r\nSubject: " + subject.encode() + b"\r\n"
            + headers + b"Message-ID: <" + subject.replace(" ", ".").encode() + b"@ext.test>\r\n\r\n"
            + body)


def long_body(n, fill=b"x", words=False):
    """A body with one line of exactly n octets (CRLF excluded) between two short ones."""
    if words:
        unit = b"word%s " % fill
        line = (unit * (n // len(unit) + 1))[:n]
    else:
        line = fill * n
    return b"before\r\n" + line + b"\r\nafter\r\n"


class Base(unittest.TestCase):
    def diag(self, *names):
        out = ""
        for n in names or ("strict", "wide", "huge"):
            out += "\n--- tern %s log (tail) ---\n%s" % (n, M[n][1].log[-3000:])
        return out

    def send(self, which, rcpts, data):
        env, srv, _ = M[which]
        addr = "127.0.0.2" if which == "wide" else "127.0.0.1"
        with smtplib.SMTP(addr, srv.port("smtp"), local_hostname="client.test",
                          timeout=IO_TIMEOUT) as s:
            s.ehlo()
            return s.sendmail("s@ext.test", rcpts, data)

    def refused(self, which, data, rcpt=None):
        rcpt = rcpt or "u@" + M[which][2]
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            self.send(which, [rcpt], data)
        self.assertEqual(cm.exception.smtp_code, 550, cm.exception)
        return cm.exception.smtp_error.decode(errors="replace")

    def local_copy(self, which, subject):
        """The Maildir copy, with CRLF line ends again (Maildir files have LF)."""
        env, _, domain = M[which]
        msgs = env.wait_maildir("u@" + domain, 1, timeout=DELIVERY_TIMEOUT, subject=subject)
        self.assertEqual(len(msgs), 1, "not delivered locally" + self.diag(which))
        return msgs[0].raw.replace(b"\n", b"\r\n")

    def assertHas(self, needle, hay, what):
        """assertIn without printing megabytes."""
        if needle not in hay:
            self.fail("%s: %d octets not found in %d octets (%r ...)" % (what, len(needle), len(hay),
                                                                       hay[:300]))

    def check_relayed(self, marker, data):
        """The next hop's copy: no line over 998 octets on the wire, and the message is the
        original with its long lines broken as documented."""
        raw = M["rec"].find(marker)
        self.assertIsNotNone(raw, "nothing relayed to the next hop" + self.diag())
        self.assertLessEqual(longest_line(raw), LIMIT)
        got = unstuff(raw)
        want = ref_break(data)
        self.assertTrue(got.endswith(want), "relayed copy differs from the documented breaking")
        return got


# ---- Python's smtplib: the edges ----------------------------------------------------

class Edges(Base):
    def test_default_998_ok_999_refused(self):
        subj = "strict-998 %f" % time.time()
        data = message(subj, long_body(998))
        self.assertEqual(self.send("strict", ["u@d.test"], data), {})
        self.assertHas(data.split(b"\r\n\r\n", 1)[1], self.local_copy("strict", subj), "local copy")
        text = self.refused("strict", message("strict-999", long_body(999)))
        self.assertRegex(text, r"^5\.6\.0 .*longer than 998 octets")

    def test_wide_limits(self):
        for n in (998, 999, 2048):
            subj = "wide-%d %f" % (n, time.time())
            data = message(subj, long_body(n))
            self.assertEqual(self.send("wide", ["u@a.test"], data), {})
            self.assertHas(b"\r\n" + b"x" * n + b"\r\n", self.local_copy("wide", subj), "local copy")
        text = self.refused("wide", message("wide-2049", long_body(2049)))
        self.assertRegex(text, r"^5\.6\.0 .*longer than 2048 octets")

    def test_huge_64k_line_local_and_relayed(self):
        subj = "huge-64k %f" % time.time()
        body = long_body(65536, b"y")
        data = message(subj, body)
        self.assertEqual(self.send("huge", ["both@h.test"], data), {})
        self.assertHas(b"\r\n" + b"y" * 65536 + b"\r\n", self.local_copy("huge", subj), "local copy")
        got = self.check_relayed(subj.encode(), data)
        self.assertHas(b"\r\n" + b"y" * WIDTH + b"\r\n " + b"y" * (WIDTH - 1) + b"\r\n ", got, "relayed")
        text = self.refused("huge", message("huge-64k+1", long_body(65537)))
        self.assertRegex(text, r"^5\.6\.0 .*longer than 65536 octets")

    def test_huge_megabyte_line_refused_session_in_step(self):
        """A 1 MiB line is refused at the end of data; the session goes on in step."""
        _, srv, _ = M["huge"]
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), local_hostname="client.test",
                          timeout=IO_TIMEOUT) as s:
            s.ehlo()
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                s.sendmail("s@ext.test", ["u@h.test"], message("huge-1m", long_body(1 << 20)))
            self.assertEqual(cm.exception.smtp_code, 550)
            self.assertEqual(s.noop()[0], 250)
            subj = "huge-after %f" % time.time()
            self.assertEqual(s.sendmail("s@ext.test", ["u@h.test"], message(subj, b"ok\r\n")), {})
        self.local_copy("huge", subj)

    def test_smuggling_rules_hold_with_long_lines(self):
        line = b"z" * 1500
        # a bare LF (and a would-be end of data after it) inside a long line
        text = self.refused("wide", message("smuggle-lf", b"a\r\n" + line + b"\n.\n" + line + b"\r\n"))
        self.assertIn("bare CR or LF", text)
        text = self.refused("wide", message("smuggle-cr", b"a\r\n" + line + b"\r.\r" + line + b"\r\n"))
        self.assertIn("bare CR or LF", text)
        text = self.refused("huge", message("smuggle-nul", line + b"\0" + line + b"\r\n"))
        self.assertIn("NUL", text)

    def test_relayed_breaking_as_documented(self):
        """Headers fold at white space; body lines break before a space, or with CRLF SP;
        UTF-8 sequences stay whole; a dot at a cut never starts a line."""
        subj = "wide-relay %f" % time.time()
        refs = b"References:" + b"".join(b" <id%04d@ext.test>" % i for i in range(90)) + b"\r\n"
        body = (long_body(1500, b"a", words=True) + long_body(1500, b"b")
                + b"." * 1200 + b"\r\n" + "é".encode() * 700 + b"\r\n")
        data = message(subj, body, headers=refs)
        self.assertEqual(self.send("wide", ["both@a.test"], data), {})
        local = self.local_copy("wide", subj)
        self.assertHas(refs, local, "local header")
        self.assertHas(body, local, "local body")
        got = self.check_relayed(subj.encode(), data)
        head = got.split(b"\r\n\r\n", 1)[0]
        unfolded = re.sub(rb"\r\n(?=[ \t])", b"", head)  # RFC 5322 unfolding
        self.assertHas(refs, unfolded + b"\r\n", "unfolded header")  # folding only: unchanged
        self.assertHas(b"\r\n" + b"b" * WIDTH + b"\r\n " + b"b" * 510 + b"\r\n", got, "relayed")
        # the dots line: its first piece alone begins with a dot (continuations with a space)
        self.assertEqual([x for x in got.split(b"\r\n") if x.startswith(b".")], [b"." * WIDTH])
        got.decode("utf-8")  # still valid UTF-8: no sequence cut

    def test_config_range(self):
        env, _, _ = M["strict"]
        for bad in ("997", "65537", "1M", "x"):
            p = subprocess.run([os.environ["TERN"], "check-config", "--config", self.conf_with(bad)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
            self.assertNotEqual(p.returncode, 0, bad)
            self.assertIn(b"max_line_length", p.stdout)

    def conf_with(self, value):
        d = temp_dir(self.addCleanup, "tern-ll-conf-")
        return write_file(os.path.join(d, "tern.conf"),
                          "[server]\nhostname = h.test\ndata_dir = data\nmax_line_length = %s\n" % value)


# ---- Postfix as the sender ----------------------------------------------------------

class PostfixSender(Base):
    @classmethod
    def setUpClass(cls):
        from test_postfix import PF_ADDR, Postfix, skip_reason
        why = skip_reason()
        if why:
            raise AssertionError("Postfix is needed (scripts/install-deps): " + why)
        cert, key = cert_paths()
        cls.pf_addr = PF_ADDR
        cls.pf_port = free_port(PF_ADDR)
        port = M["port"]
        pf = Postfix(cls.pf_port, ["bob@p.test"],
                     {"d.test": "smtp:[127.0.0.1]:%d" % port, "a.test": "smtp:[127.0.0.2]:%d" % port},
                     cert, key)
        cls.addClassCleanup(pf.remove)
        cls.addClassCleanup(pf.stop)
        with open(os.path.join(pf.etc, "main.cf"), "a") as f:
            # pass long lines as they are (the default, 998, would break them itself)
            f.write("smtp_line_length_limit = 0\n")
        pf.start()
        cls.pf = pf

    def submit(self, rcpt, data):
        with smtplib.SMTP(self.pf_addr, self.pf_port, local_hostname="client.test",
                          timeout=IO_TIMEOUT) as s:
            s.ehlo()
            return s.sendmail("bob@p.test", [rcpt], data)

    def test_postfix_strict_tern_refuses(self):
        subj = "pf-strict %f" % time.time()
        seen = len(re.findall(REFUSED_998, M["strict"][1].log, re.M))
        self.assertEqual(self.submit("u@d.test", message(subj, long_body(1500, words=True))), {})
        rx = (r"to=<u@d\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=bounced "
              r"\(host .* said: 550 5\.6\.0 Error: message has a line longer than 998 octets"
              % M["port"])
        self.assertTrue(wait_until(lambda: re.search(rx, self.pf.log), DELIVERY_TIMEOUT, 0.1),
                        "no bounce in Postfix's log\n" + self.pf.log[-3000:] + self.diag("strict"))
        self.assertTrue(M["strict"][1].wait_log(REFUSED_998, count=seen + 1))
        self.assertFalse([m for m in M["strict"][0].maildir("u@d.test") if m["Subject"] == subj])

    def test_postfix_wide_tern_accepts_and_relays(self):
        subj = "pf-wide %f" % time.time()
        body = long_body(1500, words=True) + long_body(1500, b"q")
        data = message(subj, body)
        self.assertEqual(self.submit("both@a.test", data), {})
        local = self.local_copy("wide", subj)
        self.assertHas(body, local, "local copy")  # the lines intact, as Postfix sent them
        self.assertHas(b"(Postfix)", local, "Postfix's Received")
        raw = M["rec"].find(subj.encode())
        self.assertIsNotNone(raw, "not relayed" + self.diag("wide"))
        self.assertLessEqual(longest_line(raw), LIMIT)
        self.assertTrue(unstuff(raw).endswith(ref_break(body)))


# ---- chasquid as the sender ---------------------------------------------------------

def chasquid_binary():
    """chasquid from Debian's package: installed, or extracted (never installed: the
    package would start a system service) into CHASQUID_DEB_CACHE by scripts/install-deps
    (or now, with apt-get download, if that was not done)."""
    for p in (os.environ.get("TERN_CHASQUID", ""), "/usr/bin/chasquid",
              os.path.join(CHASQUID_DEB_CACHE, "chasquid/usr/bin/chasquid"),
              os.path.expanduser("~/.cache/tern-bench/chasquid/usr/bin/chasquid")):
        if p and os.access(p, os.X_OK):
            return p
    os.makedirs(CHASQUID_DEB_CACHE, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=CHASQUID_DEB_CACHE)
    try:
        subprocess.run(["apt-get", "download", "chasquid"], cwd=tmp, check=True, timeout=300,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deb = [f for f in os.listdir(tmp) if f.endswith(".deb")][0]
        subprocess.run(["dpkg-deb", "-x", os.path.join(tmp, deb), os.path.join(tmp, "x")],
                       check=True, timeout=120)
        os.rename(os.path.join(tmp, "x"), os.path.join(CHASQUID_DEB_CACHE, "chasquid"))
    finally:
        shutil.rmtree(tmp, True)
    return os.path.join(CHASQUID_DEB_CACHE, "chasquid/usr/bin/chasquid")


class ChasquidSender(Base):
    @classmethod
    def setUpClass(cls):
        if not AS_ROOT:
            raise AssertionError("chasquid's test needs root (a mount namespace, port 53)")
        for tool in ("unshare", "dnsmasq", "openssl"):
            if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool):
                raise AssertionError("%s is needed (scripts/install-deps)" % tool)
        binary = chasquid_binary()
        d = temp_dir(cls.addClassCleanup, "tern-chasquid-")
        cls.dir = d
        cls.procs = []
        cls.addClassCleanup(cls.stop_procs)
        # DNS: MX records for d.test (strict tern) and a.test (wide tern)
        dns = subprocess.Popen(
            ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=",
             "--port=53", "--listen-address=" + DNS_ADDR, "--bind-interfaces", "--no-resolv",
             "--no-hosts", "--local=/test/", "--mx-host=d.test,mx.d.test,10",
             "--mx-host=a.test,mx.a.test,10", "--host-record=mx.d.test,127.0.0.1",
             "--host-record=mx.a.test,127.0.0.2", "--log-facility=" + os.path.join(d, "dns.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        cls.procs.append(dns)
        etc = os.path.join(d, "etc")
        os.makedirs(os.path.join(etc, "domains", "c.test"))
        os.makedirs(os.path.join(etc, "certs", "mx.c.test"))
        os.makedirs(os.path.join(d, "data"))
        write_file(os.path.join(etc, "domains", "c.test", "aliases"),
                   "strict: u@d.test\nwide: both@a.test\n")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj", "/CN=mx.c.test",
                        "-keyout", os.path.join(etc, "certs", "mx.c.test", "privkey.pem"),
                        "-out", os.path.join(etc, "certs", "mx.c.test", "fullchain.pem")],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        cls.port = free_port()
        cls.mail_log = os.path.join(d, "mail.log")
        write_file(os.path.join(etc, "chasquid.conf"),
                   'hostname: "mx.c.test"\nsmtp_address: "127.0.0.1:%d"\n'
                   'submission_address: "127.0.0.1:%d"\nsubmission_over_tls_address: "127.0.0.1:%d"\n'
                   'monitoring_address: ""\ndata_dir: "%s"\nmail_log_path: "%s"\n'
                   % (cls.port, free_port(), free_port(), os.path.join(d, "data"), cls.mail_log))
        write_file(os.path.join(d, "resolv.conf"), "nameserver %s\n" % DNS_ADDR)
        # its own mount namespace: /etc/resolv.conf names our dnsmasq for chasquid alone
        script = ('mount --bind "$1" /etc/resolv.conf && shift && exec "$@"')
        cls.log_path = os.path.join(d, "chasquid.log")
        with open(os.path.join(d, "stderr.log"), "wb") as err:
            ch = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                 os.path.join(d, "resolv.conf"), binary, "-config_dir", etc,
                 "-testing__outgoing_smtp_port", str(M["port"]), "-logfile", cls.log_path],
                stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT)
        cls.procs.append(ch)

        def up():
            try:
                with socket.create_connection(("127.0.0.1", cls.port), timeout=2) as s:
                    return s.recv(512).startswith(b"220")
            except OSError:
                return False

        if not wait_until(up, 30, 0.1):
            raise AssertionError("chasquid did not start:\n" + cls.logs())

    @classmethod
    def stop_procs(cls):
        for p in reversed(cls.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)

    @classmethod
    def logs(cls):
        out = ""
        for n in ("chasquid.log", "mail.log", "stderr.log", "dns.log"):
            try:
                with open(os.path.join(cls.dir, n), errors="replace") as f:
                    out += "--- %s ---\n%s\n" % (n, f.read()[-3000:])
            except OSError:
                pass
        return out

    def submit(self, rcpt, data):
        with smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.test",
                          timeout=IO_TIMEOUT) as s:
            s.ehlo()
            return s.sendmail("s@ext.test", [rcpt], data)

    def read(self, name):
        try:
            with open(os.path.join(self.dir, name), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def test_chasquid_strict_tern_refuses(self):
        subj = "ch-strict %f" % time.time()
        seen = len(re.findall(REFUSED_998, M["strict"][1].log, re.M))
        self.assertEqual(self.submit("strict@c.test", message(subj, long_body(1500))), {})
        self.assertTrue(M["strict"][1].wait_log(REFUSED_998, DELIVERY_TIMEOUT, count=seen + 1),
                        self.logs())
        # chasquid takes the 550 as permanent: it fails the recipient (and bounces)
        rx = r"u@d\.test.*(failed permanently|permanent).*550 5\.6\.0"
        self.assertTrue(wait_until(lambda: re.search(rx, self.read("mail.log") +
                                                     self.read("chasquid.log")),
                                   DELIVERY_TIMEOUT, 0.1), self.logs())

    def test_chasquid_wide_tern_accepts_and_relays(self):
        subj = "ch-wide %f" % time.time()
        body = long_body(1500, words=True) + long_body(1500, b"c")
        data = message(subj, body)
        self.assertEqual(self.submit("wide@c.test", data), {})
        local = wait_until(lambda: [m for m in M["wide"][0].maildir("u@a.test")
                                    if m["Subject"] == subj], DELIVERY_TIMEOUT, 0.1)
        self.assertTrue(local, "chasquid's message not delivered by tern\n" + self.logs()
                        + self.diag("wide"))
        self.assertHas(body, local[0].raw.replace(b"\n", b"\r\n"), "local copy")  # intact
        raw = M["rec"].find(subj.encode())
        self.assertIsNotNone(raw, "not relayed" + self.diag("wide"))
        self.assertLessEqual(longest_line(raw), LIMIT)
        self.assertTrue(unstuff(raw).endswith(ref_break(body)))


if __name__ == "__main__":
    unittest.main()
