"""`tern serve`: inbound SPF, DKIM and DMARC on the smtp listener ([checks], issue 11).

A private dnsmasq (started by this module on a free port of 127.0.0.1, --local=/test/)
serves the SPF, DKIM key and DMARC TXT records and a few A records; tern finds it through
[remote] dns_servers.  Mail is sent with smtplib from 127.0.0.3 (allowed by the SPF
records) or 127.0.0.2 (not allowed: source_address chooses; 127.0.0.1 is the host itself,
which is not checked), signed by dkimpy (Debian's
python3-dkim, through dkimpy_tool), and the Authentication-Results header is read from
the Maildir with Python's mailbox module.

  TagTest        the default (tag): pass/fail/none results in one header with our
                 authserv-id at the top, nothing refused; the delivered message still
                 verifies with dkimpy; forged Authentication-Results with our id removed,
                 a foreign one kept; MAIL FROM:<> checks the HELO identity; bad input:
                 a malformed DKIM-Signature, an altered body, SPF include loops, more than
                 10 lookups, an oversized SPF record, oversized and garbage DMARC records,
                 several From fields; authenticated submissions and mail from the host
                 itself (127.0.0.1) are not checked.
  RejectTest     spf/dkim/dmarc = reject: 550 5.7.23 at MAIL FROM, 550 5.7.20 after the
                 data, 550 5.7.1 for a DMARC failure and for two From fields; temporary
                 DNS failures (tempfail.test's upstream in dnsmasq refuses, so the query
                 times out) are accepted and tagged temperror.
  DmarcOnlyTest  spf = dkim = none, dmarc = tag: only dmarc= in the header, computed from
                 the hidden SPF and DKIM results; AllNoneTest: no header, nothing removed.
  HonorTest      dmarc = honor: p=quarantine lands in the Maildir++ folder .Junk,
                 p=reject gets 550 5.7.1, p=none is delivered; quarantine_folder.
  OfflineTest    no DNS at all (a server that refuses, one that never answers): mail is
                 accepted and tagged temperror, in bounded time.
  ConfigTest     bad [checks] values are FILE:LINE errors of check-config.

Processes are stopped by their own PIDs; every wait is bounded.
"""

import base64
import email
import email.policy
import mailbox
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

from dkimpy_tool import dkimpy_sign, dkimpy_verify
from servelib import HOSTNAME, ServeEnv
from ternlib import IO_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT, free_port, unverified_context

PASSWORD = "checks-test-pw"
RCPT = "rcpt@example.test"
SLOW = float(os.environ.get("TERN_SLOW") or 1)  # valgrind runs: time limits grow
GOOD_IP, BAD_IP = "127.0.0.3", "127.0.0.2"  # 127.0.0.1, the host itself, is not checked

_dns = None  # the module's Dnsmasq
_key = None  # (private key path, public key base64) of sel._domainkey.good.test


def chunks(text, n=250):
    """A TXT value as dnsmasq's comma-separated character-strings (each <= 255 octets)."""
    return ",".join(text[i:i + n] for i in range(0, len(text), n))


