"""MTA-STS (RFC 8461) for `tern serve`'s delivery by MX (issue 11), on loopback only.

Real peers: a dnsmasq started here serves the `_mta-sts.DOMAIN` TXT records, the MX
records and the A records (127.0.0.x); three HTTPS servers (Python http.server + ssl,
127.0.0.30, 127.0.0.31 and ::1 on one port) serve the policies with a certificate from a
CA this test makes with openssl; `tern sink` instances are the receiving MX hosts
(127.0.0.11..14 on one port):

  sink A  .11  STARTTLS, certificate (test CA) for mx.enf.test, mx.ok.pattern.test,
               mx.change.test, mx2.cached.test, mx.testok.test
  sink B  .12  STARTTLS, certificate for evil.pattern.test, mx1.cached.test
  sink C  .13  STARTTLS, certificate for other.test only
  sink D  .14  no STARTTLS

tern finds them through [remote] dns_servers, [remote] port, [remote] tls_ca (the
test CA, for MX certificates) and [mta_sts] ca / port (the HTTPS servers).  Cases:
enforce with a matching MX and a valid certificate -> delivered over verified TLS;
enforce with a certificate for another name or no STARTTLS -> deferred with 4.7.5,
nothing reaches the sink, nothing bounces; mode none -> delivered as before; enforce with an MX that matches no pattern -> that host
is never contacted; testing -> delivered, what enforce would refuse is logged (and
nothing when all is well); an
explicit [remote] tls_policy wins over MTA-STS; a policy that is garbage, served as
text/html, too large, with 404, with a redirect, or over a certificate for another
name, and a TXT record that is garbage or doubled -> no policy (delivered as
before, in clear) and logged; a new TXT id -> the new policy; a restart with the
HTTPS server down -> the policy from the cache on disk; a policy server reachable
over IPv6 only.

Every wait is bounded; every process is ended by its own PID.
"""

import http.server
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from servelib import ServeEnv, wait_until
from ternlib import (IO_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT, api_json, free_port, message,
                     start_sink, unverified_context)

PASSWORD = "mta-sts-test-pw"
SENDER = "sender@here.test"
DELIVERY_TIMEOUT = 60.0

SINK_IPS = {"A": "127.0.0.11", "B": "127.0.0.12", "C": "127.0.0.13", "D": "127.0.0.14"}
HTTPS_IPS = ("127.0.0.30", "127.0.0.31", "::1")  # ::1: ipv6.test (AAAA only)
SINK_NAMES = {
    "A": ["mx.enf.test", "mx.ok.pattern.test", "mx.change.test", "mx2.cached.test",
          "mx.testok.test"],
    "B": ["evil.pattern.test", "mx1.cached.test"],
    "C": ["other.test"],
}

# domain -> MX hosts [(name, preference, sink)]
MX = {
    "enf.test": [("mx.enf.test", 10, "A")],
    "pattern.test": [("evil.pattern.test", 10, "B"), ("mx.ok.pattern.test", 20, "A")],
    "badcert.test": [("mx.badcert.test", 10, "C")],
    "notls.test": [("mx.notls.test", 10, "D")],
    "testing.test": [("mx.testing.test", 10, "C"), ("unlisted.testing.test", 20, "D")],
    "change.test": [("mx.change.test", 10, "A")],
    "cached.test": [("mx1.cached.test", 10, "B"), ("mx2.cached.test", 20, "A")],
    "tlspol.test": [("mx.tlspol.test", 10, "D")],
    "none.test": [("mx.none.test", 10, "D")],
    "testok.test": [("mx.testok.test", 10, "A")],
    "ipv6.test": [("mx.ipv6.test", 10, "D")],
}
# bad-input domains: MX on sink D (no TLS); the policy (if it were used) would refuse it
BAD = ("garbage", "ctype", "big", "status", "redirect", "wrongcert", "txtbad", "txtdup")
for _b in BAD:
    MX["%s.test" % _b] = [("mx.%s.test" % _b, 10, "D")]

