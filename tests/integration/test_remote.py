"""`tern serve`, part 2: delivery to other servers (issue 5), on loopback only.

A dnsmasq started by this module (on a free port of 127.0.0.1) serves the MX
records; tern finds it through [remote] dns_servers and connects to MX hosts
on the test-only [remote] port.  What is checked:

  ExchangeTest      two servers, a.test on 127.0.0.2:PORT and b.test on
                    127.0.0.3:PORT, send mail to each other (authenticated
                    submission on one side, the other side's Maildir), with
                    TLS (tls = may) shown in the log; an MX that points back
                    at the server (by address, by name) fails with 5.4.6.
  SinkDeliveryTest  `tern sink` as next hop with --close-chance 35 and with
                    --fail RCPT:451:30: every recipient of every message
                    arrives exactly once, nothing bounces.
  FailureTest       550 at the next hop, null MX, NXDOMAIN -> one DSN with
                    5.x.x each; refused connections and 451 past a short
                    give_up -> one DSN with 4.x.x each.
  KillTest          kill -9 while a delivery to a second domain waits for its
                    250: after a restart nothing is lost, recipients that had
                    a remote 250 are not sent again; at most the transactions
                    in flight at the kill are duplicated.

Every wait is bounded (the log, a Maildir, the sink's API or the queue folder
is polled against a deadline).  Processes are ended only by their own PIDs.
Environment: TERN is the tern binary (CI: an ASan build).
"""

import collections
import email
import email.policy
import os
import re
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

from servelib import SANITIZER_RE, ServeEnv, wait_until
from ternlib import (IO_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT, api_json, free_port, http_put, message,
                     start_sink, unverified_context)

PASSWORD = "remote-test-pw"
DELIVERY_TIMEOUT = 60.0  # waits for mail to arrive (ASan build, two cores)

# Records served by the module's dnsmasq.  --local=/test/ makes it answer every
# other name under .test itself: NXDOMAIN (nx.test), never forwarded.
DNS_RECORDS = [
    "--mx-host=a.test,mx.a.test,10", "--host-record=mx.a.test,127.0.0.2",
    "--mx-host=b.test,mx.b.test,10", "--host-record=mx.b.test,127.0.0.3",
    # an MX host whose address is server A's own listener (with [remote] port)
    "--mx-host=loop.test,mx.loop.test,10", "--host-record=mx.loop.test,127.0.0.2",
    # an MX that names server A itself (its [server] hostname)
    "--mx-host=loopname.test,mx.a.test,10",
    # RFC 7505 null MX: "MX 0 ."
    "--mx-host=nullmx.test,.,0",
    "--local=/test/",
]

_dns = None  # the module's Dnsmasq


# ---- small helpers ---------------------------------------------------------------------


def dns_query(port, name, qtype, timeout=2.0):
    """One raw DNS query to 127.0.0.1:port; (rcode, answer count, raw reply)."""
    tid = os.getpid() & 0xFFFF
    q = struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, ("127.0.0.1", port))
        data, _ = s.recvfrom(4096)
    flags, _, an, _, _ = struct.unpack(">HHHHH", data[2:12])
    return flags & 0xF, an, data


def is_null_mx_answer(data, qname):
    """True if a reply holds exactly one MX record: preference 0, exchange "." (root)."""
    off = 12 + sum(len(label) + 1 for label in qname.split(".")) + 1 + 4  # header + question
    if data[off] & 0xC0 == 0xC0:  # the owner name, compressed
        off += 2
    else:
        while data[off]:
            off += data[off] + 1
        off += 1
    rtype, _, _, rdlen = struct.unpack(">HHIH", data[off:off + 10])
    rdata = data[off + 10:off + 10 + rdlen]
    return rtype == 15 and rdata == b"\x00\x00\x00"


class Dnsmasq:
    """dnsmasq in the foreground on 127.0.0.1:port, its log in a file; stopped by PID."""

    def __init__(self, records):
        self.dir = tempfile.mkdtemp(prefix="tern-remote-dns-")
        self.proc = None
        last = ""
        for _ in range(5):  # the free port may be taken meanwhile: try another
            self.port = free_port("127.0.0.1")
            self.log_path = os.path.join(self.dir, "dnsmasq-%d.log" % self.port)
            argv = ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--port=%d" % self.port,
                    "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
                    "--log-queries", "--cache-size=0"] + list(records)
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT)
            if self._ready():
                return
            last = self.log
            self.stop()
        raise RuntimeError("dnsmasq did not start:\n%s" % last)

    def _ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                rcode, an, _ = dns_query(self.port, "mx.b.test", 1, timeout=0.5)
                if rcode == 0 and an == 1:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    @property
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