def dns_records(pub, servfail_port):
    many = " ".join("a:h%d.many.test" % i for i in range(12))
    big_spf = "v=spf1 " + " ".join("ip4:10.%d.%d.1" % (i // 250, i % 250) for i in range(400)) + " -all"
    big_dmarc = "v=DMARC1; p=reject; x=" + "a" * 9000
    recs = [
        # good.test: SPF allows 127.0.0.3, p=reject, a DKIM key
        "--txt-record=good.test,v=spf1 ip4:127.0.0.3 -all",
        "--txt-record=_dmarc.good.test,v=DMARC1; p=reject; rua=mailto:dmarc@good.test",
        "--txt-record=sel._domainkey.good.test," + chunks("v=DKIM1; k=rsa; p=" + pub),
        "--txt-record=sub.good.test,v=spf1 ip4:127.0.0.3 -all",
        # quar.test: p=quarantine; none.test: p=none
        "--txt-record=quar.test,v=spf1 ip4:127.0.0.3 -all",
        "--txt-record=_dmarc.quar.test,v=DMARC1; p=quarantine",
        "--txt-record=none.test,v=spf1 ip4:127.0.0.3 -all",
        "--txt-record=_dmarc.none.test,v=DMARC1; p=none",
        # bad input
        "--txt-record=loop.test,v=spf1 include:loop.test -all",
        "--txt-record=many.test,v=spf1 %s -all" % many,
        "--txt-record=big.test," + chunks(big_spf),
        "--txt-record=bigdmarc.test,v=spf1 ip4:127.0.0.3 -all",
        "--txt-record=_dmarc.bigdmarc.test," + chunks(big_dmarc),
        "--txt-record=garbage.test,v=spf1 ip4:127.0.0.3 -all",
        "--txt-record=_dmarc.garbage.test,v=DMARC1; p=reject;; =x; p",
        "--txt-record=_dmarc.garbage.test,v=DMARC1 p=reject",
        # no answer for anything under tempfail.test (its "upstream" refuses): a time-out
        "--server=/tempfail.test/127.0.0.1#%d" % servfail_port,
        "--local=/test/",
    ]
    recs += ["--host-record=h%d.many.test,127.0.0.9" % i for i in range(12)]
    return recs


def dns_ready(port):
    """True when the server answers a TXT query for good.test."""
    q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04good\x04test\x00\x00\x10\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(q, ("127.0.0.1", port))
        data, _ = s.recvfrom(4096)
    return data[3] & 0xF == 0 and data[7] >= 1


class Dnsmasq:
    """dnsmasq in the foreground on 127.0.0.1:port, its log in a file; stopped by PID."""

    def __init__(self, records):
        self.dir = tempfile.mkdtemp(prefix="tern-checks-dns-")
        self.proc = None
        last = ""
        if not shutil.which("dnsmasq"):
            raise RuntimeError("dnsmasq is not installed (scripts/install-deps installs it)")
        for _ in range(5):
            self.port = free_port("127.0.0.1")
            self.log_path = os.path.join(self.dir, "dnsmasq.log")
            argv = ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--port=%d" % self.port,
                    "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
                    "--log-queries", "--cache-size=0"] + list(records)
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if dns_ready(self.port):
                        return
                except OSError:
                    pass
                time.sleep(0.1)
            with open(self.log_path, errors="replace") as f:
                last = f.read()
            self.stop()
        raise RuntimeError("dnsmasq did not start:\n%s" % last)

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
    global _dns, _key
    keydir = tempfile.mkdtemp(prefix="tern-checks-key-")
    unittest.addModuleCleanup(shutil.rmtree, keydir, True)
    keyfile = os.path.join(keydir, "key.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", keyfile], check=True, capture_output=True, timeout=60)
    der = subprocess.run(["openssl", "pkey", "-in", keyfile, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True, timeout=60).stdout
    _key = (keyfile, base64.b64encode(der).decode())
    # a UDP port that refuses (nothing bound): dnsmasq's "upstream" for tempfail.test
    servfail_port = free_port("127.0.0.1")
    _dns = Dnsmasq(dns_records(_key[1], servfail_port))
    unittest.addModuleCleanup(_dns.close)


def key_record():
    return {"sel._domainkey.good.test": "v=DKIM1; k=rsa; p=" + _key[1]}


def make_message(frm, subject, extra=b"", body=b"Hello.\r\n"):
    return (b"From: " + frm.encode() + b"\r\nTo: <" + RCPT.encode() + b">\r\nSubject: " +
            subject.encode() + b"\r\nMessage-ID: <" + subject.replace(" ", "-").encode() +
            b"@test>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n" + extra + b"\r\n" + body)


def signed(frm, subject, extra=b"", body=b"Hello.\r\n"):
    return dkimpy_sign(make_message(frm, subject, extra, body), "good.test", "sel", _key[0],
                       headers=["from", "to", "subject", "date", "message-id"])


def send(srv, mail_from, data, ip=GOOD_IP, helo="client.test"):
    """One message from ip to RCPT on the smtp listener; returns the final (code, text) of the
    transaction (MAIL or DATA), never raises on a refusal."""
    host, port = srv.listeners["smtp"][0]
    with smtplib.SMTP(host, port, local_hostname=helo, timeout=IO_TIMEOUT * 2,
                      source_address=(ip, 0)) as s:
        s.ehlo(helo)
        code, text = s.mail(mail_from)
        if code != 250:
            return code, text.decode(errors="replace")
        code, text = s.rcpt(RCPT)
        if code != 250:
            return code, text.decode(errors="replace")
        code, text = s.data(data)
        return code, text.decode(errors="replace")


def arh(msg):
    """The Authentication-Results fields of a delivered message (parsed), unfolded."""
    return [re.sub(r"\s+", " ", str(v)) for v in msg.get_all("Authentication-Results", [])]


def ours(msg):
    found = [v for v in arh(msg) if v.lower().startswith(HOSTNAME + ";")]
    return found


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.compat32)