# TXT records (the text after "_mta-sts.DOMAIN,"; a comma would split strings)
TXT = {d: ["v=STSv1; id=%s1" % d.split(".")[0]] for d in MX}
TXT["txtbad.test"] = ["v=STSv1; id=not-alnum!"]
TXT["txtdup.test"] = ["v=STSv1; id=one", "v=STSv1; id=two"]
TXT["cached.test"] = ["v=STSv1; id=k1"]
TXT["change.test"] = ["v=STSv1; id=c1"]


def policy(mode, *mx, max_age=86400):
    return ("version: STSv1\r\nmode: %s\r\n%smax_age: %d\r\n"
            % (mode, "".join("mx: %s\r\n" % m for m in mx), max_age)).encode()


def refusing(dom):
    return policy("enforce", "nomatch.%s" % dom)


# host -> (status, content type, body, extra headers)
POLICIES = {
    "enf.test": (200, "text/plain", policy("enforce", "mx.enf.test"), {}),
    "pattern.test": (200, "text/plain; charset=utf-8", policy("enforce", "*.ok.pattern.test"), {}),
    "badcert.test": (200, "text/plain", policy("enforce", "mx.badcert.test"), {}),
    "notls.test": (200, "text/plain", policy("enforce", "mx.notls.test"), {}),
    "testing.test": (200, "text/plain", policy("testing", "mx.testing.test"), {}),
    "change.test": (200, "text/plain", policy("enforce", "mx.change.test"), {}),
    "cached.test": (200, "text/plain", policy("enforce", "mx2.cached.test"), {}),
    "tlspol.test": (200, "text/plain", refusing("tlspol.test"), {}),
    "none.test": (200, "text/plain", policy("none", "nomatch.none.test"), {}),
    "testok.test": (200, "text/plain", policy("testing", "mx.testok.test"), {}),
    "ipv6.test": (200, "text/plain", policy("enforce", "mx.ipv6.test"), {}),
    "garbage.test": (200, "text/plain", b"\x00\xffthis is not a policy\r\n<html>", {}),
    "ctype.test": (200, "text/html", refusing("ctype.test"), {}),
    "big.test": (200, "text/plain", refusing("big.test") + b"x: " + b"y" * 70000 + b"\r\n", {}),
    "status.test": (404, "text/plain", refusing("status.test"), {}),
    "redirect.test": (301, "text/plain", b"moved\r\n",
                      {"Location": "https://mta-sts.enf.test/redirected"}),
    "wrongcert.test": (200, "text/plain", refusing("wrongcert.test"), {}),
    "txtbad.test": (200, "text/plain", refusing("txtbad.test"), {}),
    "txtdup.test": (200, "text/plain", refusing("txtdup.test"), {}),
}


# ---- a CA and certificates made with openssl ---------------------------------------------


def openssl(*args):
    p = subprocess.run(["openssl"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (args[0], p.stdout.decode(errors="replace")))


class TestCA:
    def __init__(self, d):
        self.dir = d
        self.cert = os.path.join(d, "ca.pem")
        self.key = os.path.join(d, "ca.key")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=tern MTA-STS test CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name, dns_names):
        """(cert, key) for dns_names, signed by the CA."""
        cert, key = (os.path.join(self.dir, "%s.%s" % (name, ext)) for ext in ("pem", "key"))
        csr, ext = os.path.join(self.dir, name + ".csr"), os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                    "subjectAltName=%s\n" % ",".join("DNS:" + n for n in dns_names))
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", "/CN=" + dns_names[0])
        openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
        return cert, key


# ---- dnsmasq ---------------------------------------------------------------------------


def dns_query(port, name, qtype, timeout=2.0):
    """One raw DNS query to 127.0.0.1:port; (rcode, answer count)."""
    q = struct.pack(">HHHHHH", os.getpid() & 0xFFFF, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, ("127.0.0.1", port))
        data, _ = s.recvfrom(4096)
    flags, _, an = struct.unpack(">HHH", data[2:8])
    return flags & 0xF, an


