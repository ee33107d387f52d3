"""`tern serve`, part 1: real clients on the three listeners, AUTH and relay
rules, aliases and couriers (Maildir, MDA, pipe), DSNs, loops, queue recovery
and signals.  Mailboxes are read with `mailbox`, DSNs parsed with `email`.

Every wait is bounded (the Maildir or the log is polled against a deadline).
Servers that several tests can share are started once per class; each is
stopped with SIGTERM at the end and must exit 0 without a sanitizer report.
Relayed mail goes to remote.test, routed ([remote] routes) to a loopback port
that refuses connections, so it stays queued (deferred) until give_up.

    TERN=build-asan/tern python3 -m unittest test_serve      (from tests/integration)
"""

import base64
import email
import email.policy
import os
import re
import shutil
import signal
import smtplib
import ssl
import threading
import time
import unittest

from servelib import (HOSTNAME, ServeEnv, cert_paths, envelope_v2, item_envelope, item_path, item_problem,
                      queued_id, split_item, unreachable_remote, wait_until)
from ternlib import TERN, Dialogue, dot_stuff, have_ipv6_loopback, message, run, send_raw

PW = {"alice@example.test": "alice-pw", "bob@example.test": "bob pw 2", "carol@example.test": "c4rol!",
      "dave@example.test": "dave-pw", "erin@example.test": "erin-pw", "firstlast@example.test": "fl-pw"}


def verified_context():
    """Clients verify the server's certificate against the test's own cert."""
    ctx = ssl.create_default_context(cafile=cert_paths()[0])
    return ctx


def plain(user, password):
    return base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()


def ext_lines(reply):
    """The extension keywords of an EHLO reply (upper case, first word of each line after the first)."""
    return [line.split()[0].upper() for line in reply.lines[1:] if line.strip()]


def add_users(env, *addresses):
    for a in addresses:
        env.add_user(a, PW[a])


def session(test, srv, kind="smtp", starttls=False, auth=None, ehlo="client.test"):
    """A raw SMTP session after the greeting and EHLO (then STARTTLS + EHLO, then AUTH PLAIN)."""
    d = Dialogue(srv.port(kind), tls=(kind == "submissions"))
    test.addCleanup(d.close)
    d.expect(220)
    d.ehlo = d.cmd("EHLO " + ehlo, 250)
    if starttls:
        d.cmd("STARTTLS", 220)
        d.starttls_wrap()
        d.ehlo = d.cmd("EHLO " + ehlo, 250)
    if auth:
        d.cmd("AUTH PLAIN " + plain(auth, PW[auth]), 235, "2.7.0")
    return d


def lf(data):
    return data.replace(b"\r\n", b"\n")


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


class ServeCase(unittest.TestCase):
    """Helpers shared by the test classes."""

    def assert_delivered(self, msg, rcpt, sender, subject, body=None, with_=None, for_=None,
                         received=True):
        """A message as tern stores it: Return-Path and Delivered-To on top, then tern's Received
        (added when the message was received; not there for an item written into the queue by hand)."""
        self.assertEqual(msg["Subject"], subject)
        self.assertEqual(msg["Return-Path"], "<%s>" % sender)
        self.assertEqual(msg.get_all("Delivered-To"), [rcpt])
        keys = [k.lower() for k in msg.keys()]
        self.assertEqual(keys[:2], ["return-path", "delivered-to"], keys)
        if not received:
            self.assertIsNone(msg["Received"])
        else:
            self.assertEqual(keys[2], "received", keys)
            ours = msg.get_all("Received")[0]
            self.assertIn("by %s (tern)" % HOSTNAME, ours)
            if with_:
                self.assertRegex(ours, r"with %s[;\s]" % with_)
            if for_:
                self.assertIn("for <%s>" % for_, ours)
        if body is not None:
            self.assertEqual(msg.get_payload(), body)
        self.assertNotIn(b"\r\n", msg.raw, "Maildir files are stored with LF line ends")

    def wait_one(self, env, rcpt, subject, timeout=20):
        msgs = env.wait_maildir(rcpt, 1, timeout=timeout, subject=subject)
        self.assertEqual(len(msgs), 1, "%s: %r" % (rcpt, [m["Subject"] for m in env.maildir(rcpt)]))
        return msgs[0]

    def check_dsn(self, raw, sender, final_rcpt, action, status_re, subject, diag_re=None):
        """An RFC 3464 report from <> about one recipient, with the original attached."""
        d = parse(raw)
        self.assertEqual(d.get_content_type(), "multipart/report")
        self.assertEqual(d.get_param("report-type"), "delivery-status")
        self.assertIn("MAILER-DAEMON@", str(d["From"]))
        self.assertEqual(str(d["Return-Path"]).strip(), "<>")
        self.assertEqual(str(d["Auto-Submitted"]).strip(), "auto-replied")
        self.assertEqual(str(d["To"]).strip("<> "), sender)
        self.assertEqual(d.get_all("Delivered-To"), [sender])
        parts = list(d.iter_parts())
        self.assertEqual(len(parts), 3, [p.get_content_type() for p in parts])
        self.assertEqual(parts[0].get_content_type(), "text/plain")
        self.assertEqual(parts[1].get_content_type(), "message/delivery-status")
        blocks = parts[1].get_payload()  # per-message fields, then one block per recipient
        self.assertEqual(len(blocks), 2, [dict(b) for b in blocks])
        self.assertEqual(blocks[0]["Reporting-MTA"].split(";")[1].strip(), HOSTNAME)
        r = blocks[1]
        self.assertEqual(re.sub(r"\s+", "", r["Final-Recipient"]).lower(), "rfc822;" + final_rcpt)
        self.assertEqual(r["Action"].strip(), action)
        self.assertRegex(r["Status"].strip(), status_re)
        self.assertIsNotNone(r["Diagnostic-Code"])
        if diag_re:
            self.assertRegex(re.sub(r"\s+", " ", r["Diagnostic-Code"]), diag_re)
        orig = parts[2]
        self.assertIn(orig.get_content_type(), ("message/rfc822", "text/rfc822-headers"))
        if orig.get_content_type() == "message/rfc822":
            inner = orig.get_payload()[0]
            self.assertEqual(inner["Subject"], subject)
        else:
            self.assertIn("Subject: " + subject, orig.get_content())
        return d, r


# ---- real clients on the three listeners ----------------------------------------------