class Base(unittest.TestCase):
    checks = {}

    @classmethod
    def setUpClass(cls):
        cls.env = ServeEnv(cleanup=cls.addClassCleanup,
                           remote={"dns_servers": "127.0.0.1:%d" % _dns.port},
                           admin={"listen": "127.0.0.1:0"},
                           checks=dict(cls.checks))
        cls.env.add_user(RCPT, PASSWORD)
        cls.srv = cls.env.start()
        cls.seen = 0

    def delivered(self, subject, folder=None):
        """The message with this subject in RCPT's Maildir (or one of its folders), waited for."""
        path = self.env.maildir_path(RCPT)
        if folder:
            path = os.path.join(path, "." + folder)
        deadline = time.monotonic() + IO_TIMEOUT * 2
        while time.monotonic() < deadline:
            if os.path.isdir(os.path.join(path, "new")):
                md = mailbox.Maildir(path, factory=None, create=False)
                for key in md.keys():
                    raw = md.get_bytes(key)
                    m = parse(raw)
                    if m["Subject"] == subject:
                        m.raw = raw
                        return m
            time.sleep(0.05)
        self.fail("no message %r in %s\n--- log ---\n%s" % (subject, path, self.srv.log[-4000:]))

    def ok(self, reply):
        self.assertEqual(reply[0], 250, reply)

    def metric(self, method, result):
        """tern_inbound_checks_total{method, result} from the admin listener (0 if absent)."""
        admin = re.search(r"serve info: admin listening on (\S+)", self.srv.log).group(1)
        with urllib.request.urlopen("http://%s/metrics" % admin, timeout=IO_TIMEOUT) as r:
            text = r.read().decode()
        m = re.search(r'^tern_inbound_checks_total\{method="%s",result="%s"\} (\d+)$'
                      % (method, result), text, re.M)
        return int(m.group(1)) if m else 0