def setUpModule():
    global _dns
    _dns = Dnsmasq(DNS_RECORDS)
    unittest.addModuleCleanup(_dns.close)


def remote_conf(**extra):
    """A [remote] section that uses the module's DNS server."""
    conf = {"dns_servers": "127.0.0.1:%d" % _dns.port, "tls": "may", "timeout": "10s"}
    conf.update(extra)
    return conf


class ClassScope:
    """Lets ternlib.start_sink() register its clean-up on a class (setUpClass)."""

    def __init__(self, cls):
        self.addCleanup = cls.addClassCleanup


def submit(srv, user, mails, password=PASSWORD):
    """Authenticated submission (STARTTLS, AUTH) of mails = [(mail_from, [rcpt...], bytes)]
    in one session; every recipient must be accepted."""
    host, port = srv.listeners["submission"][0]
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=IO_TIMEOUT) as s:
        s.starttls(context=unverified_context())
        s.ehlo("client.test")
        s.login(user, password)
        for frm, rcpts, data in mails:
            refused = s.sendmail(frm, rcpts, data)
            if refused:
                raise AssertionError("refused recipients: %r" % refused)


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def is_dsn(msg):
    return msg.get_content_type() == "multipart/report"


def dsn_subject(d):
    """The Subject of the message a DSN (parsed) reports on, from its third part."""
    parts = list(d.iter_parts())
    if len(parts) < 3:
        return None
    orig = parts[2]
    if orig.get_content_type() == "message/rfc822":
        return orig.get_payload()[0]["Subject"]
    m = re.search(r"^Subject: (.*)$", orig.get_content(), re.M)
    return m.group(1).strip() if m else None


def dsns(env, address, subject=None):
    """The DSNs (parsed) in a local Maildir, those about `subject` if given."""
    out = []
    for m in env.maildir(address):
        d = parse(m.raw)
        if is_dsn(d) and (subject is None or dsn_subject(d) == subject):
            out.append(d)
    return out


def sink_messages(sink):
    return api_json(sink.http_port, "/api/messages?limit=10000")["messages"]


def sink_copies(sink):
    """Counter of (subject, recipient) over everything the sink received."""
    c = collections.Counter()
    for m in sink_messages(sink):
        for r in m["to"]:
            c[(m["subject"], r.strip("<>").lower())] += 1
    return c


def queue_empty(env):
    return not env.queue_files()  # one file per item: any file in queue/ is an item


class RemoteCase(unittest.TestCase):
    """Shared checks."""

    def check_dsn(self, d, sender, hostname, final_rcpts, status_re, diag_re=None):
        """An RFC 3464 failure report from <> to sender with one block per final recipient."""
        self.assertEqual(d.get_param("report-type"), "delivery-status")
        self.assertEqual(str(d["Return-Path"]).strip(), "<>")
        self.assertEqual(str(d["To"]).strip("<> "), sender)
        parts = list(d.iter_parts())
        self.assertEqual([p.get_content_type() for p in parts][:2],
                         ["text/plain", "message/delivery-status"])
        blocks = parts[1].get_payload()  # per-message fields, then one block per recipient
        self.assertEqual(blocks[0]["Reporting-MTA"].split(";")[1].strip(), hostname)
        got = {}
        for b in blocks[1:]:
            final = re.sub(r"\s+", "", b["Final-Recipient"]).lower()
            self.assertTrue(final.startswith("rfc822;"), final)
            got[final[len("rfc822;"):]] = b
        self.assertEqual(sorted(got), sorted(r.lower() for r in final_rcpts), [dict(b) for b in blocks])
        for rcpt, b in got.items():
            self.assertEqual(b["Action"].strip(), "failed", rcpt)
            self.assertRegex(b["Status"].strip(), status_re, rcpt)
            self.assertIsNotNone(b["Diagnostic-Code"], rcpt)
            if diag_re:
                self.assertRegex(re.sub(r"\s+", " ", b["Diagnostic-Code"]), diag_re, rcpt)
        return got

    def wait_dsn(self, env, sender, subject, timeout=DELIVERY_TIMEOUT):
        """Wait for the DSN about `subject`, then for the queue to settle; insists on exactly one."""
        wait_until(lambda: dsns(env, sender, subject), timeout, 0.1)
        wait_until(lambda: queue_empty(env), IO_TIMEOUT, 0.1)
        got = dsns(env, sender, subject)
        self.assertEqual(len(got), 1, "DSNs about %r in %s: %d" % (subject, sender, len(got)))
        return got[0]