def dns_records(txt):
    recs = ["--local=/test/"]
    for dom, hosts in MX.items():
        for name, pref, sink in hosts:
            recs += ["--mx-host=%s,%s,%d" % (dom, name, pref),
                     "--host-record=%s,%s" % (name, SINK_IPS[sink])]
        which = {"cached.test": 1, "ipv6.test": 2}.get(dom, 0)
        recs.append("--host-record=mta-sts.%s,%s" % (dom, HTTPS_IPS[which]))
    for dom, texts in txt.items():
        for t in texts:
            recs.append("--txt-record=_mta-sts.%s,%s" % (dom, t))
    return recs


class Dnsmasq:
    """dnsmasq in the foreground on 127.0.0.1:port; restartable with other records on the
    same port; stopped by PID."""

    def __init__(self, records, port=None):
        self.dir = tempfile.mkdtemp(prefix="tern-sts-dns-")
        self.proc = None
        self.port = port
        for _ in range(5):
            if port is None:
                self.port = free_port("127.0.0.1")
            self.start(records)
            if self.ready():
                return
            self.stop()
        raise RuntimeError("dnsmasq did not start:\n%s" % self.log())

    def start(self, records):
        self.log_path = os.path.join(self.dir, "dnsmasq.log")
        argv = ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--port=%d" % self.port,
                "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=", "--log-queries",
                "--cache-size=0"] + records
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)

    def ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if dns_query(self.port, "mx.enf.test", 1, timeout=0.5) == (0, 1):
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def restart(self, records):
        self.stop()
        for _ in range(20):  # the port is ours: wait for it to be free again
            self.start(records)
            if self.ready():
                return
            self.stop()
            time.sleep(0.2)
        raise RuntimeError("dnsmasq did not restart:\n%s" % self.log())

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT)

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, True)


# ---- the policy servers ------------------------------------------------------------------