class TagTest(Base):
    checks = {}  # the defaults: spf = dkim = dmarc = tag

    def test_all_pass(self):
        self.ok(send(self.srv, "bob@good.test", signed("Bob <bob@good.test>", "all pass")))
        m = self.delivered("all pass")
        res = ours(m)
        self.assertEqual(len(res), 1, arh(m))
        r = res[0]
        self.assertIn("spf=pass", r)
        self.assertIn("smtp.mailfrom=bob@good.test", r)
        self.assertRegex(r, r"dkim=pass header\.d=good\.test header\.s=sel header\.a=rsa-sha256 "
                            r"header\.b=\S{8}")
        self.assertRegex(r, r"dmarc=pass \(p=reject sp=reject dis=none\) header\.from=good\.test")
        # ours is the first field after what the Maildir delivery adds, our Received: next
        names = [k.lower() for k in m.keys()]
        self.assertEqual(names[:4], ["return-path", "delivered-to", "authentication-results",
                                     "received"], m.raw[:300])
        # the signature still verifies with dkimpy after our fields were prepended
        ok, report = dkimpy_verify(m.raw, key_record())
        self.assertTrue(ok, report)

    def test_spf_fail_tagged_not_refused(self):
        self.ok(send(self.srv, "bob@good.test", make_message("bob@good.test", "spf fail"), ip=BAD_IP))
        r = ours(self.delivered("spf fail"))[0]
        self.assertIn("spf=fail", r)
        self.assertIn("dkim=none", r)
        self.assertRegex(r, r"dmarc=fail \(p=reject sp=reject dis=none\) header\.from=good\.test")

    def test_subdomain_uses_organizational_record(self):
        self.ok(send(self.srv, "x@sub.good.test", make_message("x@sub.good.test", "sub pass")))
        r = ours(self.delivered("sub pass"))[0]
        self.assertIn("spf=pass", r)
        self.assertIn("dmarc=pass", r)
        self.assertIn("header.from=sub.good.test", r)

    def test_relaxed_alignment_with_dkim_only(self):
        # envelope from none.test (SPF pass but not aligned), From good.test signed by good.test
        self.ok(send(self.srv, "x@none.test", signed("a@good.test", "dkim aligned")))
        r = ours(self.delivered("dkim aligned"))[0]
        self.assertIn("spf=pass", r)
        self.assertIn("dkim=pass", r)
        self.assertIn("dmarc=pass", r)

    def test_forged_results_removed(self):
        extra = (b"Authentication-Results: " + HOSTNAME.upper().encode() + b"; spf=pass\r\n"
                 b"Authentication-Results: (forged)\r\n " + HOSTNAME.encode() + b";\r\n\tdkim=pass\r\n"
                 b"Authentication-Results: other.example; dkim=pass header.d=x\r\n")
        self.ok(send(self.srv, "bob@good.test", make_message("bob@good.test", "forged", extra),
                     ip=BAD_IP))
        m = self.delivered("forged")
        all_ = arh(m)
        self.assertEqual(len(all_), 2, all_)
        self.assertEqual(len(ours(m)), 1, all_)
        self.assertIn("spf=fail", ours(m)[0])
        self.assertIn("other.example; dkim=pass header.d=x", all_)
        self.wait_log(r"removed 2 Authentication-Results")

    def wait_log(self, pattern):
        self.assertIsNotNone(self.srv.wait_log(pattern, IO_TIMEOUT), self.srv.log[-3000:])

    def test_null_sender_checks_helo(self):
        self.ok(send(self.srv, "<>", make_message("bob@good.test", "null sender"), helo="good.test"))
        r = ours(self.delivered("null sender"))[0]
        self.assertIn("spf=pass", r)
        self.assertIn("smtp.helo=good.test", r)

    def test_bad_dkim_headers(self):
        bad = b"DKIM-Signature: v=1; a=rsa-sha256; d=good.test; s=sel; b=;;; h\r\n"
        self.ok(send(self.srv, "bob@good.test", make_message("bob@good.test", "bad dkim", bad)))
        r = ours(self.delivered("bad dkim"))[0]
        self.assertRegex(r, r"dkim=(permerror|neutral)")
        self.assertIn("spf=pass", r)
        # a real signature over another body: fail
        sig = signed("bob@good.test", "altered", body=b"Original.\r\n")
        sig = sig.replace(b"Original.", b"Changed!!")
        self.ok(send(self.srv, "bob@good.test", sig, ip=BAD_IP))
        r = ours(self.delivered("altered"))[0]
        self.assertIn("dkim=fail", r)
        self.assertIn("dmarc=fail", r)
        # a quoted value in d= cannot break out of the header
        evil = b"DKIM-Signature: v=1; a=rsa-sha256; d=\"evil;x\"; s=s; bh=x; b=y; h=from\r\n"
        self.ok(send(self.srv, "bob@good.test", make_message("bob@good.test", "evil dkim", evil)))
        m = self.delivered("evil dkim")
        self.assertEqual(len(ours(m)), 1)

    def test_spf_loop_and_limits(self):
        for dom, subj in (("loop.test", "spf loop"), ("many.test", "spf many"),
                          ("big.test", "spf big")):
            self.ok(send(self.srv, "x@" + dom, make_message("x@" + dom, subj)))
            r = ours(self.delivered(subj))[0]
            self.assertIn("spf=permerror", r, subj)
            self.assertIn("smtp.mailfrom=x@" + dom, r)

    def test_dmarc_garbage_and_oversized(self):
        for dom, subj in (("garbage.test", "dmarc garbage"), ("bigdmarc.test", "dmarc big")):
            self.ok(send(self.srv, "x@" + dom, make_message("x@" + dom, subj)))
            r = ours(self.delivered(subj))[0]
            self.assertIn("spf=pass", r)
            self.assertIn("dmarc=none", r, subj)

    def test_from_field_unusable(self):
        data = (b"From: a@good.test\r\nFrom: b@none.test\r\nSubject: two from\r\n\r\nx\r\n")
        self.ok(send(self.srv, "bob@good.test", data))
        r = ours(self.delivered("two from"))[0]
        self.assertIn("dmarc=permerror (2 From fields)", r)

    def test_host_itself_not_checked(self):
        extra = b"Authentication-Results: other.example; spf=pass\r\n"
        data = make_message("bob@good.test", "from localhost", extra)
        self.ok(send(self.srv, "bob@good.test", data, ip="127.0.0.1"))
        m = self.delivered("from localhost")
        self.assertEqual(ours(m), [], arh(m))
        self.assertEqual(arh(m), ["other.example; spf=pass"])

    def test_authenticated_not_checked(self):
        host, port = self.srv.listeners["submission"][0]
        with smtplib.SMTP(host, port, local_hostname="client.test", timeout=IO_TIMEOUT,
                          source_address=(BAD_IP, 0)) as s:
            s.starttls(context=unverified_context())
            s.ehlo("client.test")
            s.login(RCPT, PASSWORD)
            forged = b"Authentication-Results: " + HOSTNAME.encode() + b"; dkim=pass header.d=bank.test\r\n"
            s.sendmail(RCPT, [RCPT], make_message(RCPT, "submitted", forged))
        m = self.delivered("submitted")
        # not checked (no header of ours), but a forged copy in our name is removed
        self.assertEqual(arh(m), [])