# ---- two servers exchanging mail -------------------------------------------------------


class ExchangeTest(RemoteCase):
    """a.test (mx.a.test, 127.0.0.2:PORT) and b.test (mx.b.test, 127.0.0.3:PORT)."""

    @classmethod
    def setUpClass(cls):
        cls.port = free_port("127.0.0.2", "127.0.0.3")
        cls.envs, cls.srvs = {}, {}
        for dom, ip in (("a", "127.0.0.2"), ("b", "127.0.0.3")):
            env = ServeEnv(cleanup=cls.addClassCleanup,
                           server={"hostname": "mx.%s.test" % dom},
                           listen={"smtp": "%s:%d" % (ip, cls.port), "submission": "%s:0" % ip,
                                   "submissions": None},
                           queue={"retry": "1s", "give_up": "60s"},
                           remote=remote_conf(port=str(cls.port)))
            for user in ("alice", "bob", "carol"):
                env.add_user("%s@%s.test" % (user, dom), PASSWORD)
            cls.envs[dom] = env
        for dom in ("a", "b"):  # both up before either sends
            cls.srvs[dom] = cls.envs[dom].start()

    def test_both_ways_with_tls(self):
        a, b = self.envs["a"], self.envs["b"]
        sa, sb = self.srvs["a"], self.srvs["b"]
        submit(sa, "alice@a.test", [("alice@a.test", ["bob@b.test", "carol@b.test"],
                                     message("a to b", "alice@a.test", "bob@b.test"))])
        submit(sb, "bob@b.test", [("bob@b.test", ["alice@a.test"],
                                   message("b to a", "bob@b.test", "alice@a.test"))])
        for env, rcpt, sender, subject, peer in ((b, "bob@b.test", "alice@a.test", "a to b", "a"),
                                                 (b, "carol@b.test", "alice@a.test", "a to b", "a"),
                                                 (a, "alice@a.test", "bob@b.test", "b to a", "b")):
            msgs = env.wait_maildir(rcpt, 1, timeout=DELIVERY_TIMEOUT, subject=subject)
            self.assertEqual(len(msgs), 1, rcpt)
            m = msgs[0]
            self.assertEqual(m["Return-Path"], "<%s>" % sender)
            self.assertEqual(m.get_all("Delivered-To"), [rcpt])
            received = [re.sub(r"\s+", " ", r) for r in m.get_all("Received")]
            # the receiving server's stamp (TLS: ESMTPS) on top of the sender's (ESMTPSA)
            self.assertRegex(received[0], r"^from mx\.%s\.test \(\S+\) by mx\.%s\.test \(tern\) "
                             r"with ESMTPS\b" % (peer, "b" if peer == "a" else "a"))
            self.assertIn("by mx.%s.test (tern) with ESMTPSA" % peer, received[1])
        # one delivery for both recipients of b.test, over TLS, logged per recipient
        for srv, rcpt, host, ip in ((sa, "bob@b.test", "mx.b.test", "127.0.0.3"),
                                    (sa, "carol@b.test", "mx.b.test", "127.0.0.3"),
                                    (sb, "alice@a.test", "mx.a.test", "127.0.0.2")):
            line = srv.wait_log(r"^.*to=<%s> via=smtp .*$" % re.escape(rcpt))
            self.assertTrue(line, srv.log[-3000:])
            self.assertRegex(line[0], r"via=smtp %s\[%s\]:%d tls=TLSv1\.[23]\b.* delivered$"
                             % (re.escape(host), re.escape(ip), self.port))
        sessions = re.findall(r"queued id=\S+ from=<alice@a\.test> rcpts=(\d+)", sb.log)
        self.assertEqual(sessions, ["2"], "one transaction carries both b.test recipients")
        self.assertTrue(wait_until(lambda: queue_empty(a) and queue_empty(b), IO_TIMEOUT))
        for env, rcpt in ((b, "bob@b.test"), (b, "carol@b.test"), (a, "alice@a.test")):
            self.assertEqual(len(env.maildir(rcpt)), 1, rcpt)  # still exactly one
        self.assertEqual(dsns(a, "alice@a.test"), [])
        self.assertEqual(dsns(b, "bob@b.test"), [])

    def test_mx_pointing_at_itself(self):
        a, sa = self.envs["a"], self.srvs["a"]
        cases = (("x@loop.test", "loop by address"), ("y@loopname.test", "loop by name"))
        queued = r"queued id=\S+ from=<carol@a\.test>"
        before = len(re.findall(queued, sa.log))
        submit(sa, "carol@a.test", [("carol@a.test", [rcpt], message(subj, "carol@a.test", rcpt))
                                   for rcpt, subj in cases])
        for rcpt, subj in cases:
            with self.subTest(rcpt=rcpt):
                d = self.wait_dsn(a, "carol@a.test", subj)
                self.check_dsn(d, "carol@a.test", "mx.a.test", [rcpt], r"^5\.4\.6$", r"5\.4\.6")
                lines = re.findall(r"^.*to=<%s> via=smtp.*$" % re.escape(rcpt), sa.log, re.M)
                self.assertEqual(len(lines), 1, lines)
                self.assertRegex(lines[0], r" failed: 554 5\.4\.6 ")
                self.assertNotRegex(lines[0], r"via=smtp \S*\[", "no connection should be made")
        # no loop: server A never received its own mail (only the two submissions were queued)
        self.assertEqual(len(re.findall(queued, sa.log)) - before, 2, sa.log[-3000:])
        self.assertNotIn("from=<carol@a.test>", self.srvs["b"].log)


