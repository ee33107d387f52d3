"""The bulk-sender rules of `tern send`, end to end, against real peers on loopback.

    tern send --return-path 'bounces+{{token}}@news.test' --unsubscribe-url ... (authenticated
        submission, STARTTLS)
      -> tern serve (news.test local; [remote] routes: good.test -> sink A, bad.test -> sink B)
      -> sink A accepts; sink B answers 550 to every RCPT
      -> tern serve's DSNs go to the VERP return path bounces+TOKEN@news.test, a local user
         whose Maildir `tern send --bounces` reads (MaildirBounces), or an alias piping them
         to `tern send ingest-bounce` (PipeBounces)
      -> the ledger marks the bad.test recipients as hard bounces
      -> a rerun (a new campaign) sends to good.test again and skips bad.test: sink B sees no
         new connection, and the summary says "2: hard bounce".

Also: the List-Unsubscribe headers arrive as RFC 8058 wants them and are covered by the DKIM
signature of `tern send --dkim-key` (verified by dkimpy, the key made by openssl), --suppress,
the ledger report, and a version-1 ledger (from before these rules) that keeps working.
"""

import email
import email.policy
import os
import pwd
import base64
import re
import shutil
import sqlite3
import subprocess
import unittest

from dkimpy_tool import dkimpy_verify
from servelib import AS_ROOT, SERVE_USER, ServeEnv, wait_until
from ternlib import TERN, api_json, api_stats, start_sink, temp_dir

PASSWORD = "pw-news-sender"
SEND_TIMEOUT = 120
DELIVERY_TIMEOUT = 60
GOOD = ["ann@good.test", "ben@good.test"]
BAD = ["xavier@bad.test", "yolanda@bad.test"]


class ClassScope:
    def __init__(self, cls):
        self.addCleanup = cls.addClassCleanup


def send_help():
    return subprocess.run([TERN, "send", "--help"], capture_output=True, text=True,
                          timeout=30).stdout