class RejectTest(Base):
    checks = {"spf": "reject", "dkim": "reject", "dmarc": "reject"}

    def test_spf_fail_refused_at_mail(self):
        code, text = send(self.srv, "bob@good.test", make_message("bob@good.test", "r1"), ip=BAD_IP)
        self.assertEqual(code, 550, text)
        self.assertTrue(text.startswith("5.7.23 "), text)
        self.assertIn("good.test", text)

    def test_dkim_fail_refused_after_data(self):
        sig = signed("bob@good.test", "r2", body=b"Original.\r\n").replace(b"Original.", b"Changed!!")
        code, text = send(self.srv, "bob@good.test", sig)
        self.assertEqual(code, 550, text)
        self.assertTrue(text.startswith("5.7.20 "), text)

    def test_dmarc_fail_refused(self):
        # SPF passes for none.test, but From is good.test and nothing is aligned
        code, text = send(self.srv, "x@none.test", make_message("bob@good.test", "r3"))
        self.assertEqual(code, 550, text)
        self.assertTrue(text.startswith("5.7.1 "), text)
        self.assertIn("DMARC", text)
        data = b"From: a@good.test\r\nFrom: b@none.test\r\nSubject: r4\r\n\r\nx\r\n"
        code, text = send(self.srv, "bob@good.test", data)
        self.assertEqual(code, 550, text)
        self.assertTrue(text.startswith("5.7.1 "), text)

    def test_pass_accepted(self):
        before = self.metric("dkim", "pass")
        self.ok(send(self.srv, "bob@good.test", signed("bob@good.test", "r ok")))
        r = ours(self.delivered("r ok"))[0]
        self.assertIn("dmarc=pass", r)
        self.assertEqual(self.metric("dkim", "pass"), before + 1)
        self.assertGreaterEqual(self.metric("spf", "pass"), 1)
        self.assertGreaterEqual(self.metric("dmarc", "pass"), 1)

    def test_client_gone_while_checking(self):
        # MAIL FROM a domain whose SPF lookup times out, then the client vanishes: the check
        # finishes for nobody; the server goes on (and exits clean under ASan: tearDown)
        host, port = self.srv.listeners["smtp"][0]
        with socket.create_connection((host, port), timeout=IO_TIMEOUT,
                                      source_address=(GOOD_IP, 0)) as c:
            f = c.makefile("rb")
            f.readline()
            c.sendall(b"EHLO client.test\r\nMAIL FROM:<x@tempfail.test>\r\n")
            for _ in range(20):  # to the last line of the EHLO reply (bounded)
                line = f.readline()
                if not line or line.startswith(b"250 "):
                    break
        self.assertIsNotNone(self.srv.wait_log(r"spf=temperror identity=mailfrom "
                                               r"domain=tempfail\.test", IO_TIMEOUT))
        self.ok(send(self.srv, "bob@good.test", signed("bob@good.test", "after gone")))
        self.delivered("after gone")

    def test_temporary_failure_accepted(self):
        t0 = time.monotonic()
        self.ok(send(self.srv, "x@tempfail.test", make_message("x@tempfail.test", "temp")))
        r = ours(self.delivered("temp"))[0]
        self.assertIn("spf=temperror", r)
        self.assertIn("dmarc=temperror", r)
        self.assertLess(time.monotonic() - t0, 30 * SLOW)