# ---- tern sink as the next hop, with faults ---------------------------------------------

N_MESSAGES = 100
RCPTS_PER_MESSAGE = 3


class SinkDeliveryTest(RemoteCase):
    """Routes close.test and tempfail.test to two sinks; 100 messages x 3 recipients each."""

    @classmethod
    def setUpClass(cls):
        cls.sinks = {
            "close.test": start_sink(ClassScope(cls), "--close-chance", "35", "--quiet"),
            "tempfail.test": start_sink(ClassScope(cls), "--fail", "RCPT:451:30", "--quiet"),
        }
        routes = " ".join("%s=[127.0.0.1]:%d" % (dom, s.smtp_port) for dom, s in cls.sinks.items())
        cls.env = ServeEnv(cleanup=cls.addClassCleanup, server={"hostname": "mx.s.test"},
                           queue={"retry": "1s", "give_up": "120s"},
                           remote=remote_conf(routes=routes))
        cls.env.add_user("sender@s.test", PASSWORD)
        cls.srv = cls.env.start()

    def run_case(self, domain, tag):
        sink = self.sinks[domain]
        mails, want = [], set()
        for i in range(N_MESSAGES):
            subject = "%s %03d" % (tag, i)
            rcpts = ["r%d.%d@%s" % (k, i % 7, domain) for k in range(RCPTS_PER_MESSAGE)]
            mails.append(("sender@s.test", rcpts, message(subject, "sender@s.test", rcpts[0])))
            want |= {(subject, r) for r in rcpts}
        submit(self.srv, "sender@s.test", mails)
        done = wait_until(lambda: set(sink_copies(sink)) >= want, DELIVERY_TIMEOUT, 0.2)
        settled = wait_until(lambda: queue_empty(self.env), IO_TIMEOUT, 0.1)
        copies = sink_copies(sink)
        missing = sorted(want - set(copies))
        self.assertTrue(done, "%d of %d recipients missing, e.g. %r" % (len(missing), len(want), missing[:5]))
        self.assertTrue(settled, "queue not empty: %r" % self.env.queue_files()[:10])
        dups = {k: v for k, v in copies.items() if v != 1 and k[0].startswith(tag)}
        self.assertEqual(dups, {}, "recipients delivered more than once")
        self.assertEqual(dsns(self.env, "sender@s.test"), [], "a message bounced")
        self.assertEqual(self.env.maildir("sender@s.test"), [])
        self.assertNotRegex(self.srv.log, r"to=<[^>]*@%s> via=smtp.* failed:" % re.escape(domain))
        return api_json(sink.http_port, "/api/stats")

    def test_close_chance_35(self):
        stats = self.run_case("close.test", "close")
        self.assertGreater(stats["faults"]["close_chance"], 0, stats)  # the fault really happened
        self.assertRegex(self.srv.log, r"to=<[^>]*@close\.test> via=smtp.* deferred: ")

    def test_fail_rcpt_451_30(self):
        stats = self.run_case("tempfail.test", "tempfail")
        self.assertGreater(sum(stats["faults"]["fail"].values()), 0, stats)
        self.assertRegex(self.srv.log, r"to=<[^>]*@tempfail\.test> via=smtp.* deferred: 451")