class PolicyServer:
    """HTTPS on ip:port in a thread of this process; answers by Host from POLICIES and
    records every request as (host, path)."""

    def __init__(self, ip, port, cert, key, table):
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                outer.requests.append((host, self.path))
                dom = host[len("mta-sts."):] if host.startswith("mta-sts.") else ""
                if self.path != "/.well-known/mta-sts.txt" or dom not in table:
                    self.send_error(404)
                    return
                status, ctype, body, extra = table[dom]
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in ip else socket.AF_INET

        self.httpd = Server((ip, port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.up = True

    def fetches(self, dom):
        return sum(1 for h, _ in self.requests if h == "mta-sts." + dom)

    def stop(self):
        if self.up:
            self.up = False
            self.httpd.shutdown()
            self.httpd.server_close()


class ClassScope:
    def __init__(self, cls):
        self.addCleanup = cls.addClassCleanup


def submit(srv, mails):
    host, port = srv.listeners["submission"][0]
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=IO_TIMEOUT) as s:
        s.starttls(context=unverified_context())
        s.ehlo("client.test")
        s.login(SENDER, PASSWORD)
        for rcpt, subject in mails:
            refused = s.sendmail(SENDER, [rcpt], message(subject, SENDER, rcpt))
            if refused:
                raise AssertionError("refused: %r" % refused)


class MtaStsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tern-sts-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        ca = TestCA(cls.tmp)
        cls.dns = Dnsmasq(dns_records(TXT))
        cls.addClassCleanup(cls.dns.close)
        # the policy servers: one certificate for every mta-sts name but wrongcert's
        names = ["mta-sts.%s" % d for d in MX if d != "wrongcert.test"]
        hcert, hkey = ca.issue("https", names)
        cls.https_port = free_port(*HTTPS_IPS)
        cls.https = [PolicyServer(ip, cls.https_port, hcert, hkey, POLICIES) for ip in HTTPS_IPS]
        for h in cls.https:
            cls.addClassCleanup(h.stop)
        # the MX hosts
        cls.mx_port = free_port(*SINK_IPS.values())
        cls.sinks = {}
        for s, ip in SINK_IPS.items():
            args = ["--hostname", "sink-%s.test" % s.lower(), "--quiet"]
            if s in SINK_NAMES:
                cert, key = ca.issue("sink" + s, SINK_NAMES[s])
                args += ["--tls-cert", cert, "--tls-key", key]
            cls.sinks[s] = start_sink(ClassScope(cls), *args, smtp=("%s:%d" % (ip, cls.mx_port),))
        cls.env = ServeEnv(cleanup=cls.addClassCleanup, server={"hostname": "mx.here.test"},
                           queue={"retry": "1s", "give_up": "600s"},
                           remote={"dns_servers": "127.0.0.1:%d" % cls.dns.port,
                                   "port": str(cls.mx_port), "tls": "may", "timeout": "10s",
                                   "tls_ca": "ca.pem", "tls_policy": "tlspol.test=none"},
                           mta_sts={"ca": "ca.pem", "port": str(cls.https_port)})
        shutil.copy(ca.cert, cls.env.path("ca.pem"))
        cls.env.conf["remote"]["tls_ca"] = cls.env.path("ca.pem")
        cls.env.conf["mta_sts"]["ca"] = cls.env.path("ca.pem")
        cls.env.write_conf()
        cls.env.add_user(SENDER, PASSWORD)
        cls.srv = cls.env.start()

    # -- helpers --

    def received(self, sink, subject):
        msgs = api_json(self.sinks[sink].http_port, "/api/messages?limit=1000")["messages"]
        return [m for m in msgs if m["subject"] == subject]

    def wait_received(self, sink, subject):
        self.assertTrue(wait_until(lambda: self.received(sink, subject), DELIVERY_TIMEOUT, 0.1),
                        "%r never reached sink %s\n%s" % (subject, sink, self.srv.log[-4000:]))

    def log_line(self, rcpt, what):
        """The first delivery log line of rcpt with `what` (delivered / deferred)."""
        rx = r"^.*to=<%s> via=smtp .*%s.*$" % (re.escape(rcpt), what)
        found = self.srv.wait_log(rx, DELIVERY_TIMEOUT)
        self.assertTrue(found, "no %s line for %s\n%s" % (what, rcpt, self.srv.log[-4000:]))
        return found[0]

    def nowhere(self, subject):
        for s in self.sinks:
            self.assertEqual(self.received(s, subject), [], "%r reached sink %s" % (subject, s))

    # -- enforce --

    def test_enforce_valid(self):
        submit(self.srv, [("u@enf.test", "enforce ok")])
        self.wait_received("A", "enforce ok")
        line = self.log_line("u@enf.test", "delivered")
        self.assertRegex(line, r"via=smtp mx\.enf\.test\[127\.0\.0\.11\]:\d+ tls=TLSv1\.[23] verified")
        self.assertRegex(self.srv.log, r"mta-sts: enf\.test: fetched id=enf1 mode=enforce "
                                       r"max_age=86400")

    def test_enforce_wrong_certificate(self):
        submit(self.srv, [("u@badcert.test", "enforce badcert")])
        line = self.log_line("u@badcert.test", "deferred")
        self.assertRegex(line, r"deferred: 451 4\.7\.5 MTA-STS policy of badcert\.test \(enforce\): "
                               r".*TLS certificate of mx\.badcert\.test not verified")
        time.sleep(1.5)  # a retry or two
        self.nowhere("enforce badcert")
        self.assertEqual(self.env.maildir(SENDER), [], "a transient failure bounced")

    def test_enforce_no_starttls(self):
        submit(self.srv, [("u@notls.test", "enforce notls")])
        line = self.log_line("u@notls.test", "deferred")
        self.assertRegex(line, r"deferred: 451 4\.7\.5 MTA-STS policy of notls\.test \(enforce\): "
                               r".*no STARTTLS")
        time.sleep(1.5)
        self.nowhere("enforce notls")
        self.assertEqual(api_json(self.sinks["D"].http_port, "/api/messages?to=u@notls.test")
                         ["messages"], [])

    def test_enforce_mx_pattern(self):
        before = api_json(self.sinks["B"].http_port, "/api/stats")
        submit(self.srv, [("u@pattern.test", "enforce pattern")])
        self.wait_received("A", "enforce pattern")
        self.assertRegex(self.srv.log, r"mta-sts: pattern\.test: MX host evil\.pattern\.test "
                                       r"matches no mx pattern of the policy \(\*\.ok\.pattern\.test\): "
                                       r"not tried")
        self.assertRegex(self.log_line("u@pattern.test", "delivered"),
                         r"via=smtp mx\.ok\.pattern\.test\[127\.0\.0\.11\]")
        self.assertEqual(self.received("B", "enforce pattern"), [])
        after = api_json(self.sinks["B"].http_port, "/api/stats")
        self.assertEqual(before["connections"], after["connections"],
                         "the MX host outside the policy was contacted")

    # -- testing, explicit policy --

    def test_testing_mode(self):
        submit(self.srv, [("u@testing.test", "testing mode")])
        self.wait_received("C", "testing mode")
        self.log_line("u@testing.test", "delivered")
        self.assertRegex(self.srv.log, r"mta-sts testing: testing\.test: MX host mx\.testing\.test: "
                                       r"TLS certificate: hostname mismatch: enforce would defer")
        self.assertRegex(self.srv.log, r"mta-sts testing: testing\.test: MX host "
                                       r"unlisted\.testing\.test matches no mx pattern")

    def test_policy_over_ipv6(self):
        # mta-sts.ipv6.test has only an AAAA record (::1): the policy (enforce, mx.ipv6.test,
        # which offers no STARTTLS) is fetched over IPv6, so the mail is deferred
        submit(self.srv, [("u@ipv6.test", "ipv6 policy")])
        line = self.log_line("u@ipv6.test", "deferred")
        self.assertRegex(line, r"deferred: 451 4\.7\.5 MTA-STS policy of ipv6\.test \(enforce\)")
        self.assertRegex(self.srv.log, r"mta-sts: ipv6\.test: fetched id=ipv61 mode=enforce")
        self.assertEqual(self.https[2].fetches("ipv6.test"), 1)

    def test_mode_none(self):
        submit(self.srv, [("u@none.test", "mode none")])
        self.wait_received("D", "mode none")
        self.assertRegex(self.log_line("u@none.test", "delivered"), r" tls=none ")
        self.assertRegex(self.srv.log, r"mta-sts: none\.test: fetched id=none1 mode=none")
        self.assertNotRegex(self.srv.log, r"mta-sts( testing)?: none\.test: MX host")

    def test_testing_mode_all_good(self):
        # the same check as enforce, passively: a valid certificate for the MX name logs nothing
        submit(self.srv, [("u@testok.test", "testing ok")])
        self.wait_received("A", "testing ok")
        self.assertRegex(self.log_line("u@testok.test", "delivered"), r" tls=TLSv1\.[23] not verified ")
        self.assertRegex(self.srv.log, r"mta-sts: testok\.test: fetched id=testok1 mode=testing")
        self.assertNotIn("mta-sts testing: testok.test", self.srv.log)

    def test_explicit_tls_policy_wins(self):
        submit(self.srv, [("u@tlspol.test", "explicit policy")])
        self.wait_received("D", "explicit policy")
        self.assertRegex(self.log_line("u@tlspol.test", "delivered"), r" tls=none ")
        self.assertEqual(self.https[0].fetches("tlspol.test"), 0)

    # -- bad input: no policy, delivered as before, logged --

    def test_bad_input_is_no_policy(self):
        why = {
            "garbage": r"invalid policy: line 1: octet 0x00",
            "ctype": r"content type 'text/html' is not text/plain",
            "big": r"policy larger than 65536 octets",
            "status": r"HTTP status 404",
            "redirect": r"HTTP status 301",
            "wrongcert": r"mta-sts\.wrongcert\.test: .*(certificate|SSL)",
            "txtbad": r"_mta-sts\.txtbad\.test: .*id has a character other than letters and digits",
            "txtdup": r"_mta-sts\.txtdup\.test: 2 v=STSv1 TXT records",
        }
        submit(self.srv, [("u@%s.test" % b, "bad %s" % b) for b in BAD])
        for b in BAD:
            with self.subTest(case=b):
                self.wait_received("D", "bad %s" % b)
                self.assertRegex(self.log_line("u@%s.test" % b, "delivered"), r" tls=none ")
                self.assertRegex(self.srv.log, r"mta-sts: %s\.test: no policy used: .*%s"
                                 % (b, why[b]))
        self.assertEqual(self.https[0].fetches("txtbad.test"), 0)
        self.assertEqual(self.https[0].fetches("txtdup.test"), 0)
        self.assertEqual(self.https[0].fetches("redirect.test"), 1)
        self.assertNotIn("/redirected", [p for _, p in self.https[0].requests],
                         "the redirect was followed")

    # -- refresh and cache (runs last: restarts DNS and the server) --

    def test_zz_policy_change_and_cache(self):
        # 1. change.test and cached.test fetched once, then used from the cache
        submit(self.srv, [("u@change.test", "change 1"), ("u@cached.test", "cached 1")])
        self.wait_received("A", "change 1")
        self.wait_received("A", "cached 1")  # mx2 (in the policy), not mx1 (sink B)
        self.assertEqual(self.received("B", "cached 1"), [])
        POLICIES["change.test"] = (200, "text/plain", policy("enforce", "other.change.test"), {})
        submit(self.srv, [("u@change.test", "change 2")])
        self.wait_received("A", "change 2")  # same TXT id: the cached policy, no fetch
        self.assertEqual(self.https[0].fetches("change.test"), 1)
        cache = os.path.join(self.env.data_dir, "mta-sts", "cached.test")
        self.assertTrue(os.path.isfile(cache))
        with open(cache, "rb") as f:
            self.assertIn(b"mx: mx2.cached.test", f.read())

        # 2. a new TXT id: change.test's new policy is fetched (no MX matches: deferred);
        #    cached.test's server is down: its cached policy is kept
        self.https[1].stop()
        txt = dict(TXT)
        txt["change.test"] = ["v=STSv1; id=c2"]
        txt["cached.test"] = ["v=STSv1; id=k2"]
        self.dns.restart(dns_records(txt))
        submit(self.srv, [("u@change.test", "change 3"), ("u@cached.test", "cached 2")])
        line = self.log_line("u@change.test", r"deferred: 451 4\.7\.5 MTA-STS")
        self.assertRegex(line, r"no MX host matches other\.change\.test")
        self.assertEqual(self.https[0].fetches("change.test"), 2)
        self.wait_received("A", "cached 2")
        self.assertRegex(self.srv.log, r"mta-sts: cached\.test: policy fetch for id=k2 failed: "
                                       r".*keeping the cached id=k1")
        self.assertEqual(self.received("B", "cached 2"), [])

        # 3. a restart (memory cache gone), the HTTPS server still down: the file counts
        self.srv.stop()
        self.__class__.srv = self.env.start()
        submit(self.srv, [("u@cached.test", "cached 3")])
        self.wait_received("A", "cached 3")
        self.assertEqual(self.received("B", "cached 3"), [])
        self.assertRegex(self.srv.log, r"keeping the cached id=k1")


if __name__ == "__main__":
    unittest.main()