class HonorTest(Base):
    checks = {"dmarc": "honor", "quarantine_folder": "Junk"}

    def test_quarantine_lands_in_junk(self):
        self.ok(send(self.srv, "x@quar.test", make_message("x@quar.test", "quarantined"), ip=BAD_IP))
        m = self.delivered("quarantined", folder="Junk")
        self.assertRegex(ours(m)[0], r"dmarc=fail \(p=quarantine sp=quarantine dis=quarantine\)")
        md = mailbox.Maildir(self.env.maildir_path(RCPT), factory=None, create=False)
        self.assertIn("Junk", md.list_folders())
        self.assertFalse(any(parse(md.get_bytes(k))["Subject"] == "quarantined" for k in md.keys()))

    def test_reject_policy(self):
        code, text = send(self.srv, "bob@good.test", make_message("bob@good.test", "h1"), ip=BAD_IP)
        self.assertEqual(code, 550, text)
        self.assertEqual(text, "5.7.1 Message rejected by DMARC policy of good.test (p=reject)")

    def test_none_policy_delivered(self):
        self.ok(send(self.srv, "x@none.test", make_message("x@none.test", "p none"), ip=BAD_IP))
        r = ours(self.delivered("p none"))[0]
        self.assertIn("dmarc=fail (p=none sp=none dis=none)", r)

    def test_spf_fail_not_refused_by_default(self):
        # spf = tag (default): an SPF fail from a p=quarantine domain is quarantined, not refused
        self.ok(send(self.srv, "x@quar.test", make_message("x@none.test", "other from"), ip=BAD_IP))
        r = ours(self.delivered("other from"))[0]
        self.assertIn("spf=fail", r)