# ---- permanent and transient failures -> DSN ---------------------------------------------


class FailureTest(RemoteCase):
    """give_up = 4s.  All messages are submitted at once in setUpClass; each test waits
    for its own DSN, so the give_up time is spent once."""

    SENDER = "alice@f.test"
    CASES = {
        # subject: (recipients, status regex, diagnostic regex)
        "perm 550": (["u1@perm.test"], r"^5\.\d+\.\d+$", r"550"),
        "null mx": (["u2@nullmx.test"], r"^5\.\d+\.\d+$", None),
        "nxdomain": (["u3@nx.test"], r"^5\.\d+\.\d+$", None),
        "two perm": (["u4@perm.test", "u5@nx.test"], r"^5\.\d+\.\d+$", None),
        "refused": (["u6@dead.test"], r"^4\.\d+\.\d+$", None),
        "temp 451": (["u7@temp.test"], r"^4\.\d+\.\d+$", r"451"),
    }

    @classmethod
    def setUpClass(cls):
        cls.sink550 = start_sink(ClassScope(cls), "--fail", "RCPT:550:100")
        cls.sink451 = start_sink(ClassScope(cls), "--fail", "RCPT:451:100")
        dead = free_port("127.0.0.1")  # nothing listens there
        routes = "perm.test=[127.0.0.1]:%d temp.test=[127.0.0.1]:%d dead.test=[127.0.0.1]:%d" % (
            cls.sink550.smtp_port, cls.sink451.smtp_port, dead)
        cls.env = ServeEnv(cleanup=cls.addClassCleanup, server={"hostname": "mx.f.test"},
                           queue={"retry": "1s", "give_up": "4s"},
                           remote=remote_conf(routes=routes))
        cls.env.add_user(cls.SENDER, PASSWORD)
        cls.srv = cls.env.start()
        _, _, reply = dns_query(_dns.port, "nullmx.test", 15)
        cls.null_mx_served = is_null_mx_answer(reply, "nullmx.test")
        cls.t0 = time.monotonic()
        submit(cls.srv, cls.SENDER, [(cls.SENDER, rcpts, message(subj, cls.SENDER, rcpts[0]))
                                     for subj, (rcpts, _, _) in cls.CASES.items()])

    def check_case(self, subject):
        rcpts, status_re, diag_re = self.CASES[subject]
        d = self.wait_dsn(self.env, self.SENDER, subject)
        return self.check_dsn(d, self.SENDER, "mx.f.test", rcpts, status_re, diag_re)

    def test_550_at_next_hop(self):
        self.check_case("perm 550")
        self.assertEqual(sink_copies(self.sink550), collections.Counter())
        self.assertTrue(self.srv.wait_log(r"to=<u1@perm\.test> via=smtp.* failed: 550"))

    def test_null_mx(self):
        if not self.null_mx_served:
            self.skipTest("this dnsmasq does not serve 'MX 0 .' as a null MX")
        self.check_case("null mx")
        self.assertTrue(self.srv.wait_log(r"to=<u2@nullmx\.test> via=smtp.* failed: 5"))

    def test_nonexistent_domain(self):
        rcode, _, _ = dns_query(_dns.port, "nx.test", 15)
        self.assertEqual(rcode, 3, "the test's DNS server should say NXDOMAIN")
        self.check_case("nxdomain")
        self.assertTrue(self.srv.wait_log(r"to=<u3@nx\.test> via=smtp.* failed: 5"))

    def test_two_permanent_failures_one_dsn(self):
        got = self.check_case("two perm")
        self.assertIn("550", got["u4@perm.test"]["Diagnostic-Code"])

    def test_connection_refused_past_give_up(self):
        self.check_case("refused")
        self.assertGreaterEqual(time.monotonic() - self.t0, 3.0, "DSN before give_up")
        self.assertTrue(self.srv.wait_log(r"to=<u6@dead\.test> via=smtp.* deferred: "))

    def test_451_past_give_up(self):
        got = self.check_case("temp 451")
        self.assertGreaterEqual(time.monotonic() - self.t0, 3.0, "DSN before give_up")
        self.assertEqual(sink_copies(self.sink451), collections.Counter())
        self.assertGreaterEqual(len(re.findall(r"to=<u7@temp\.test> via=smtp.* deferred: 451", self.srv.log)),
                                2, "retried before giving up")
        self.assertIn("451", got["u7@temp.test"]["Diagnostic-Code"])