class BulkCase:
    """One tern serve and two sinks per class (mixed into a TestCase); each test has its own
    ledger and lists."""

    pipe = False

    @classmethod
    def setUpClass(cls):
        cls.good = start_sink(ClassScope(cls), "--quiet")
        cls.bad = start_sink(ClassScope(cls), "--quiet", "--fail", "RCPT:550:100")
        routes = "good.test=[127.0.0.1]:%d bad.test=[127.0.0.1]:%d" % (cls.good.smtp_port,
                                                                        cls.bad.smtp_port)
        cls.env = ServeEnv(cleanup=cls.addClassCleanup,
                           queue={"retry": "1s", "give_up": "60s"},
                           remote={"routes": routes, "tls": "may", "timeout": "10s"})
        cls.env.add_user("sender@news.test", PASSWORD)
        # the folder where tern send keeps its files (the pipe alias writes the ledger there)
        cls.work = os.path.join(cls.env.dir, "work")
        os.makedirs(cls.work)
        if cls.pipe:
            cls.env.write_aliases("news.test", "bounces: | %s send ingest-bounce --ledger %s\n"
                                  % (TERN, os.path.join(cls.work, "list.csv.ledger")))
        else:
            cls.env.add_user("bounces@news.test", "pw-bounces-unused")
        cls.srv = cls.env.start()  # hands the folder (work/ included) to the server's user
        # the DKIM key of tern send, made by openssl; its record is the DNS answer for dkimpy
        cls.keydir = temp_dir(cls.addClassCleanup, "tern-bulk-key-")
        cls.key = os.path.join(cls.keydir, "s1.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", cls.key], check=True,
                       capture_output=True, timeout=60)
        der = subprocess.run(["openssl", "pkey", "-in", cls.key, "-pubout", "-outform", "DER"],
                             check=True, capture_output=True, timeout=60).stdout
        cls.records = {"s1._domainkey.news.test":
                       "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()}
        if AS_ROOT:
            pw = pwd.getpwnam(SERVE_USER)
            for path in (cls.keydir, cls.key):
                os.chown(path, pw.pw_uid, pw.pw_gid)

    def setUp(self):
        shutil.rmtree(self.work)
        os.makedirs(self.work)
        self.give(self.work)
        self.template = self.write("newsletter.txt",
                                   "From: News <sender@news.test>\n"
                                   "To: {{name}} <{{email}}>\n"
                                   "Subject: News for {{name}}\n"
                                   "\n"
                                   "Hello {{name}}.\n")
        self.list = self.write("list.csv", "email,name\n" + "".join(
            "%s,%s\n" % (a, a.split("@")[0].title()) for a in GOOD + BAD))
        self.ledger = self.list + ".ledger"

    def write(self, name, text):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(text)
        self.give(path)
        return path

    def give(self, path):
        """As root: to the user tern send and the pipe run as."""
        if AS_ROOT:
            pw = pwd.getpwnam(SERVE_USER)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def send(self, *extra, campaign="june"):
        """tern send through the submission port (STARTTLS + AUTH).  As root (CI) it runs as
        the server's user, like the pipe alias that writes the same ledger."""
        host, port = self.srv.listeners["submission"][0]
        argv = [TERN, "send", "--to", self.list, "--template", self.template,
                "--from", "sender@news.test", "--server", "%s:%d" % (host, port),
                "--tls", "--tls-no-verify", "--auth-user", "sender@news.test",
                "--campaign", campaign, "--timeout", "20s",
                "--return-path", "bounces+{{token}}@news.test",
                "--unsubscribe-url", "https://news.test/u/{{token}}?c={{campaign}}",
                "--unsubscribe-mailto", "unsubscribe+{{token}}@news.test",
                "--dkim-key", self.key, "--dkim-selector", "s1",
                "--dkim-domain", "news.test"] + list(extra)
        env = dict(os.environ, TERN_SMTP_PASSWORD=PASSWORD)
        kw = {"user": SERVE_USER} if AS_ROOT else {}
        p = subprocess.run(argv, capture_output=True, text=True, timeout=SEND_TIMEOUT, env=env,
                           cwd=self.work, **kw)
        return p

    def good_messages(self):
        return api_json(self.good.http_port, "/api/messages?limit=1000")["messages"]

    def good_count(self, rcpt):
        return sum(1 for m in self.good_messages() for r in m["to"] if r == rcpt)

    def bad_refusals(self):
        return api_stats(self.bad.http_port)["faults"]["fail"].get("RCPT", 0)

    def tokens(self):
        db = sqlite3.connect(self.ledger)
        try:
            return dict((r, t) for t, r in db.execute("SELECT token, rcpt FROM tokens"))
        finally:
            db.close()

    def bounces(self):
        db = sqlite3.connect(self.ledger)
        try:
            return {r: (k, s) for r, k, s in db.execute("SELECT rcpt, kind, status FROM bounces")}
        finally:
            db.close()

    def ingest(self):
        """Make the bounces reach the ledger (per class: Maildir read, or pipe already did)."""
        raise NotImplementedError

    # -- the scenario ---------------------------------------------------------------

    def test_bounces_are_skipped_by_the_next_run(self):
        before_good = {a: self.good_count(a) for a in GOOD}
        refused_before = self.bad_refusals()
        p = self.send()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("sent 4", p.stdout)
        self.assertIn("0: hard bounce, 0: suppressed", p.stdout)
        tokens = self.tokens()
        self.assertEqual(sorted(tokens), sorted(GOOD + BAD))
        for t in tokens.values():
            self.assertRegex(t, r"^[a-z2-7]{26}$")
        self.assertEqual(len(set(tokens.values())), 4)

        # the good ones arrive, with the VERP return path and the unsubscribe headers
        self.assertTrue(wait_until(lambda: all(self.good_count(a) > before_good[a] for a in GOOD),
                                   DELIVERY_TIMEOUT), self.srv.log[-3000:])
        for m in self.good_messages():
            rcpt = m["to"][0]
            if rcpt not in GOOD:
                continue
            tok = tokens[rcpt]
            self.assertEqual(m["from"], "bounces+%s@news.test" % tok)
            raw = self.raw_good(m["id"])
            msg = email.message_from_bytes(raw, policy=email.policy.compat32)
            lu = re.sub(r"\s+", " ", msg["List-Unsubscribe"])
            self.assertEqual(lu, "<https://news.test/u/%s?c=june>, "
                                 "<mailto:unsubscribe+%s@news.test?subject=unsubscribe>" % (tok, tok))
            self.assertEqual(msg["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click")
            # signed after the headers were added: the signature covers both
            ok, report = dkimpy_verify(raw, self.records)
            self.assertTrue(ok, report)
            h = re.search(r"\bh=([^;]*)", re.sub(r"\s+", "", msg["DKIM-Signature"])).group(1)
            names = [x.lower() for x in h.split(":")]
            self.assertIn("list-unsubscribe", names)
            self.assertIn("list-unsubscribe-post", names)

        # the bad ones are refused by sink B; tern serve's DSNs come back to the VERP address
        self.assertTrue(wait_until(lambda: self.bad_refusals() >= refused_before + 2,
                                   DELIVERY_TIMEOUT), self.srv.log[-3000:])
        self.ingest()
        self.assertTrue(wait_until(lambda: len(self.bounces()) >= 2, DELIVERY_TIMEOUT),
                        self.srv.log[-3000:])
        b = self.bounces()
        self.assertEqual(sorted(b), sorted(BAD))
        for addr in BAD:
            self.assertEqual(b[addr][0], "hard")
            self.assertRegex(b[addr][1], r"^5\.\d+\.\d+$")

        # the report counts them
        r = subprocess.run([TERN, "send", "report", "--ledger", self.ledger, "--campaign", "june"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("sent: 4", r.stdout)
        self.assertIn("bounced hard: 2", r.stdout)
        self.assertIn("bounced soft: 0", r.stdout)

        # a new campaign: good.test gets it, bad.test is skipped without a connection to sink B
        conns_bad = api_stats(self.bad.http_port)["connections"]
        refused = self.bad_refusals()
        before_good = {a: self.good_count(a) for a in GOOD}
        p = self.send(campaign="july")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("sent 2", p.stdout)
        self.assertIn("2: hard bounce, 0: suppressed", p.stdout)
        self.assertTrue(wait_until(lambda: all(self.good_count(a) > before_good[a] for a in GOOD),
                                   DELIVERY_TIMEOUT), self.srv.log[-3000:])
        self.assertTrue(wait_until(lambda: not self.env.queue_files(), DELIVERY_TIMEOUT))
        self.assertEqual(api_stats(self.bad.http_port)["connections"], conns_bad)
        self.assertEqual(self.bad_refusals(), refused)

    def raw_good(self, mid):
        from ternlib import http_get
        return http_get(self.good.http_port, "/api/messages/%d/raw" % mid).body


class MaildirBounces(BulkCase, unittest.TestCase):
    """The DSNs land in the Maildir of bounces@news.test; `tern send --bounces` reads them."""

    pipe = False

    def maildir(self):
        return self.env.maildir_path("bounces@news.test")

    def ingest(self):
        md = self.maildir()
        self.assertTrue(wait_until(lambda: os.path.isdir(os.path.join(md, "new")) and len(
            os.listdir(os.path.join(md, "new"))) >= 2, DELIVERY_TIMEOUT), self.srv.log[-3000:])
        tokens = self.tokens()
        for name in os.listdir(os.path.join(md, "new")):
            with open(os.path.join(md, "new", name), "rb") as f:
                raw = f.read()
            dsn = email.message_from_bytes(raw, policy=email.policy.default)
            self.assertEqual(dsn.get_content_type(), "multipart/report")
            m = re.search(r"bounces\+([a-z2-7]{26})@news\.test", dsn["To"])
            self.assertTrue(m, dsn["To"])
            self.assertIn(m.group(1), [tokens[a] for a in BAD])
            # the token went as ENVID too, and came back in the report
            self.assertIn(b"Original-Envelope-Id: " + m.group(1).encode(), raw)
        r = subprocess.run([TERN, "send", "ingest-bounces", "--ledger", self.ledger, md],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("2 hard", r.stdout)
        # processed messages are moved to cur/ with the S flag; a second pass reads nothing
        self.assertEqual(os.listdir(os.path.join(md, "new")), [])
        cur = os.listdir(os.path.join(md, "cur"))
        self.assertTrue(cur and all(n.endswith(":2,S") for n in cur), cur)
        r = subprocess.run([TERN, "send", "ingest-bounces", "--ledger", self.ledger, md],
                           capture_output=True, text=True, timeout=60)
        self.assertIn("bounces: 0 messages", r.stdout)

    def test_suppress_and_bounces_option(self):
        """--suppress skips listed addresses; --bounces MAILDIR ingests before planning."""
        sup = self.write("suppress.txt", "# unsubscribed by hand\nANN@good.test   # asked\n\n")
        md = os.path.join(self.work, "md")
        os.makedirs(md)
        self.give(md)
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(md, sub))
            self.give(os.path.join(md, sub))
        before = self.good_count("ben@good.test")
        p = self.send("--suppress", sup, "--bounces", md, campaign="sup")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("bounces read: 0 messages", p.stdout)
        self.assertIn("sent 3", p.stdout)
        self.assertIn("1: suppressed", p.stdout)
        self.assertTrue(wait_until(lambda: self.good_count("ben@good.test") > before,
                                   DELIVERY_TIMEOUT))
        # a bounce written by hand in Postfix's text form, with the token in Delivered-To
        tok = self.tokens()["ben@good.test"]
        with open(os.path.join(md, "new", "1.postfix"), "w") as f:
            f.write("Delivered-To: bounces+%s@news.test\nFrom: MAILER-DAEMON@far.test\n"
                    "Subject: Undelivered Mail Returned to Sender\n\n"
                    "<ben@good.test>: host mx.good.test[192.0.2.1] said: 550 5.1.1 no such "
                    "user\n" % tok)
        p = self.send("--suppress", sup, "--bounces", md, campaign="sup2")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("bounces read: 1 messages, 1 hard", p.stdout)
        self.assertIn("1: hard bounce, 1: suppressed", p.stdout)
        # a DSN whose return path was rewritten on the way (no token in any address): the
        # token comes back as its Original-Envelope-Id
        with open(os.path.join(md, "new", "2.srs"), "w") as f:
            f.write("To: SRS0=abc=xy=news.test=bounces@forwarder.test\n"
                    "Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
                    "--B\nContent-Type: text/plain\n\nfailed\n--B\n"
                    "Content-Type: message/delivery-status\n\n"
                    "Reporting-MTA: dns; forwarder.test\nOriginal-Envelope-Id: %s\n\n"
                    "Final-Recipient: rfc822; ann.forwarded@elsewhere.test\nAction: failed\n"
                    "Status: 4.2.2\n--B--\n" % self.tokens()["xavier@bad.test"])
        p = self.send("--suppress", sup, "--bounces", md, campaign="sup3")
        self.assertIn("bounces read: 1 messages, 0 hard, 1 soft", p.stdout)
        self.assertEqual(self.bounces()["xavier@bad.test"][0], "soft")
        # a body nobody can parse: the token in the address still names the recipient (soft:
        # never a suppression without evidence)
        with open(os.path.join(md, "new", "3.garbage"), "w") as f:
            f.write("Delivered-To: bounces+%s@news.test\nSubject: ???\n\n\x01garbage\n"
                    % self.tokens()["yolanda@bad.test"])
        p = self.send("--suppress", sup, "--bounces", md, campaign="sup4")
        self.assertIn("bounces read: 1 messages, 0 hard, 1 soft", p.stdout)
        self.assertEqual(self.bounces()["yolanda@bad.test"][0], "soft")
        # a dry run says the same and renders the headers
        out = os.path.join(self.work, "dry")
        p = self.send("--suppress", sup, "--dry-run", out, campaign="dry")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("skipped 1: hard bounce, 1: suppressed", p.stdout)
        files = sorted(os.listdir(out))
        self.assertEqual(len(files), 2, files)  # xavier and yolanda (soft bounces are sent)
        with open(os.path.join(out, files[0]), "rb") as f:
            self.assertIn(b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", f.read())
        # bad input: a suppression list with garbage names its line
        bad = self.write("bad-suppress.txt", "ok@x.test\nnot an address\n")
        p = self.send("--suppress", bad)
        self.assertEqual(p.returncode, 2)
        self.assertIn("bad-suppress.txt:2:", p.stderr)
        # an http:// unsubscribe URL is refused (RFC 8058 one-click needs https)
        p = self.send("--unsubscribe-url", "http://news.test/u/{{token}}")
        self.assertEqual(p.returncode, 2)
        self.assertIn("https", p.stderr)


class PipeBounces(BulkCase, unittest.TestCase):
    """The DSNs go to an alias `bounces: | tern send ingest-bounce --ledger ...`."""

    pipe = True

    def ingest(self):
        pass  # tern serve runs the pipe as the DSNs arrive


class OldLedger(unittest.TestCase):
    """A ledger written before the bulk-sender rules (schema version 1) keeps working."""

    def test_version_1_ledger_is_migrated(self):
        d = temp_dir(self.addCleanup, "tern-bulk-")
        ledger = os.path.join(d, "old.ledger")
        db = sqlite3.connect(ledger)
        db.execute("CREATE TABLE sends (campaign TEXT NOT NULL, rcpt TEXT NOT NULL, "
                   "\"window\" TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN "
                   "('sent','transient','permanent')), attempts INTEGER NOT NULL DEFAULT 0, "
                   "detail TEXT NOT NULL DEFAULT '', updated TEXT NOT NULL, PRIMARY KEY "
                   "(campaign, rcpt, \"window\")) WITHOUT ROWID")
        db.execute("INSERT INTO sends VALUES ('c', 'old@x.test', '', 'sent', 1, '250 ok', "
                   "'2024-01-01T00:00:00Z')")
        db.commit()
        db.close()
        r = subprocess.run([TERN, "send", "report", "--ledger", ledger, "--campaign", "c"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("sent: 1", r.stdout)
        self.assertIn("bounced hard: 0", r.stdout)
        db = sqlite3.connect(ledger)
        self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], 2)
        self.assertEqual(db.execute("SELECT count(*) FROM sends").fetchone()[0], 1)
        db.close()
        # a plain-text bounce naming a recipient this ledger sent to is recorded (no token)
        msg = ("From: MAILER-DAEMON@far.test\nTo: news@x.test\nX-Failed-Recipients: old@x.test\n"
               "\nThis is a permanent error.\n\n  old@x.test\n    550 5.1.1 unknown\n")
        r = subprocess.run([TERN, "send", "ingest-bounce", "--ledger", ledger], input=msg,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("1 hard", r.stdout)
        # and one naming an address it never sent to is not (a forged bounce)
        r = subprocess.run([TERN, "send", "ingest-bounce", "--ledger", ledger],
                           input=msg.replace("old@x.test", "victim@x.test"),
                           capture_output=True, text=True, timeout=30)
        self.assertIn("1 not matched", r.stdout)
        # a huge message on a pipe: the first 2 MiB are read, the rest drained, no error
        r = subprocess.run([TERN, "send", "ingest-bounce", "--ledger", ledger],
                           input=msg + ("x" * 999 + "\n") * 5000,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("1 hard", r.stdout)
        # a ledger that does not exist is an error (a typo must not create an empty one)
        r = subprocess.run([TERN, "send", "ingest-bounce", "--ledger", ledger + ".typo"],
                           input=msg, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertFalse(os.path.exists(ledger + ".typo"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