class DmarcOnlyTest(Base):
    """spf = dkim = none, dmarc = tag: SPF and DKIM still run for DMARC but are not shown."""
    checks = {"spf": "none", "dkim": "none", "dmarc": "tag"}

    def test_dmarc_uses_hidden_results(self):
        self.ok(send(self.srv, "bob@good.test", make_message("bob@good.test", "spf hidden")))
        r = ours(self.delivered("spf hidden"))[0]
        self.assertNotIn("spf=", r)
        self.assertNotIn("dkim=", r)
        self.assertIn("dmarc=pass", r)
        self.ok(send(self.srv, "x@none.test", signed("bob@good.test", "dkim hidden"), ip=BAD_IP))
        r = ours(self.delivered("dkim hidden"))[0]
        self.assertEqual(r, HOSTNAME + "; dmarc=pass (p=reject sp=reject dis=none) "
                            "header.from=good.test")


class AllNoneTest(Base):
    """Every check off: no header, nothing removed, no DNS asked."""
    checks = {"spf": "none", "dkim": "none", "dmarc": "none"}

    def test_nothing(self):
        extra = b"Authentication-Results: " + HOSTNAME.encode() + b"; spf=pass\r\n"
        self.ok(send(self.srv, "bob@good.test", make_message("bob@good.test", "all off", extra),
                     ip=BAD_IP))
        m = self.delivered("all off")
        self.assertEqual(arh(m), [HOSTNAME + "; spf=pass"])
        self.assertNotRegex(self.srv.log, r"spf=|dmarc=")


class OfflineTest(unittest.TestCase):
    """No usable DNS: mail is accepted and tagged, promptly."""

    def run_with(self, servers, subject, limit):
        env = ServeEnv(self, remote={"dns_servers": servers})
        env.add_user(RCPT, PASSWORD)
        srv = env.start()
        t0 = time.monotonic()
        reply = send(srv, "you@example.org", make_message("you@example.org", subject))
        self.assertEqual(reply[0], 250, reply)
        took = time.monotonic() - t0
        msgs = env.wait_maildir(RCPT, 1, subject=subject)
        self.assertEqual(len(msgs), 1, srv.log[-3000:])
        r = ours(parse(msgs[0].raw))[0]
        self.assertIn("spf=temperror", r)
        self.assertIn("dmarc=temperror", r)
        self.assertLess(took, limit * SLOW)

    def test_refused(self):
        # nothing listens: an ICMP port unreachable, at once
        self.run_with("127.0.0.1:%d" % free_port("127.0.0.1"), "offline refused", 10)

    def test_black_hole(self):
        # a socket that never answers: the resolver's time-outs (2 s, then 4 s per query)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        self.addCleanup(sock.close)
        self.run_with("127.0.0.1:%d" % sock.getsockname()[1], "offline black hole", 40)


class ConfigTest(unittest.TestCase):
    def test_bad_values(self):
        env = ServeEnv(self, checks={"spf": "honor", "dmarc": "maybe",
                                     "quarantine_folder": "../x", "authserv_id": "a b"})
        p = env.tern("check-config")
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 1, out)
        self.assertRegex(out, r"tern\.conf:\d+: \[checks\] spf: 'honor' is not none, tag or reject")
        self.assertRegex(out, r"tern\.conf:\d+: \[checks\] dmarc: 'maybe' is not none, tag, reject or honor")
        self.assertRegex(out, r"tern\.conf:\d+: \[checks\] quarantine_folder: '\.\./x' is not a folder name")
        self.assertRegex(out, r"tern\.conf:\d+: \[checks\] authserv_id: 'a b' is not a host name")

    def test_good_values(self):
        env = ServeEnv(self, checks={"spf": "none", "dkim": "Reject", "dmarc": "honor",
                                     "quarantine_folder": "Spam.Inbound", "authserv_id": "mx.test"})
        p = env.tern("check-config")
        self.assertEqual(p.returncode, 0, p.stdout.decode())


if __name__ == "__main__":
    unittest.main()