# ---- kill -9 during remote delivery -------------------------------------------------------

N_KILL_MESSAGES = 3
SLOW_EOD_MS = 10000


class KillTest(RemoteCase):
    def test_kill_9_during_remote_delivery(self):
        """Each message goes to fast.test (sink 1, immediate 250), slow.test (sink 2, which
        stores the data at once but answers the end of data only after 10 s) and later.test
        (sink 1), in that order; tern delivers domain after domain and saves the envelope
        after each.  The server is killed while the slow.test transactions wait for their
        250.  After the restart: every recipient has its copy; fast.test and later.test
        recipients exactly one; slow.test recipients at most two, and only for messages
        whose data sink 2 had taken before the kill (the SMTP duplicate window: data
        accepted, 250 not yet seen - RFC 1047)."""
        fast = start_sink(self, "--quiet")
        slow = start_sink(self, "--delay", "EOD:%d" % SLOW_EOD_MS, "--quiet")
        routes = "fast.test=[127.0.0.1]:%d later.test=[127.0.0.1]:%d slow.test=[127.0.0.1]:%d" % (
            fast.smtp_port, fast.smtp_port, slow.smtp_port)
        env = ServeEnv(self, server={"hostname": "mx.k.test"},
                       queue={"retry": "1s", "give_up": "120s"},
                       remote=remote_conf(routes=routes, timeout="30s"))
        sender = "alice@k.test"
        env.add_user(sender, PASSWORD)
        srv1 = env.start(check_exit=False)

        rcpts = ["f1@fast.test", "f2@fast.test", "s1@slow.test", "s2@slow.test", "l1@later.test"]
        subjects = ["kill %d" % i for i in range(N_KILL_MESSAGES)]
        submit(srv1, sender, [(sender, rcpts, message(s, sender, rcpts[0])) for s in subjects])

        # all slow.test transactions under way (data stored at sink 2, 250 pending)
        wait_until(lambda: len(sink_messages(slow)) >= N_KILL_MESSAGES, SLOW_EOD_MS / 2000, 0.02)
        n_at_sink = len(sink_messages(slow))
        self.assertGreater(n_at_sink, 0,
                           "no slow.test transaction started before the kill:\n" + srv1.log[-3000:])
        self.assertNotRegex(srv1.log, r"to=<s\d@slow\.test> via=smtp.* delivered",
                            "a slow.test 250 arrived before the kill (too slow a machine?)")
        self.assertIsNone(SANITIZER_RE.search(srv1.log), srv1.log[-4000:])
        os.kill(srv1.pid, signal.SIGKILL)
        srv1.stop()
        srv1.proc.stdout.close()
        self.assertEqual(srv1.returncode, -signal.SIGKILL)
        time.sleep(0.3)  # data already in the socket reaches the sink anyway
        stored = {m["subject"] for m in sink_messages(slow)}
        # a message whose slow.test data sink 2 holds had finished fast.test (domains go one
        # after the other, the envelope saved after each), and had not reached later.test
        at_kill = sink_copies(fast)
        for s in stored:
            for r in rcpts[:2]:
                self.assertEqual(at_kill[(s, r)], 1, (s, r))
        self.assertFalse([k for k in at_kill if k[1].endswith("@later.test")], at_kill)

        # the restart: sink 2 answers at once now
        r = http_put(slow.http_port, "/api/faults", {"delay": []})
        self.assertEqual(r.status, 200, r)
        srv2 = env.start()
        self.assertTrue(srv2.wait_log(r"queue recovered: %d items" % N_KILL_MESSAGES), srv2.log)
        want = {(s, r) for s in subjects for r in rcpts}
        done = wait_until(lambda: set(sink_copies(fast) + sink_copies(slow)) >= want,
                          DELIVERY_TIMEOUT, 0.1)
        settled = wait_until(lambda: queue_empty(env), IO_TIMEOUT, 0.1)
        copies = sink_copies(fast) + sink_copies(slow)
        self.assertTrue(done, "lost: %r" % sorted(want - set(copies)))
        self.assertTrue(settled, "queue not empty: %r" % env.queue_files())
        # Possible duplicates: one per slow.test recipient of a message whose data sink 2
        # had stored (2 x len(stored)), and for a message that had not reached sink 2, its
        # fast.test recipients if the kill fell between their 250 and the envelope's fsync.
        for s in subjects:
            for r in rcpts:
                n = copies[(s, r)]
                in_flight = r.endswith("@slow.test") and s in stored
                unrecorded = r.endswith("@fast.test") and s not in stored
                if in_flight or unrecorded:
                    self.assertIn(n, (1, 2), (s, r))
                else:
                    self.assertEqual(n, 1, (s, r))
        dup = sum(n - 1 for n in copies.values())
        self.assertLessEqual(dup, 2 * N_KILL_MESSAGES)
        # after the restart, recipients with a recorded remote 250 were not tried again
        retried = set(re.findall(r"id=\S+ to=<([^>]+)> via=smtp", srv2.log))
        if stored == set(subjects):
            self.assertEqual(retried, {"s1@slow.test", "s2@slow.test", "l1@later.test"})
        self.assertEqual(dsns(env, sender), [])
        self.assertEqual(env.maildir(sender), [])
        sys.stderr.write("\n[test_remote] kill -9 with %d of %d slow.test transactions in flight; "
                         "%d duplicate deliveries\n" % (len(stored), N_KILL_MESSAGES, dup))