class ClientTest(ServeCase):
    @classmethod
    def setUpClass(cls):
        cls.env = ServeEnv(cleanup=cls.addClassCleanup)
        add_users(cls.env, "alice@example.test", "bob@example.test")
        cls.srv = cls.env.start()

    def smtplib_check(self, s, sender, rcpt, subject, with_):
        body = "Hello %s.\n.leading dot\n" % rcpt
        msg = message(subject=subject, frm=sender, to=rcpt, body=body.replace("\n", "\r\n"))
        self.assertEqual(s.sendmail(sender, [rcpt], msg), {})
        s.quit()
        m = self.wait_one(self.env, rcpt, subject)
        self.assert_delivered(m, rcpt, sender, subject, body=body, with_=with_, for_=rcpt)
        self.assertTrue(m.raw.endswith(lf(msg)), m.raw)

    def test_smtplib_plain_smtp(self):
        s = smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=20)
        self.addCleanup(s.close)
        s.ehlo("client.example")
        self.assertTrue(s.has_extn("starttls"))
        self.assertFalse(s.has_extn("auth"), "AUTH offered in clear text")
        self.smtplib_check(s, "someone@remote.test", "alice@example.test", "smtplib plain", "ESMTP")

    def test_smtplib_submission_starttls_login(self):
        s = smtplib.SMTP("127.0.0.1", self.srv.port("submission"), timeout=20)
        self.addCleanup(s.close)
        s.ehlo("client.example")
        self.assertFalse(s.has_extn("auth"))
        self.assertEqual(s.starttls(context=verified_context())[0], 220)
        s.ehlo("client.example")
        self.assertIn("PLAIN", s.esmtp_features["auth"].split())
        self.assertEqual(s.login("alice@example.test", PW["alice@example.test"])[0], 235)
        self.smtplib_check(s, "alice@example.test", "bob@example.test", "smtplib submission", "ESMTPSA")

    def test_smtplib_submissions_implicit_tls(self):
        s = smtplib.SMTP_SSL("127.0.0.1", self.srv.port("submissions"), timeout=20,
                             context=verified_context())
        self.addCleanup(s.close)
        s.ehlo("client.example")
        self.assertFalse(s.has_extn("starttls"), "STARTTLS offered inside TLS")
        s.user, s.password = "bob@example.test", PW["bob@example.test"]
        self.assertEqual(s.auth("LOGIN", s.auth_login)[0], 235)
        self.smtplib_check(s, "bob@example.test", "alice@example.test", "smtplib submissions", "ESMTPSA")

    # -- swaks ----------------------------------------------------------------------

    def swaks(self, kind, sender, rcpt, subject, extra):
        p = run(["swaks", "--server", "127.0.0.1:%d" % self.srv.port(kind), "--helo", "swaks.example",
                 "--from", sender, "--to", rcpt, "--header", "Subject: " + subject,
                 "--body", "swaks body for " + rcpt] + extra)
        self.assertEqual(p.returncode, 0, p.stdout.decode(errors="replace"))
        m = self.wait_one(self.env, rcpt, subject)
        self.assert_delivered(m, rcpt, sender, subject, for_=rcpt)
        self.assertIn("swaks body for " + rcpt, m.get_payload())
        self.assertIn("from swaks.example", m.get_all("Received")[0])
        return m, p.stdout.decode(errors="replace")

    def auth_args(self, user):
        return ["--auth", "PLAIN", "--auth-user", user, "--auth-password", PW[user]]

    @unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
    def test_swaks_smtp(self):
        self.swaks("smtp", "sw@remote.test", "bob@example.test", "swaks smtp", [])

    @unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
    def test_swaks_submission_starttls(self):
        m, out = self.swaks("submission", "alice@example.test", "bob@example.test", "swaks submission",
                            ["--tls"] + self.auth_args("alice@example.test"))
        self.assertIn("235", out)
        self.assertRegex(m.get_all("Received")[0], r"with ESMTPSA")

    @unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
    def test_swaks_submissions(self):
        m, _ = self.swaks("submissions", "bob@example.test", "alice@example.test", "swaks submissions",
                          ["--tlsc"] + self.auth_args("bob@example.test"))
        self.assertRegex(m.get_all("Received")[0], r"with ESMTPSA")

    @unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
    def test_swaks_submission_without_auth_refused(self):
        p = run(["swaks", "--server", "127.0.0.1:%d" % self.srv.port("submission"), "--tls",
                 "--from", "alice@example.test", "--to", "bob@example.test", "--header", "Subject: noauth"])
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"530 5.7.0", p.stdout)
        self.assertEqual(self.env.wait_maildir("bob@example.test", 1, timeout=0.3, subject="noauth"), [])

    # -- msmtp ----------------------------------------------------------------------

    def msmtp(self, account, rcpt, msg):
        rc = self.env.path("msmtprc")
        if not os.path.exists(rc):
            cert = cert_paths()[0]
            text = ("defaults\ntls_trust_file %s\ndomain msmtp.example\nlogfile -\n\n"
                    "account smtp\nhost 127.0.0.1\nport %d\nfrom ms@remote.test\nauth off\ntls off\n\n"
                    "account submission\nhost 127.0.0.1\nport %d\nfrom alice@example.test\nauth plain\n"
                    "user alice@example.test\npassword %s\ntls on\ntls_starttls on\n\n"
                    "account submissions\nhost 127.0.0.1\nport %d\nfrom bob@example.test\nauth login\n"
                    "user bob@example.test\npassword %s\ntls on\ntls_starttls off\n"
                    % (cert, self.srv.port("smtp"), self.srv.port("submission"), PW["alice@example.test"],
                       self.srv.port("submissions"), PW["bob@example.test"]))
            with open(rc, "w") as f:
                f.write(text)
            os.chmod(rc, 0o600)
        return run(["msmtp", "-C", rc, "-a", account, "--", rcpt], input=msg)

    def msmtp_case(self, account, sender, rcpt, with_):
        subject = "msmtp " + account
        msg = message(subject=subject, frm=sender, to=rcpt, body="via msmtp\r\n")
        p = self.msmtp(account, rcpt, msg)
        self.assertEqual(p.returncode, 0, p.stdout.decode(errors="replace"))
        m = self.wait_one(self.env, rcpt, subject)
        self.assert_delivered(m, rcpt, sender, subject, body="via msmtp\n", with_=with_, for_=rcpt)
        self.assertIn("from msmtp.example", m.get_all("Received")[0])

    @unittest.skipUnless(shutil.which("msmtp"), "msmtp not installed")
    def test_msmtp_smtp(self):
        self.msmtp_case("smtp", "ms@remote.test", "alice@example.test", "ESMTP")

    @unittest.skipUnless(shutil.which("msmtp"), "msmtp not installed")
    def test_msmtp_submission(self):
        self.msmtp_case("submission", "alice@example.test", "bob@example.test", "ESMTPSA")

    @unittest.skipUnless(shutil.which("msmtp"), "msmtp not installed")
    def test_msmtp_submissions(self):
        self.msmtp_case("submissions", "bob@example.test", "alice@example.test", "ESMTPSA")


# ---- AUTH and relay rules ------------------------------------------------------------