# ---- DSN parameters and bounces to other servers ---------------------------------------


class RecordingServer:
    """A minimal ESMTP next hop on loopback that offers DSN and records every command
    line it gets (the test reads MAIL and RCPT parameters from it)."""

    def __init__(self, cleanup):
        import socketserver
        import threading
        self.lines = []
        self.lock = threading.Lock()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                self.wfile.write(b"220 rec.test ESMTP\r\n")
                while True:
                    line = self.rfile.readline(2000)
                    if not line:
                        return
                    cmd = line.decode("utf-8", "replace").rstrip("\r\n")
                    with outer.lock:
                        outer.lines.append(cmd)
                    verb = cmd.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.wfile.write(b"250-rec.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 DSN\r\n")
                    elif verb == "DATA":
                        self.wfile.write(b"354 go on\r\n")
                        while self.rfile.readline(2000) not in (b".\r\n", b""):
                            pass
                        self.wfile.write(b"250 2.0.0 kept\r\n")
                    elif verb == "QUIT":
                        self.wfile.write(b"221 2.0.0 bye\r\n")
                        return
                    else:
                        self.wfile.write(b"250 2.0.0 ok\r\n")

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        cleanup(self.close)

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def commands(self, verb):
        with self.lock:
            return [x for x in self.lines if x.upper().startswith(verb)]


class DsnTest(RemoteCase):
    """d.test relays rec.test to a recording next hop that offers DSN."""

    @classmethod
    def setUpClass(cls):
        cls.rec = RecordingServer(cls.addClassCleanup)
        cls.sink550 = start_sink(ClassScope(cls), "--fail", "RCPT:550:100")
        routes = "rec.test=[127.0.0.1]:%d rej.test=[127.0.0.1]:%d" % (cls.rec.port,
                                                                      cls.sink550.smtp_port)
        cls.env = ServeEnv(cleanup=cls.addClassCleanup, server={"hostname": "mx.d.test"},
                           queue={"retry": "1s", "give_up": "60s"},
                           remote=remote_conf(routes=routes))
        cls.env.add_user("alice@d.test", PASSWORD)
        cls.env.add_user("bob@d.test", PASSWORD)
        cls.env.write_aliases("d.test", "fwd: x@rec.test\nold: gone@rej.test\n")
        cls.srv = cls.env.start()

    def wait_rcpt(self, addr):
        self.assertTrue(wait_until(lambda: [x for x in self.rec.commands("RCPT")
                                            if "<%s>" % addr in x], DELIVERY_TIMEOUT, 0.1),
                        self.srv.log[-3000:])
        return [x for x in self.rec.commands("RCPT") if "<%s>" % addr in x]

    def test_null_sender_relayed(self):
        """A bounce (MAIL FROM:<>) for a forwarded address leaves for the next hop: the
        shipped -O2 build once refused it locally (uninitialised sender address)."""
        host, port = self.srv.listeners["smtp"][0]
        with smtplib.SMTP(host, port, local_hostname="client.test", timeout=IO_TIMEOUT) as s:
            self.assertEqual(s.sendmail("<>", ["fwd@d.test"], message("bounce", "", "fwd@d.test")), {})
        rcpt = self.wait_rcpt("x@rec.test")
        self.assertIn("ORCPT=rfc822;fwd@d.test", rcpt[0])
        self.assertIn("MAIL FROM:<>", self.rec.commands("MAIL"))
        self.assertTrue(wait_until(lambda: queue_empty(self.env), IO_TIMEOUT, 0.1))
        self.assertNotRegex(self.srv.log, r"to=<x@rec\.test> via=smtp.* failed")

    def test_dsn_parameters_passed_on(self):
        """NOTIFY, ORCPT, ENVID and RET go on to a next hop that offers DSN (RFC 3461 4.1);
        the next hop then answers for NOTIFY=SUCCESS, so tern sends no report itself."""
        host, port = self.srv.listeners["submission"][0]
        with smtplib.SMTP(host, port, local_hostname="client.test", timeout=IO_TIMEOUT) as s:
            s.starttls(context=unverified_context())
            s.ehlo("client.test")
            s.login("alice@d.test", PASSWORD)
            self.assertEqual(s.sendmail("alice@d.test", ["y@rec.test"],
                                        message("params", "alice@d.test", "y@rec.test"),
                                        mail_options=["RET=HDRS", "ENVID=env+2Bid"],
                                        rcpt_options=["NOTIFY=SUCCESS,FAILURE",
                                                      "ORCPT=rfc822;Y@rec.test"]), {})
        rcpt = self.wait_rcpt("y@rec.test")[0]
        self.assertRegex(rcpt, r"NOTIFY=SUCCESS,FAILURE\b")
        self.assertIn("ORCPT=rfc822;Y@rec.test", rcpt)
        mail = [x for x in self.rec.commands("MAIL") if "<alice@d.test>" in x][0]
        self.assertIn("RET=HDRS", mail)
        self.assertIn("ENVID=env+2Bid", mail)
        self.assertTrue(wait_until(lambda: queue_empty(self.env), IO_TIMEOUT, 0.1))
        self.assertTrue(self.srv.wait_log(r"to=<y@rec\.test> via=smtp.* delivered"))
        self.assertEqual(dsns(self.env, "alice@d.test", "params"), [])

    def test_bounce_names_the_address_that_failed(self):
        """Through an alias, the DSN's Final-Recipient is the address that failed and
        Original-Recipient the alias the client named (RFC 3464 2.3.1, 2.3.2)."""
        host, port = self.srv.listeners["smtp"][0]
        with smtplib.SMTP(host, port, local_hostname="client.test", timeout=IO_TIMEOUT) as s:
            s.ehlo("client.test")
            self.assertEqual(s.sendmail("alice@d.test", ["old@d.test"],
                                        message("to the old one", "alice@d.test", "old@d.test")), {})
        d = self.wait_dsn(self.env, "alice@d.test", "to the old one")
        got = self.check_dsn(d, "alice@d.test", "mx.d.test", ["gone@rej.test"], r"^5\.", r"550")
        self.assertEqual(re.sub(r"\s+", "", got["gone@rej.test"]["Original-Recipient"]),
                         "rfc822;old@d.test")

    def test_notify_success_local(self):
        """NOTIFY=SUCCESS for a local mailbox: a "delivered" report to the sender."""
        host, port = self.srv.listeners["smtp"][0]
        with smtplib.SMTP(host, port, local_hostname="client.test", timeout=IO_TIMEOUT) as s:
            s.ehlo("client.test")
            self.assertEqual(s.sendmail("alice@d.test", ["bob@d.test"],
                                        message("hello bob", "alice@d.test", "bob@d.test"),
                                        rcpt_options=["NOTIFY=SUCCESS"]), {})
        d = self.wait_dsn(self.env, "alice@d.test", "hello bob")
        blocks = list(d.iter_parts())[1].get_payload()
        self.assertEqual(blocks[1]["Action"].strip(), "delivered")
        self.assertEqual(blocks[1]["Status"].strip(), "2.0.0")
        self.assertEqual(re.sub(r"\s+", "", blocks[1]["Final-Recipient"]), "rfc822;bob@d.test")
        self.assertEqual(len(self.env.wait_maildir("bob@d.test", 1)), 1)


if __name__ == "__main__":
    unittest.main()