class PolicyTest(ServeCase):
    @classmethod
    def setUpClass(cls):
        cls.env = ServeEnv(cleanup=cls.addClassCleanup, remote=unreachable_remote(cls.addClassCleanup))
        add_users(cls.env, "alice@example.test", "bob@example.test")
        cls.env.write_aliases("lists.test", "news: alice@example.test\n")
        cls.srv = cls.env.start()

    def test_unauthenticated_relay_refused(self):
        for starttls in (False, True):
            with self.subTest(starttls=starttls):
                d = session(self, self.srv, starttls=starttls)
                for sender in ("someone@remote.test", "alice@example.test", ""):
                    d.cmd("MAIL FROM:<%s>" % sender, 250)
                    d.cmd("RCPT TO:<victim@remote.test>", 554, "5.7.1")
                    d.cmd("RCPT TO:<victim@[192.0.2.1]>", 554, "5.7.1")
                    d.cmd("RSET", 250)
                d.cmd("MAIL FROM:<x@remote.test>", 250)
                d.cmd("RCPT TO:<victim@remote.test>", 554, "5.7.1")
                d.cmd("DATA", 554)  # no valid recipient
                d.cmd("QUIT", 221)
        for name in self.env.queue_files():  # (the relay test may have queued mail for bob@remote.test)
            with open(os.path.join(self.env.queue_dir, "queue", name), "rb") as f:
                self.assertNotIn(b"victim", f.read())

    def test_authenticated_relay_queued(self):
        for kind, starttls in (("submission", True), ("smtp", True), ("submissions", False)):
            with self.subTest(kind=kind):
                d = session(self, self.srv, kind, starttls=starttls, auth="alice@example.test")
                subject = "relay via " + kind
                r = d.transaction("alice@example.test", ["bob@remote.test", "bob@example.test"],
                               message(subject=subject, frm="alice@example.test", to="bob@remote.test"))
                self.assertEqual((r.code, r.enh), (250, "2.0.0"), r)
                qid = queued_id(r)
                d.cmd("QUIT", 221)
                # the local copy is delivered, the remote one stays queued (its next hop refuses)
                self.wait_one(self.env, "bob@example.test", subject)
                self.assertTrue(self.srv.wait_log(r"id=%s to=<bob@remote\.test> via=smtp\b.* deferred: "
                                                  % re.escape(qid)), self.srv.log[-3000:])
                # one file: the envelope, then the message it describes (size and CRC-32C)
                path = item_path(self.env.data_dir, qid)
                envtext, msg_part = split_item(path)
                self.assertIn("sender <alice@example.test>\n", envtext)
                self.assertIn("auth-user alice@example.test\n", envtext)
                self.assertIn("rcpt bob@remote.test\n", envtext)
                self.assertIn("target smtp\n", envtext)
                self.assertTrue(envtext.endswith("\nend\n"), envtext)
                self.assertIsNone(item_problem(path))
                self.assertIn(b"Subject: " + subject.encode(), msg_part)
                self.assertFalse([n for n in self.env.queue_files() if n.startswith(qid + ".")],
                                 self.env.queue_files())

    def test_submission_requires_auth(self):
        d = session(self, self.srv, "submission")
        d.cmd("MAIL FROM:<alice@example.test>", 530, "5.7.0")
        d.cmd("STARTTLS", 220)
        d.starttls_wrap()
        d.cmd("EHLO client.test", 250)
        d.cmd("MAIL FROM:<alice@example.test>", 530, "5.7.0")
        d.cmd("RCPT TO:<bob@example.test>", 503)
        d.cmd("AUTH PLAIN " + plain("alice@example.test", PW["alice@example.test"]), 235)
        d.cmd("MAIL FROM:<alice@example.test>", 250)
        d = session(self, self.srv, "submissions")
        d.cmd("MAIL FROM:<alice@example.test>", 530, "5.7.0")

    def test_auth_only_after_starttls(self):
        for kind in ("smtp", "submission"):
            with self.subTest(kind=kind):
                d = session(self, self.srv, kind)
                exts = ext_lines(d.ehlo)
                self.assertIn("STARTTLS", exts)
                self.assertNotIn("AUTH", exts)
                d.cmd("AUTH PLAIN " + plain("alice@example.test", PW["alice@example.test"]), 538, "5.7.11")
                d.cmd("STARTTLS", 220)
                d.starttls_wrap()
                r = d.cmd("EHLO client.test", 250)
                self.assertNotIn("STARTTLS", ext_lines(r))
                auth = [line for line in r.lines if line.upper().startswith("AUTH ")]
                self.assertEqual(len(auth), 1, r.lines)
                self.assertIn("PLAIN", auth[0].split())
                self.assertIn("LOGIN", auth[0].split())
        d = session(self, self.srv, "submissions")
        self.assertIn("AUTH", ext_lines(d.ehlo))
        self.assertNotIn("STARTTLS", ext_lines(d.ehlo))

    def test_wrong_password(self):
        d = session(self, self.srv, "submission", starttls=True)
        for user, pw in (("alice@example.test", "wrong"), ("alice@example.test", PW["bob@example.test"]),
                         ("nobody@example.test", "x"), ("alice@lists.test", PW["alice@example.test"]),
                         ("alice", PW["alice@example.test"])):
            with self.subTest(user=user, pw=pw):
                d.cmd("AUTH PLAIN " + plain(user, pw), 535, "5.7.8")
        # AUTH LOGIN with a wrong password, then the right one in the same session
        d.cmd("AUTH LOGIN", 334)
        d.cmd(base64.b64encode(b"bob@example.test").decode(), 334)
        d.cmd(base64.b64encode(b"not it").decode(), 535, "5.7.8")
        d.cmd("MAIL FROM:<bob@example.test>", 530)
        d.cmd("AUTH PLAIN " + plain("bob@example.test", PW["bob@example.test"]), 235, "2.7.0")
        d.cmd("MAIL FROM:<bob@example.test>", 250)
        self.assertTrue(self.srv.wait_log(r"auth failed: ip=127\.0\.0\.1 user=alice@example\.test session=\d+$"))

    def test_sender_must_match(self):
        d = session(self, self.srv, "submission", starttls=True, auth="alice@example.test")
        for sender in ("alice@other.test", "postmaster@remote.test", "news@lists.test", "alice@example.test.evil"):
            with self.subTest(sender=sender):
                d.cmd("MAIL FROM:<%s>" % sender, 553, "5.7.1")
        for sender in ("alice@example.test", "Alice@EXAMPLE.test", "bob@example.test", ""):
            with self.subTest(sender=sender):
                d.cmd("MAIL FROM:<%s>" % sender, 250)
                d.cmd("RSET", 250)
        # the same rule on port 25 after AUTH; without AUTH any sender may deliver locally
        d = session(self, self.srv, "smtp", starttls=True, auth="bob@example.test")
        d.cmd("MAIL FROM:<bob@remote.test>", 553, "5.7.1")
        d = session(self, self.srv, "smtp")
        d.cmd("MAIL FROM:<bob@remote.test>", 250)

    def test_unknown_local_user(self):
        for kind, auth in (("smtp", None), ("submission", "alice@example.test")):
            with self.subTest(kind=kind):
                d = session(self, self.srv, kind, starttls=auth is not None, auth=auth)
                d.cmd("MAIL FROM:<alice@example.test>", 250)
                r = d.cmd("RCPT TO:<nobody@example.test>", 550, "5.1.1")
                self.assertIn("nobody@example.test", r.text)
                d.cmd("RCPT TO:<other@lists.test>", 550, "5.1.1")  # a local domain without catch-all
                d.cmd("RCPT TO:<ALICE@Example.TEST>", 250)  # case does not matter
                d.cmd("RCPT TO:<news@lists.test>", 250)
                d.cmd("QUIT", 221)

    def test_routing_tricks_never_relay(self):
        tricks = ["bob%remote.test@other.test", "remote.test!bob@other.test",
                  '"bob@remote.test"@other.test', "@other.test:bob@remote.test",
                  "bob%remote.test@[192.0.2.7]"]
        for kind, auth in (("smtp", None), ("submission", "alice@example.test")):
            d = session(self, self.srv, kind, starttls=auth is not None, auth=auth)
            d.cmd("MAIL FROM:<alice@example.test>", 250)
            for t in tricks:
                with self.subTest(kind=kind, rcpt=t):
                    d.cmd("RCPT TO:<%s>" % t, 554, "5.7.1")
            # at a local domain the trick is just an unknown local part, never a relay
            for t in ("bob%remote.test@example.test", "remote.test!bob@example.test",
                      '"bob@remote.test"@example.test'):
                with self.subTest(kind=kind, rcpt=t):
                    d.cmd("RCPT TO:<%s>" % t, 550, "5.1.1")
            d.cmd("QUIT", 221)

    def test_loop_too_many_received(self):
        def with_hops(n, subject):
            hops = "".join("Received: from hop%d.test by hop%d.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                           % (i, i + 1) for i in range(n))
            return hops.encode() + message(subject=subject, to="alice@example.test")

        d = session(self, self.srv)
        r = d.transaction("loop@remote.test", ["alice@example.test"], with_hops(31, "loop 31"))
        self.assertEqual((r.code, r.enh), (554, "5.4.6"), r)
        r = d.transaction("loop@remote.test", ["alice@example.test"], with_hops(30, "loop 30"))
        self.assertEqual(r.code, 250, r)
        m = self.wait_one(self.env, "alice@example.test", "loop 30")
        self.assertEqual(len(m.get_all("Received")), 31)
        self.assertEqual(self.env.wait_maildir("alice@example.test", 1, timeout=0.2, subject="loop 31"), [])


# ---- aliases, pipe aliases and DSNs ------------------------------------------------------


class AliasTest(ServeCase):
    @classmethod
    def setUpClass(cls):
        env = cls.env = ServeEnv(cleanup=cls.addClassCleanup)
        add_users(env, "alice@example.test", "bob@example.test", "carol@example.test", "dave@example.test",
                  "firstlast@example.test")
        cls.pipe = env.write_script("pipe.sh", (
            "#!/bin/sh\n"
            "d='%s'\n"
            "printf '%%s\\n' \"$#\" \"$SENDER\" \"$RECIPIENT\" > \"$d/pipe-env.tmp\"\n"
            "cat > \"$d/pipe-out.tmp\" || exit 1\n"
            "mv \"$d/pipe-env.tmp\" \"$d/pipe-env\" && mv \"$d/pipe-out.tmp\" \"$d/pipe-out\"\n") % env.dir)
        cls.fail = env.write_script("fail.sh", "#!/bin/sh\ncat >/dev/null\necho 'list closed for good'\nexit 3\n")
        env.write_aliases("example.test", (
            "# lists and programs\n"
            "team: alice, bob@example.test\n"
            "pipe: | %s\n"
            "broken: | %s\n"
            "nested: team, carol\n") % (cls.pipe, cls.fail))
        env.write_aliases("catchall.test", "*: dave@example.test\n")
        cls.srv = env.start()

    def test_list_alias(self):
        d = session(self, self.srv)
        msg = message(subject="to the team", frm="boss@remote.test", to="team@example.test")
        r = d.transaction("boss@remote.test", ["team@example.test"], msg)
        self.assertEqual(r.code, 250, r)
        for rcpt in ("alice@example.test", "bob@example.test"):
            m = self.wait_one(self.env, rcpt, "to the team")
            self.assert_delivered(m, rcpt, "boss@remote.test", "to the team", for_="team@example.test")

    def test_nested_alias_delivers_once_each(self):
        d = session(self, self.srv)
        # nested expands to team (alice, bob) and carol; alice is also named directly
        r = d.transaction("boss@remote.test", ["nested@example.test", "alice@example.test"],
                       message(subject="nested", to="nested@example.test"))
        self.assertEqual(r.code, 250, r)
        qid = queued_id(r)
        for rcpt in ("alice@example.test", "bob@example.test", "carol@example.test"):
            m = self.wait_one(self.env, rcpt, "nested")
            self.assertNotIn("for <", m.get_all("Received")[0])  # two RCPTs: no recipient named
        self.assertTrue(self.srv.wait_log(r"id=%s: done" % re.escape(qid)))
        self.assertEqual(len(re.findall(r"id=%s to=<alice@example\.test> via=maildir delivered"
                                        % re.escape(qid), self.srv.log)), 1)

    def test_catch_all(self):
        d = session(self, self.srv)
        r = d.transaction("x@remote.test", ["Whoever.Else+x@catchall.test"],
                       message(subject="caught", to="whoever@catchall.test"))
        self.assertEqual(r.code, 250, r)
        m = self.wait_one(self.env, "dave@example.test", "caught")
        self.assert_delivered(m, "dave@example.test", "x@remote.test", "caught")
        d.cmd("MAIL FROM:<x@remote.test>", 250)
        d.cmd("RCPT TO:<whoever@example.test>", 550, "5.1.1")  # no catch-all there

    def test_drop_chars_and_suffix(self):
        d = session(self, self.srv)
        for rcpt in ("First.Last+news@example.test", "f.i.r.s.t.l.a.s.t@example.test", "firstlast+@example.test"):
            with self.subTest(rcpt=rcpt):
                subject = "normalised " + rcpt
                r = d.transaction("x@remote.test", [rcpt], message(subject=subject, to=rcpt))
                self.assertEqual(r.code, 250, r)
                m = self.wait_one(self.env, "firstlast@example.test", subject)
                self.assert_delivered(m, "firstlast@example.test", "x@remote.test", subject, for_=rcpt)
        d.cmd("MAIL FROM:<x@remote.test>", 250)
        d.cmd("RCPT TO:<first_last@example.test>", 550, "5.1.1")

    def test_pipe_alias_gets_the_bytes(self):
        body = "line one\r\n.dot line\r\n\r\nlast line \xe9\r\n"
        msg = message(subject="piped", frm="x@remote.test", to="pipe@example.test").replace(
            b"Hello.\r\n", body.encode("latin-1"))
        d = session(self, self.srv, ehlo="piper.test")
        d.cmd("MAIL FROM:<x@remote.test> BODY=8BITMIME", 250)
        d.cmd("RCPT TO:<pipe@example.test>", 250)
        d.cmd("DATA", 354)
        d.send(dot_stuff(msg) + b".\r\n")
        qid = queued_id(d.expect(250))
        out = self.env.path("pipe-out")
        self.assertTrue(wait_until(lambda: os.path.exists(out)), self.srv.log[-3000:])
        with open(out, "rb") as f:
            got = f.read()
        head = b"Return-Path: <x@remote.test>\nDelivered-To: pipe@example.test\n"
        self.assertTrue(got.startswith(head), got[:300])
        rest = got[len(head):]
        m = re.match(rb"Received: from piper\.test \(127\.0\.0\.1:\d+\)\n\tby mx\.example\.test \(tern\) "
                     rb"with ESMTP\n\tfor <pipe@example\.test>; [^\n]+\n", rest)
        self.assertTrue(m, rest[:300])
        self.assertEqual(rest[m.end():], lf(msg))  # every octet, CRLF made LF, dots unstuffed
        with open(self.env.path("pipe-env")) as f:
            self.assertEqual(f.read().split("\n")[:3], ["0", "x@remote.test", "pipe@example.test"])
        self.assertTrue(self.srv.wait_log(r"id=%s to=<pipe@example\.test> via=pipe delivered" % re.escape(qid)))

    def test_failing_pipe_bounces_once(self):
        d = session(self, self.srv)
        msg = message(subject="doomed", frm="carol@example.test", to="broken@example.test", body="bye\r\n")
        r = d.transaction("carol@example.test", ["broken@example.test"], msg)
        self.assertEqual(r.code, 250, r)
        qid = queued_id(r)
        found = self.srv.wait_log(r"id=%s: failure notice to <carol@example\.test> queued as (\S+)"
                                  % re.escape(qid))
        self.assertTrue(found, self.srv.log[-3000:])
        self.assertTrue(self.srv.wait_log(r"id=%s: done" % re.escape(found[0])))
        self.assertTrue(self.srv.wait_log(r"id=%s: done" % re.escape(qid)))
        self.assertRegex(self.srv.log, r"id=%s to=<broken@example\.test> via=pipe failed: 5\.3\.0"
                         % re.escape(qid))
        dsns = self.env.wait_maildir("carol@example.test", 1)
        self.assertEqual(len(dsns), 1, [m["Subject"] for m in dsns])
        dsn, rcpt = self.check_dsn(dsns[0].raw, "carol@example.test", "broken@example.test", "failed",
                                   r"^5\.\d+\.\d+$", "doomed", diag_re=r"list closed for good")
        inner = dsn.get_payload()[2]
        if inner.get_content_type() == "message/rfc822":
            self.assertIn("bye", inner.get_payload()[0].get_content())
        self.assertEqual(self.env.queue_files(), [])

    def test_null_sender_failure_no_dsn(self):
        d = session(self, self.srv)
        r = d.transaction("", ["broken@example.test"], message(subject="bounce of a bounce"))
        self.assertEqual(r.code, 250, r)
        qid = queued_id(r)
        self.assertTrue(self.srv.wait_log(r"id=%s to=<broken@example\.test> via=pipe failed" % re.escape(qid)))
        self.assertTrue(self.srv.wait_log(r"id=%s: done" % re.escape(qid)))
        self.assertNotRegex(self.srv.log, r"id=%s: (failure|delay) notice" % re.escape(qid))
        self.assertNotRegex(self.srv.log, r"cannot queue the failure notice to <>")
        self.assertFalse(any(f.startswith(qid) for f in self.env.queue_files()))
        self.assertEqual(self.env.queue_files(), [])


# ---- the MDA courier ----------------------------------------------------------------------


MDA_SCRIPT = """#!/bin/sh
# mda.sh FROM TO: behaviour per recipient from files in the test folder
d='%s'
to="$2"
cat > "$d/in.$$" || exit 75
if [ -f "$d/hang-$to" ]; then rm -f "$d/in.$$"; : > "$d/hanging-$to"; sleep 30; exit 0; fi
if [ -f "$d/exit-$to" ]; then rm -f "$d/in.$$"; echo "mda refuses $to"; exit "$(cat "$d/exit-$to")"; fi
printf '%%s' "$1" > "$d/out/$to.$$.from"
mv "$d/in.$$" "$d/out/$to.$$"
"""


def mda_env(test=None, cleanup=None, **sections):
    local = {"delivery": "mda", "mda_timeout": "1s"}
    local.update(sections.pop("local", {}))
    env = ServeEnv(test, cleanup=cleanup, local=local, **sections)
    script = env.write_script("mda.sh", MDA_SCRIPT % env.dir)
    os.mkdir(env.path("out"))
    env.conf["local"]["mda_command"] = "%s %%from%% %%to%%" % script
    env.write_conf()
    return env


def mda_outputs(env, rcpt):
    """[(from-argument, message bytes)] the MDA stored for rcpt."""
    res = []
    for name in sorted(os.listdir(env.path("out"))):
        if name.startswith(rcpt + ".") and not name.endswith(".from"):
            with open(env.path("out", name), "rb") as f:
                data = f.read()
            with open(env.path("out", name + ".from")) as f:
                res.append((f.read(), data))
    return res


def wait_mda(env, rcpt, n, timeout=20):
    return wait_until(lambda: len(mda_outputs(env, rcpt)) >= n, timeout) and mda_outputs(env, rcpt)


def set_flag(env, kind, rcpt, text=""):
    with open(env.path("%s-%s" % (kind, rcpt)), "w") as f:
        f.write(text)


class MdaHangRetryTest(ServeCase):
    def test_retry_delay_counts_from_the_end_of_the_attempt(self):
        """An MDA that hangs until mda_timeout (2 s) with retry = 3s: the next attempt comes 3 s
        (+-10 %) after the first one ENDED, not 3 s after it began (then it would start 1 s
        after the end, and with the defaults a hanging MDA ran back to back)."""
        env = mda_env(self, local={"mda_timeout": "2s"}, queue={"retry": "3s 6s"})
        add_users(env, "alice@example.test")
        set_flag(env, "hang", "alice@example.test")
        srv = env.start()
        d = session(self, srv)
        r = d.transaction("x@remote.test", ["alice@example.test"], message(subject="hang"))
        self.assertEqual(r.code, 250, r)
        pat = r"(\S+Z) serve info: id=%s to=<alice@example\.test> via=mda deferred" % queued_id(r)
        self.assertTrue(wait_until(lambda: len(re.findall(pat, srv.log)) >= 2, 30), srv.log[-3000:])

        def stamp(s):
            return time.mktime(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")) + float(s[19:-1] or 0)

        t = [stamp(s) for s in re.findall(pat, srv.log)[:2]]
        # end of attempt 1 -> end of attempt 2 = delay (2.7..3.3 s) + attempt 2 (about 2 s)
        self.assertGreaterEqual(t[1] - t[0], 4.4, t)
        self.assertLess(t[1] - t[0], 9, t)


class MdaTest(ServeCase):
    @classmethod
    def setUpClass(cls):
        cls.env = mda_env(cleanup=cls.addClassCleanup)
        add_users(cls.env, "alice@example.test", "bob@example.test", "carol@example.test", "dave@example.test",
                  "erin@example.test")
        cls.srv = cls.env.start()

    def send(self, sender, rcpt, subject, body="mda body\r\n"):
        d = session(self, self.srv)
        msg = message(subject=subject, frm=sender, to=rcpt, body=body)
        r = d.transaction(sender, [rcpt], msg)
        self.assertEqual(r.code, 250, r)
        d.cmd("QUIT", 221)
        return queued_id(r), msg

    def test_exit_0_delivered(self):
        qid, msg = self.send("x@remote.test", "dave@example.test", "mda ok")
        outs = wait_mda(self.env, "dave@example.test", 1)
        self.assertTrue(outs, self.srv.log[-3000:])
        frm, data = outs[0]
        self.assertEqual(frm, "x@remote.test")
        self.assertTrue(data.startswith(b"Return-Path: <x@remote.test>\nDelivered-To: dave@example.test\n"
                                        b"Received: from client.test"), data[:200])
        self.assertTrue(data.endswith(lf(msg)))
        self.assertTrue(self.srv.wait_log(r"id=%s to=<dave@example\.test> via=mda delivered" % qid))
        self.assertTrue(self.srv.wait_log(r"id=%s: done" % qid))

    def test_exit_75_deferred_then_delivered(self):
        set_flag(self.env, "exit", "bob@example.test", "75")
        qid, msg = self.send("x@remote.test", "bob@example.test", "mda later")
        self.assertTrue(self.srv.wait_log(r"id=%s to=<bob@example\.test> via=mda deferred: 4\.\d+\.\d+ .*"
                                          r"mda refuses" % qid), self.srv.log[-3000:])
        # the attempt is recorded in the envelope part of the item on disk (rewritten after the
        # log line, with the same message octets after it)
        path = item_path(self.env.data_dir, qid)

        def attempts():
            m = re.search(r"\nattempts (\d+)\n", item_envelope(path))
            return m and int(m.group(1))

        self.assertTrue(wait_until(attempts), self.srv.log[-2000:])
        envtext, msg_part = split_item(path)
        self.assertIn("\nstatus pending\n", envtext)
        self.assertRegex(envtext, r"\nerror 4\.3\.0 .*mda refuses")
        self.assertIsNone(item_problem(path))
        self.assertTrue(msg_part.replace(b"\r\n", b"\n").endswith(lf(msg)), msg_part[-200:])
        os.unlink(self.env.path("exit-bob@example.test"))
        outs = wait_mda(self.env, "bob@example.test", 1)
        self.assertTrue(outs, self.srv.log[-3000:])
        self.assertTrue(outs[0][1].endswith(lf(msg)))
        self.assertTrue(self.srv.wait_log(r"id=%s: done" % qid))
        self.assertNotRegex(self.srv.log, r"id=%s: failure notice" % qid)
        self.assertFalse(os.path.exists(path))

    def test_timeout_is_transient(self):
        set_flag(self.env, "hang", "carol@example.test")
        qid, msg = self.send("x@remote.test", "carol@example.test", "mda slow")
        self.assertTrue(self.srv.wait_log(r"id=%s to=<carol@example\.test> via=mda deferred: 4\.\d+\.\d+ .*"
                                          r"did not finish" % qid), self.srv.log[-3000:])
        os.unlink(self.env.path("hang-carol@example.test"))
        outs = wait_mda(self.env, "carol@example.test", 1)
        self.assertTrue(outs, self.srv.log[-3000:])
        self.assertTrue(outs[0][1].endswith(lf(msg)))
        self.assertTrue(self.srv.wait_log(r"id=%s: done" % qid))

    def test_other_exit_bounces(self):
        set_flag(self.env, "exit", "alice@example.test", "1")
        qid, msg = self.send("erin@example.test", "alice@example.test", "mda refused")
        self.assertTrue(self.srv.wait_log(r"id=%s to=<alice@example\.test> via=mda failed: 5\.\d+\.\d+ .*"
                                          r"mda refuses" % qid), self.srv.log[-3000:])
        found = self.srv.wait_log(r"id=%s: failure notice to <erin@example\.test> queued as (\S+)" % qid)
        self.assertTrue(found)
        # the DSN itself goes to erin through the MDA, with an empty %from%
        outs = wait_mda(self.env, "erin@example.test", 1)
        self.assertTrue(outs, self.srv.log[-3000:])
        dsn = [o for o in mda_outputs(self.env, "erin@example.test") if b"multipart/report" in o[1]]
        self.assertEqual(len(dsn), 1)
        frm, raw = dsn[0]
        self.assertEqual(frm, "")
        self.check_dsn(raw, "erin@example.test", "alice@example.test", "failed", r"^5\.\d+\.\d+$",
                       "mda refused", diag_re=r"mda refuses alice@example\.test")
        self.assertTrue(self.srv.wait_log(r"id=%s: done" % re.escape(found[0])))


# ---- give-up of relayed mail ------------------------------------------------------------------


class GiveUpTest(ServeCase):
    def test_relay_past_give_up_bounces_with_4_4_7(self):
        env = ServeEnv(self, queue={"retry": "1s", "give_up": "3s"}, remote=unreachable_remote(self.addCleanup))
        add_users(env, "alice@example.test", "bob@example.test")
        srv = env.start()
        d = session(self, srv, "submission", starttls=True, auth="alice@example.test")
        t0 = time.monotonic()
        r = d.transaction("alice@example.test", ["far@remote.test", "bob@example.test"],
                       message(subject="too far", frm="alice@example.test", to="far@remote.test"))
        self.assertEqual(r.code, 250, r)
        qid = queued_id(r)
        d.cmd("QUIT", 221)
        self.wait_one(env, "bob@example.test", "too far")  # the local recipient is not held up
        dsns = env.wait_maildir("alice@example.test", 1, timeout=20)
        self.assertEqual(len(dsns), 1, srv.log[-3000:])
        self.assertGreaterEqual(time.monotonic() - t0, 2.0, "gave up before give_up")
        _, rcpt = self.check_dsn(dsns[0].raw, "alice@example.test", "far@remote.test", "failed",
                                 r"^4\.4\.7$", "too far")
        self.assertIn("4.4.7", rcpt["Diagnostic-Code"] + rcpt["Status"])
        self.assertTrue(srv.wait_log(r"id=%s: done" % re.escape(qid)))
        self.assertTrue(wait_until(lambda: env.queue_files() == []), env.queue_files())
        # (check_dsn found one recipient block: bob's copy was delivered, so he is not reported)


# ---- queue limits and concurrency ------------------------------------------------------------


class QueueLimitTest(ServeCase):
    def test_queue_full_452(self):
        env = ServeEnv(self, queue={"max_items": "2"}, remote=unreachable_remote(self.addCleanup))
        add_users(env, "alice@example.test")
        srv = env.start()
        d = session(self, srv, "submission", starttls=True, auth="alice@example.test")
        for i in range(2):  # relayed mail stays queued (its next hop refuses connections)
            r = d.transaction("alice@example.test", ["far%d@remote.test" % i], message(subject="fill %d" % i))
            self.assertEqual(r.code, 250, r)
        self.assertEqual(len(env.queue_files()), 2)  # one file per item
        d.cmd("MAIL FROM:<alice@example.test>", 452, "4.3.1")
        s = session(self, srv)
        s.cmd("MAIL FROM:<x@remote.test>", 452, "4.3.1")
        s.cmd("NOOP", 250)  # the session goes on
        self.assertTrue(srv.wait_log(r"refusing mail: queue full"))
        self.assertEqual(len(env.queue_files()), 2)

    def test_min_free_space_452(self):
        env = ServeEnv(self, queue={"min_free_space": "1000000G"})
        add_users(env, "alice@example.test")
        srv = env.start()
        d = session(self, srv)
        d.cmd("MAIL FROM:<x@remote.test>", 452, "4.3.1")
        self.assertTrue(srv.wait_log(r"refusing mail: .*disk nearly full"))
        self.assertEqual(env.queue_files(), [])


class ConcurrencyTest(ServeCase):
    def test_parallel_sessions(self):
        env = ServeEnv(self)
        add_users(env, "alice@example.test", "bob@example.test")
        env.write_aliases("example.test", "team: alice, bob\n")
        srv = env.start()
        errors = []

        def client(i):
            try:
                s = smtplib.SMTP("127.0.0.1", srv.port(), timeout=30)
                for k in range(10):
                    rcpts = ["team@example.test"] if k % 2 else ["alice@example.test"]
                    self.assertEqual(s.sendmail("x@remote.test", rcpts, message(subject="p %d %d" % (i, k))), {})
                s.quit()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        alice = env.wait_maildir("alice@example.test", 200, timeout=30)
        bob = env.wait_maildir("bob@example.test", 100, timeout=30)
        self.assertEqual(sorted(m["Subject"] for m in alice),
                         sorted("p %d %d" % (i, k) for i in range(20) for k in range(10)))
        self.assertEqual(sorted(m["Subject"] for m in bob),
                         sorted("p %d %d" % (i, k) for i in range(20) for k in range(1, 10, 2)))
        self.assertTrue(wait_until(lambda: env.queue_files() == []), env.queue_files())


# ---- queue recovery -------------------------------------------------------------------------


def _item_parts(env, rcpt, sender, subject, target, extra_env):
    """(the envelope lines from "sender" to the last of the recipient, without "end"; the message)
    of a hand-written queue item, in the envelope format of src/queue/envelope.c."""
    if target is None:
        target = "maildir:" + env.maildir_path(rcpt)
    rest = ("sender <%s>\nsmtputf8 no\n8bitmime no\ndelay-warned no\nhelo old.client.test\n"
            "peer [192.0.2.9]:2525\n%srcpt %s\norig %s\ntarget %s\nstatus pending\nattempts 0\n"
            "last-attempt 0\n" % (sender, extra_env, rcpt, rcpt, target))
    msg = message(subject=subject, frm=sender, to=rcpt, body="written before start-up\r\n")
    return rest, msg


def write_item(env, qid, rcpt, sender="x@remote.test", subject="recovered", target=None, extra_env="",
               next_attempt=None):
    """A queue item written by hand as the store commits one: ONE file data_dir/queue/queue/ID, a
    version 2 envelope (with the message's size and CRC-32C) up to its "end" line, then the message.
    Returns (the message bytes, the path of the file)."""
    q = os.path.join(env.queue_dir, "queue")
    os.makedirs(q, exist_ok=True)
    rest, msg = _item_parts(env, rcpt, sender, subject, target, extra_env)
    path = os.path.join(q, qid)
    with open(path, "wb") as f:
        f.write(envelope_v2(qid, msg, rest + "end\n", next_attempt=next_attempt).encode() + msg)
    return msg, path


def write_legacy_item(env, qid, rcpt, sender="x@remote.test", subject="recovered", version=1, end=True,
                      target=None, extra_env="", next_attempt=None):
    """A queue item as an older tern left it: data_dir/queue/queue/ID.env + ID.msg, the envelope
    in version 1 (no checksum lines) or 2 (msg-size and msg-crc32c of the .msg); end=False leaves
    out the "end" line (a version 1 .env cut while it was written).  Returns the message bytes."""
    q = os.path.join(env.queue_dir, "queue")
    os.makedirs(q, exist_ok=True)
    rest, msg = _item_parts(env, rcpt, sender, subject, target, extra_env)
    if end:
        rest += "end\n"
    now = int(time.time())
    if next_attempt is None:
        next_attempt = now - 5
    if version == 1:
        text = "tern-envelope 1\nid %s\ncreated %d\nnext-attempt %d\n%s" % (qid, now - 5, next_attempt, rest)
    else:
        text = envelope_v2(qid, msg, rest, created=now - 5, next_attempt=next_attempt)
    with open(os.path.join(q, qid + ".msg"), "wb") as f:
        f.write(msg)
    with open(os.path.join(q, qid + ".env"), "w") as f:
        f.write(text)
    return msg


class QueueRecoveryTest(ServeCase):
    def test_item_written_before_start_is_delivered(self):
        env = ServeEnv(self)
        add_users(env, "alice@example.test")
        msg, _ = write_item(env, "handmade-1", "alice@example.test")
        srv = env.start()
        self.assertTrue(srv.wait_log(r"recovered 1 items"), srv.log)
        self.assertRegex(srv.log, r"queue recovered: 1 items, 0 incomplete removed, 0 orphans removed, "
                                  r"0 quarantined")
        self.assertRegex(srv.log, r"ready: .* queued=1")
        m = self.wait_one(env, "alice@example.test", "recovered")
        self.assert_delivered(m, "alice@example.test", "x@remote.test", "recovered",
                              body="written before start-up\n", received=False)
        self.assertTrue(m.raw.endswith(lf(msg)))
        self.assertTrue(srv.wait_log(r"id=handmade-1: done"))
        self.assertTrue(wait_until(lambda: env.queue_files() == []), env.queue_files())

    def test_legacy_items_converted_and_delivered(self):
        """ID.env + ID.msg left by an older tern (envelope version 2 with the checksum lines, and
        version 1 without) are converted at start-up into the one-file form and delivered; no
        .env or .msg stays behind."""
        env = ServeEnv(self)
        add_users(env, "alice@example.test")
        later = int(time.time()) + 3600
        msgs = {
            "legacy-v2": write_legacy_item(env, "legacy-v2", "alice@example.test", subject="legacy v2",
                                           version=2),
            "legacy-v1": write_legacy_item(env, "legacy-v1", "alice@example.test", subject="legacy v1",
                                           version=1),
            # not due yet: they stay queued, so that the converted files can be looked at
            "later-v2": write_legacy_item(env, "later-v2", "alice@example.test", subject="later v2",
                                          version=2, next_attempt=later),
            "later-v1": write_legacy_item(env, "later-v1", "alice@example.test", subject="later v1",
                                          version=1, next_attempt=later),
        }
        srv = env.start()
        self.assertTrue(srv.wait_log(r"queue recovered: 4 items, 0 incomplete removed, 0 orphans removed, "
                                     r"0 quarantined"), srv.log)
        # (the "ready" line's queued= may already miss one: delivery starts as soon as recovery ends)
        self.assertTrue(srv.wait_log(r"ready: .* queued=[2-4]\b"), srv.log)
        for subject in ("legacy v2", "legacy v1"):
            m = self.wait_one(env, "alice@example.test", subject)
            self.assert_delivered(m, "alice@example.test", "x@remote.test", subject,
                                  body="written before start-up\n", received=False)
            self.assertTrue(m.raw.endswith(lf(msgs[subject.replace(" ", "-")])))
        self.assertTrue(srv.wait_log(r"id=legacy-v2: done"), srv.log[-3000:])
        self.assertTrue(srv.wait_log(r"id=legacy-v1: done"), srv.log[-3000:])
        # what is still queued is in the new form: one file each, a version 2 envelope (the
        # checksum lines added to the version 1 one), the message octets unchanged after it
        self.assertTrue(wait_until(lambda: env.queue_files() == ["later-v1", "later-v2"]), env.queue_files())
        for qid in ("later-v1", "later-v2"):
            path = item_path(env.data_dir, qid)
            self.assertIsNone(item_problem(path), qid)
            envtext, msg_part = split_item(path)
            self.assertEqual(msg_part, msgs[qid], qid)
            self.assertIn("\nid %s\n" % qid, envtext)
            self.assertIn("\nsender <x@remote.test>\n", envtext)
            self.assertIn("\nrcpt alice@example.test\n", envtext)
            self.assertIn("\nnext-attempt %d\n" % later, envtext)
        self.assertEqual(env.queue_files("tmp"), [])
        self.assertEqual(env.queue_files("quarantine"), [])
        srv.signal(signal.SIGUSR1)
        for subject in ("later v2", "later v1"):
            m = self.wait_one(env, "alice@example.test", subject, timeout=10)
            self.assertTrue(m.raw.endswith(lf(msgs[subject.replace(" ", "-")])))
        self.assertTrue(wait_until(lambda: env.queue_files() == []), env.queue_files())
        self.assertEqual(sorted(m["Subject"] for m in env.maildir("alice@example.test")),
                         ["later v1", "later v2", "legacy v1", "legacy v2"])
        self.assertEqual(env.queue_files("quarantine"), [])

    def test_corrupt_and_incomplete_items(self):
        env = ServeEnv(self)
        add_users(env, "alice@example.test")
        write_item(env, "good-1", "alice@example.test", subject="the good one")
        _, corrupt1 = write_item(env, "corrupt-1", "alice@example.test", subject="corrupt",
                                 extra_env="colour blue\n")
        _, corrupt2 = write_item(env, "corrupt-2", "alice@example.test", subject="wrong id")
        with open(corrupt2, "rb") as f:
            data = f.read().replace(b"\nid corrupt-2\n", b"\nid someone-else\n", 1)
        with open(corrupt2, "wb") as f:
            f.write(data)
        with open(corrupt1, "rb") as f:
            corrupt1_data = f.read()
        # left by an older tern: a version 1 .env cut while it was written (no 250 was given:
        # removed with its .msg), a .msg without its .env (removed), a damaged pair (quarantined)
        write_legacy_item(env, "cut-1", "alice@example.test", subject="cut short", version=1, end=False)
        write_legacy_item(env, "orphan-1", "alice@example.test", subject="orphan")
        os.unlink(os.path.join(env.queue_dir, "queue", "orphan-1.env"))  # a message without envelope
        write_legacy_item(env, "legacy-bad", "alice@example.test", subject="legacy damaged", version=2)
        with open(os.path.join(env.queue_dir, "queue", "legacy-bad.msg"), "ab") as f:
            f.write(b"one line too many\r\n")
        with open(os.path.join(env.queue_dir, "queue", "notes.txt"), "w") as f:
            f.write("not a queue file\n")
        os.makedirs(os.path.join(env.queue_dir, "tmp"), exist_ok=True)
        with open(os.path.join(env.queue_dir, "tmp", "half-written"), "w") as f:
            f.write("tern-envelope 2\nid half")
        srv = env.start()
        # quarantined files: corrupt-1, corrupt-2, notes.txt, legacy-bad.env and legacy-bad.msg
        self.assertTrue(srv.wait_log(r"queue recovered: 1 items, 1 incomplete removed, 1 orphans removed, "
                                     r"5 quarantined"), srv.log)
        self.assertRegex(srv.log, r"1 temporary files removed")
        self.assertRegex(srv.log, r"(?m)queue/corrupt-1: .*moved to \S+/quarantine/corrupt-1$")
        self.assertRegex(srv.log, r"(?m)queue/corrupt-2: .*moved to \S+/quarantine/corrupt-2$")
        self.assertRegex(srv.log, r"(?m)queue/notes\.txt: .*moved to \S+/quarantine/notes\.txt$")
        self.assertRegex(srv.log, r"(?m)queue/legacy-bad\.msg: .*moved to \S+/quarantine/legacy-bad\.msg$")
        self.assertRegex(srv.log, r"incomplete item cut-1 discarded")
        self.assertRegex(srv.log, r"queue/orphan-1\.msg: .*discarded")
        quarantine = env.queue_files("quarantine")
        self.assertEqual(sorted(set(quarantine) - {"notes.txt.why"}),
                         ["corrupt-1", "corrupt-1.why", "corrupt-2", "corrupt-2.why", "legacy-bad.env",
                          "legacy-bad.msg", "legacy-bad.why", "notes.txt"])
        self.assertEqual(env.queue_files("tmp"), [])
        with open(os.path.join(env.queue_dir, "quarantine", "corrupt-1"), "rb") as f:
            self.assertEqual(f.read(), corrupt1_data, "the damaged file is kept as it was")
        for qid in ("corrupt-1", "corrupt-2", "legacy-bad"):
            with open(os.path.join(env.queue_dir, "quarantine", qid + ".why")) as f:
                self.assertTrue(f.read().strip(), qid + ".why is empty")
        m = self.wait_one(env, "alice@example.test", "the good one")
        self.assert_delivered(m, "alice@example.test", "x@remote.test", "the good one", received=False)
        self.assertTrue(srv.wait_log(r"id=good-1: done"))
        self.assertTrue(wait_until(lambda: env.queue_files() == []), env.queue_files())
        self.assertEqual([s for m in env.maildir("alice@example.test") for s in [m["Subject"]]],
                         ["the good one"])

    def test_restart_delivers_what_was_queued(self):
        env = mda_env(self)
        add_users(env, "alice@example.test")
        set_flag(env, "exit", "alice@example.test", "75")
        srv = env.start()
        d = session(self, srv)
        msg = message(subject="across a restart", to="alice@example.test")
        r = d.transaction("x@remote.test", ["alice@example.test"], msg)
        self.assertEqual(r.code, 250, r)
        qid = queued_id(r)
        d.cmd("QUIT", 221)
        self.assertTrue(srv.wait_log(r"id=%s to=<alice@example\.test> via=mda deferred" % qid))
        srv.check_clean_exit()
        self.assertEqual(env.queue_files(), [qid])
        path = item_path(env.data_dir, qid)
        self.assertIsNone(item_problem(path))
        envtext, msg_part = split_item(path)
        self.assertIn("\nstatus pending\n", envtext)
        self.assertRegex(envtext, r"\nattempts [1-9]\d*\n")  # (a retry may come before SIGTERM)
        self.assertTrue(msg_part.replace(b"\r\n", b"\n").endswith(lf(msg)), msg_part[-200:])
        self.assertEqual(mda_outputs(env, "alice@example.test"), [])
        os.unlink(env.path("exit-alice@example.test"))
        srv2 = env.start()
        self.assertRegex(srv2.log, r"recovered 1 items")
        outs = wait_mda(env, "alice@example.test", 1)
        self.assertTrue(outs, srv2.log[-3000:])
        self.assertEqual(len(outs), 1)
        self.assertTrue(outs[0][1].endswith(lf(msg)))
        self.assertTrue(srv2.wait_log(r"id=%s: done" % qid))
        self.assertTrue(wait_until(lambda: env.queue_files() == []), env.queue_files())


# ---- signals ------------------------------------------------------------------------------------


class SignalTest(ServeCase):
    def test_sighup_reloads_users(self):
        env = ServeEnv(self)
        add_users(env, "alice@example.test")
        srv = env.start()
        d = session(self, srv)
        d.cmd("MAIL FROM:<x@remote.test>", 250)
        d.cmd("RCPT TO:<newbie@example.test>", 550, "5.1.1")
        env.add_user("newbie@example.test", "fresh-pw")
        d.cmd("RCPT TO:<newbie@example.test>", 550, "5.1.1")  # not before the reload
        srv.signal(signal.SIGHUP)
        self.assertTrue(srv.wait_log(r"reloaded \S+ \(configuration 2\): 1 local domains"),
                        srv.log[-2000:])
        # a session keeps the configuration it started with (one snapshot per session);
        # a new session sees the new users
        d.cmd("RCPT TO:<newbie@example.test>", 550, "5.1.1")
        d.cmd("QUIT", 221)
        d = session(self, srv)
        d.cmd("MAIL FROM:<x@remote.test>", 250)
        d.cmd("RCPT TO:<newbie@example.test>", 250)
        d.cmd("DATA", 354)
        d.send(message(subject="welcome", to="newbie@example.test") + b".\r\n")
        d.expect(250)
        m = self.wait_one(env, "newbie@example.test", "welcome")
        self.assert_delivered(m, "newbie@example.test", "x@remote.test", "welcome")
        s = session(self, srv, "submissions")
        s.cmd("AUTH PLAIN " + plain("newbie@example.test", "fresh-pw"), 235)
        # a broken aliases file on reload is refused and the old policy stays
        env.write_aliases("example.test", "bad line without a colon\n")
        srv.signal(signal.SIGHUP)
        self.assertTrue(srv.wait_log(r"reload: .*refused; the old ones stay in force"), srv.log[-2000:])
        d = session(self, srv)
        d.cmd("MAIL FROM:<x@remote.test>", 250)
        d.cmd("RCPT TO:<newbie@example.test>", 250)
        self.assertTrue(srv.running())

    def test_sigterm_answers_421(self):
        env = ServeEnv(self)
        add_users(env, "alice@example.test")
        srv = env.start()
        idle = session(self, srv)
        mid = session(self, srv, "submission", starttls=True, auth="alice@example.test")
        mid.cmd("MAIL FROM:<alice@example.test>", 250)
        mid.cmd("RCPT TO:<alice@example.test>", 250)
        data = session(self, srv, "submissions", auth="alice@example.test")
        data.cmd("MAIL FROM:<alice@example.test>", 250)
        data.cmd("RCPT TO:<alice@example.test>", 250)
        data.cmd("DATA", 354)
        data.send(b"Subject: half\r\n\r\nhalf a mess")
        self.assertTrue(data.nothing_pending(0.2))
        srv.signal(signal.SIGTERM)
        for d in (idle, mid, data):
            d.expect(421, "4.3.2")
            self.assertTrue(d.is_closed())
        self.assertEqual(srv.proc.wait(20), 0)
        srv.check_clean_exit()
        self.assertRegex(srv.log, r"signal 15: stopping")
        self.assertRegex(srv.log, r"stopped: 0 messages accepted")
        self.assertEqual(env.queue_files(), [])
        self.assertEqual(env.maildir("alice@example.test"), [])

    def test_sigterm_lets_a_delivery_in_flight_end(self):
        env = mda_env(self, local={"mda_timeout": "2s"})
        add_users(env, "alice@example.test")
        set_flag(env, "hang", "alice@example.test")
        srv = env.start()
        r = send_raw(srv.port(), "x@remote.test", ["alice@example.test"], message(subject="in flight"))
        self.assertEqual(r.code, 250, r)
        qid = queued_id(r)
        self.assertTrue(wait_until(lambda: os.path.exists(env.path("hanging-alice@example.test"))))
        srv.signal(signal.SIGTERM)  # while the MDA runs
        self.assertEqual(srv.proc.wait(20), 0)
        srv.check_clean_exit()
        # the attempt ended (killed at its timeout: transient) and was recorded; the item stays
        self.assertRegex(srv.log, r"id=%s to=<alice@example\.test> via=mda deferred: 4\.3\.0 .*did not finish"
                         % qid)
        self.assertEqual(env.queue_files(), [qid])
        path = item_path(env.data_dir, qid)
        self.assertIn("\nattempts 1\n", item_envelope(path))
        self.assertIsNone(item_problem(path))

    def test_sigusr1_retries_now(self):
        env = ServeEnv(self)
        add_users(env, "alice@example.test")
        write_item(env, "later-1", "alice@example.test", subject="not yet", next_attempt=int(time.time()) + 3600)
        srv = env.start()
        self.assertEqual(env.wait_maildir("alice@example.test", 1, timeout=1.2), [])  # its time has not come
        srv.signal(signal.SIGUSR1)
        self.wait_one(env, "alice@example.test", "not yet", timeout=10)
        self.assertTrue(srv.wait_log(r"id=later-1: done"))


# ---- start-up ----------------------------------------------------------------------------------


class StartupTest(ServeCase):
    def test_bad_config_refused_with_file_and_line(self):
        env = ServeEnv(self, server={"max_size": "lots"}, queue={"bogus": "1"})
        check = env.tern("check-config")
        self.assertEqual(check.returncode, 1)
        problems = [l for l in check.stdout.decode().splitlines() if l.strip()]
        self.assertTrue(any(re.match(r"%s:\d+: .*max_size" % re.escape(env.conf_path), l) for l in problems),
                        problems)
        self.assertTrue(any(re.match(r"%s:\d+: .*bogus" % re.escape(env.conf_path), l) for l in problems),
                        problems)
        p = run([TERN, "serve", "--config", env.conf_path], timeout=30)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 2, out)
        for line in problems:
            self.assertIn(line, out)
        self.assertNotIn("listening", out)
        self.assertIn("refusing to start", out)

    @unittest.skipUnless(have_ipv6_loopback(), "no IPv6 on loopback")
    def test_ipv6_and_two_addresses(self):
        env = ServeEnv(self, listen={"smtp": "127.0.0.1:0 [::1]:0"})
        add_users(env, "alice@example.test")
        srv = env.start()
        self.assertEqual([h for h, _ in srv.listeners["smtp"]], ["127.0.0.1", "::1"])
        for host, port in srv.listeners["smtp"]:
            r = send_raw(port, "x@remote.test", ["alice@example.test"], message(subject="via " + host), host=host)
            self.assertEqual(r.code, 250, r)
            m = self.wait_one(env, "alice@example.test", "via " + host)
            self.assert_delivered(m, "alice@example.test", "x@remote.test", "via " + host)
            self.assertIn("(%s:" % (host if host == "127.0.0.1" else "[::1]"), m["Received"])


if __name__ == "__main__":
    unittest.main()
