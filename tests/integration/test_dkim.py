"""DKIM signing and verification, checked by an independent verifier (Debian's dkimpy,
tests/integration/dkimpy_tool.py, the key records given as the DNS answer).

- `tern serve` signs, with an RSA and an Ed25519 key made by `tern dkim keygen` (dual
  signing), an authenticated submission, a message picked up from `tern sendmail`, and a
  DSN it generates; each is read from where it arrived (a `tern sink` behind [remote]
  routes, or the sender's Maildir) and verified by dkimpy with the records keygen printed.
  Mail from outside (port 25, unauthenticated) is not signed.
- A signed message goes tern (signer) -> Postfix (relay) -> a second tern (delivers to a
  Maildir) and still verifies there.
- `tern send --dkim-key ...` messages verify with dkimpy; bad --dkim-* use is refused.
- dkimpy-signed messages (RSA relaxed and simple, Ed25519) verify with tern's verifier
  (`tern dkim verify`, i.e. dkim_verify), keys from the command line and from a private
  dnsmasq (through c-ares); tampered ones fail.
- A key others can read, or a broken key, refuses the server's start and check-config.
"""

import email
import email.policy
import os
import re
import shutil
import signal
import smtplib
import stat
import subprocess
import tempfile
import time
import unittest

from dkimpy_tool import dkimpy_sign, dkimpy_verify
from servelib import AS_ROOT, ServeEnv, serve_user_ids, wait_until
from ternlib import TERN, IO_TIMEOUT, write_file, Sink, api_json, free_port, http_get, unverified_context

PW = "pw-alice"
DOMAIN = "example.test"


def txt_record(keygen_output):
    """(dns name, TXT value) from `tern dkim keygen`'s output line
    'SEL._domainkey.DOMAIN. IN TXT ( "..." "..." )'."""
    m = re.search(r'^(\S+)\. IN TXT \((.*)\)\s*$', keygen_output, re.M)
    if not m:
        raise AssertionError("no TXT record in keygen output: %r" % keygen_output)
    strings = re.findall(r'"([^"]*)"', m.group(2))
    for s in strings:
        assert len(s) <= 255, "a character-string over 255 octets"
    return m.group(1), "".join(strings)


def keygen(env, selector, algo, domain=DOMAIN):
    p = env.tern("dkim", "keygen", domain, selector, "--algo", algo)
    out = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        raise AssertionError("tern dkim keygen: %s" % out)
    return txt_record(out)


def sink_raw(port, count, timeout=30):
    """The raw source of the first `count` messages of a sink (waits for them)."""
    ok = wait_until(lambda: api_json(port, "/api/count")["count"] >= count, timeout)
    if not ok:
        return []
    msgs = api_json(port, "/api/messages?limit=100")["messages"]
    return [http_get(port, "/api/messages/%s/raw" % m["id"]).body for m in msgs]


def tern_verify(raw, records, *extra):
    argv = [TERN, "dkim", "verify"] + list(extra)
    for name, txt in records.items():
        argv += ["--record", "%s=%s" % (name, txt)]
    return subprocess.run(argv, input=raw, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=60)


def submit(srv, frm, rcpts, data, user="alice@example.test"):
    host, port = srv.listeners["submission"][0]
    with smtplib.SMTP(host, port, timeout=IO_TIMEOUT) as s:
        s.starttls(context=unverified_context())
        s.login(user, PW)
        s.sendmail(frm, rcpts, data)


def message(subject, frm="Alice <alice@example.test>", to="<x@far.test>"):
    return ("From: %s\r\nTo: %s\r\nCc: Carol <carol@far.test>\r\nSubject: %s\r\n"
            "Date: Wed, 25 Nov 2026 22:00:00 +0000\r\nMessage-ID: <%s@example.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Hello  there, \r\n\r\n.a line with a dot\r\nsigned body\r\n\r\n\r\n"
            % (frm, to, subject, re.sub(r"\W", "", subject))).encode()


class ServeSigns(unittest.TestCase):
    """One tern serve with example.test's RSA and Ed25519 keys; far.test routed to a sink,
    bounce.test to a sink that refuses every recipient."""

    @classmethod
    def setUpClass(cls):
        cls.sink = Sink(["--quiet"])
        cls.addClassCleanup(cls.sink.check_clean_exit)
        cls.bouncer = Sink(["--quiet", "--fail", "RCPT:550:100"])
        cls.addClassCleanup(cls.bouncer.check_clean_exit)
        cls.env = ServeEnv(cleanup=cls.addClassCleanup, remote={
            "routes": "far.test=[127.0.0.1]:%d bounce.test=[127.0.0.1]:%d"
                      % (cls.sink.smtp_port, cls.bouncer.smtp_port),
            "tls": "none"})
        cls.env.add_user("alice@example.test", PW)
        cls.records = dict([keygen(cls.env, "rsa1", "rsa"), keygen(cls.env, "ed1", "ed25519")])
        cls.srv = cls.env.start()

    def sunk(self, subject, timeout=30):
        """Raw message with this subject from the far.test sink."""
        def find():
            for m in api_json(self.sink.http_port, "/api/messages?limit=100")["messages"]:
                if m["subject"] == subject:
                    return http_get(self.sink.http_port, "/api/messages/%s/raw" % m["id"]).body
            return None
        raw = wait_until(find, timeout)
        self.assertTrue(raw, "no message %r at the sink\n%s" % (subject, self.srv.log[-3000:]))
        return raw

    def assertDualSigned(self, raw, fields=("from", "to", "subject", "cc")):
        ok, report = dkimpy_verify(raw, self.records)
        self.assertTrue(ok, "dkimpy: %s\n%s" % (report, raw[:1500]))
        self.assertEqual(report["signatures"], 2)
        self.assertEqual(sorted(r["a"] for r in report["results"]),
                         ["ed25519-sha256", "rsa-sha256"])
        for r in report["results"]:
            self.assertEqual(r["d"], DOMAIN)
            h = r["h"].replace(" ", "").replace("\r\n", "").replace("\t", "").split(":")
            # oversigning: each present field once more than it appears
            for name in fields:
                self.assertEqual(h.count(name), 2, h)
        p = tern_verify(raw, self.records)  # and our own verifier agrees
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertEqual(p.stdout.decode().count("pass d=example.test"), 2, p.stdout)

    def test_authenticated_submission_is_dual_signed(self):
        subject = "submission %f" % time.time()
        submit(self.srv, "alice@example.test", ["x@far.test", "carol@far.test"], message(subject))
        self.assertDualSigned(self.sunk(subject))

    def test_sendmail_pickup_is_signed(self):
        subject = "pickup %f" % time.time()
        e = dict(os.environ, TERN_CONFIG=self.env.conf_path)
        msg = message(subject).replace(b"\r\n", b"\n")
        p = subprocess.run([TERN, "sendmail", "-f", "alice@example.test", "x@far.test"],
                           input=msg, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertDualSigned(self.sunk(subject))

    def test_dsn_is_signed(self):
        subject = "to be bounced %f" % time.time()
        submit(self.srv, "alice@example.test", ["nobody@bounce.test"],
               message(subject, to="<nobody@bounce.test>"))

        def dsn():
            for m in self.env.maildir("alice@example.test"):
                if subject in m.raw.decode(errors="replace") and \
                        m["From"].startswith("Mail Delivery System"):
                    return m.raw
            return None
        raw = wait_until(dsn, 60)
        self.assertTrue(raw, "no DSN for alice\n%s" % self.srv.log[-3000:])
        self.assertIn(b"MAILER-DAEMON@mx.example.test", raw)
        # MAILER-DAEMON@mx.example.test is signed with the parent domain's keys
        self.assertDualSigned(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"),
                              fields=("from", "to", "subject", "in-reply-to"))

    def test_mail_from_outside_is_not_signed(self):
        subject = "inbound %f" % time.time()
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=IO_TIMEOUT) as s:
            s.sendmail("someone@elsewhere.test", ["alice@example.test"],
                       message(subject, frm="<alice@example.test>", to="<alice@example.test>"))
        msgs = self.env.wait_maildir("alice@example.test", 1, subject=subject)
        self.assertEqual(len(msgs), 1)
        self.assertNotIn(b"DKIM-Signature", msgs[0].raw)

    def test_keygen_record_and_no_overwrite(self):
        key = os.path.join(self.env.data_dir, "domains", DOMAIN, "dkim", "rsa1.key")
        st = os.stat(key)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        if AS_ROOT:  # given to the server's user: it reads keys again on SIGHUP
            self.assertEqual((st.st_uid, st.st_gid), serve_user_ids())
        name, txt = list(self.records.items())[0]
        self.assertEqual(name, "rsa1._domainkey.example.test")
        self.assertRegex(txt, r"^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*$")
        self.assertRegex(self.records["ed1._domainkey.example.test"],
                         r"^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$")
        with open(key, "rb") as f:
            before = f.read()
        p = self.env.tern("dkim", "keygen", DOMAIN, "rsa1")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"refusing to overwrite", p.stdout)
        with open(key, "rb") as f:
            self.assertEqual(f.read(), before)
        p = self.env.tern("check-config")
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertIn(b"dkim: 2 signing keys", p.stdout)


class BadKeys(unittest.TestCase):
    def test_key_readable_by_others_or_broken_refuses_start(self):
        env = ServeEnv(self)
        env.add_user("alice@example.test", PW)
        keygen(env, "sel", "ed25519")
        key = os.path.join(env.data_dir, "domains", DOMAIN, "dkim", "sel.key")
        for setup, expect in ((lambda: os.chmod(key, 0o644), "sel.key"),
                              (lambda: (os.chmod(key, 0o600), write_file(key, "junk\n", 0o600)),
                               "not a PEM private key")):
            setup()
            p = env.tern("check-config")
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(expect, p.stdout.decode(), p.stdout)
            p = subprocess.run([TERN, "serve", "--config", env.conf_path], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(expect, p.stdout.decode(), p.stdout)

    def test_sighup_loads_new_keys(self):
        sink = Sink(["--quiet"])
        self.addCleanup(sink.check_clean_exit)
        env = ServeEnv(self, remote={"routes": "far.test=[127.0.0.1]:%d" % sink.smtp_port,
                                     "tls": "none"})
        env.add_user("alice@example.test", PW)
        records = dict([keygen(env, "old", "rsa")])
        srv = env.start()
        submit(srv, "alice@example.test", ["x@far.test"], message("before"))
        records.update([keygen(env, "new", "ed25519")])  # as the server's user: readable
        srv.signal(signal.SIGHUP)
        self.assertTrue(srv.wait_log(r"reloaded .*\(configuration 2\): 1 local domains, 2 DKIM keys"),
                        srv.log[-2000:])
        self.assertRegex(srv.log, r"ready: .* dkim_keys=1")
        submit(srv, "alice@example.test", ["x@far.test"], message("after"))
        raws = sink_raw(sink.http_port, 2)
        self.assertEqual(len(raws), 2)
        for raw in raws:
            ok, report = dkimpy_verify(raw, records)
            self.assertTrue(ok, report)
            self.assertEqual(report["signatures"], 2 if b"Subject: after" in raw else 1)

    def test_sign_no_and_bad_values(self):
        sink = Sink(["--quiet"])
        self.addCleanup(sink.check_clean_exit)
        env = ServeEnv(self, remote={"routes": "far.test=[127.0.0.1]:%d" % sink.smtp_port,
                                     "tls": "none"})
        env.add_user("alice@example.test", PW)
        keygen(env, "sel", "ed25519")
        env.conf["dkim"] = {"sign": "maybe"}
        env.write_conf()
        p = env.tern("check-config")
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(p.stdout.decode(), r"tern\.conf:\d+: \[dkim\] sign: 'maybe' is not yes or no")
        env.conf["dkim"] = {"sign": "no", "keys_dir": "elsewhere"}
        env.write_conf()
        srv = env.start()
        submit(srv, "alice@example.test", ["x@far.test"], message("unsigned"))
        raws = sink_raw(sink.http_port, 1)
        self.assertEqual(len(raws), 1)
        self.assertNotIn(b"DKIM-Signature", raws[0])

    def test_keygen_arguments(self):
        d = tempfile.mkdtemp(prefix="tern-dkim-")
        self.addCleanup(shutil.rmtree, d, True)
        for args, text in ((["keygen", "example.test"], "usage"),
                           (["keygen", "bad_domain!", "s"], "not a domain"),
                           (["keygen", "example.test", "s", "--algo", "dsa", "--dir", d], "rsa or ed25519"),
                           (["keygen", "example.test", "s", "--bits", "512", "--dir", d], "1024..8192"),
                           (["keygen", "example.test", "a b", "--dir", d], "selector")):
            p = subprocess.run([TERN, "dkim"] + args, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            self.assertEqual(p.returncode, 2, args)
            self.assertIn(text, p.stdout.decode(), args)
        p = subprocess.run([TERN, "dkim", "keygen", "example.test", "s", "--bits", "1024",
                            "--dir", d], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(os.path.exists(os.path.join(d, "s.key")))


class SendSigns(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tern-dkim-send-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.records = {}
        for sel, algo in (("r1", "rsa"), ("e1", "ed25519")):
            p = subprocess.run([TERN, "dkim", "keygen", "example.org", sel, "--algo", algo,
                                "--dir", self.dir], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            name, txt = txt_record(p.stdout.decode())
            self.records[name] = txt
        self.template = os.path.join(self.dir, "t.txt")
        with open(self.template, "w") as f:
            f.write("From: Notices <notices@example.org>\nTo: {{name}} <{{email}}>\n"
                    "Subject: Hello {{name}}\n\nDear {{name}},\n  your code is {{code}}.\n")
        self.list = os.path.join(self.dir, "list.csv")
        with open(self.list, "w") as f:
            f.write("email,name,code\n")
            for i in range(3):
                f.write("u%d@example.net,User %d,C%d\n" % (i, i, i))

    def send(self, port, *extra):
        argv = [TERN, "send", "--to", self.list, "--template", self.template, "--from",
                "notices@example.org", "--server", "127.0.0.1:%d" % port, "--quiet"] + list(extra)
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120)

    def test_send_dual_signs_every_message(self):
        sink = Sink(["--quiet"])
        self.addCleanup(sink.check_clean_exit)
        p = self.send(sink.smtp_port, "--dkim-key", os.path.join(self.dir, "r1.key"),
                      "--dkim-selector", "r1", "--dkim-key", os.path.join(self.dir, "e1.key"),
                      "--dkim-selector", "e1")
        self.assertEqual(p.returncode, 0, p.stderr)
        raws = sink_raw(sink.http_port, 3)
        self.assertEqual(len(raws), 3)
        for raw in raws:
            ok, report = dkimpy_verify(raw, self.records)
            self.assertTrue(ok, report)
            self.assertEqual(report["signatures"], 2)
            self.assertEqual({r["d"] for r in report["results"]}, {"example.org"})

    def test_list_unsubscribe_is_signed(self):
        """The bulk-sender headers are added before signing: the signature covers them."""
        sink = Sink(["--quiet"])
        self.addCleanup(sink.check_clean_exit)
        p = self.send(sink.smtp_port, "--unsubscribe-url", "https://example.org/u/{{code}}",
                      "--dkim-key", os.path.join(self.dir, "e1.key"), "--dkim-selector", "e1")
        self.assertEqual(p.returncode, 0, p.stderr)
        raws = sink_raw(sink.http_port, 3)
        self.assertEqual(len(raws), 3)
        for raw in raws:
            self.assertIn(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", raw)
            ok, report = dkimpy_verify(raw, self.records)
            self.assertTrue(ok, report)
            h = re.sub(r"\s", "", report["results"][0]["h"]).split(":")
            self.assertEqual(h.count("list-unsubscribe"), 2, h)
            self.assertEqual(h.count("list-unsubscribe-post"), 2, h)

    def test_bad_dkim_options(self):
        key = os.path.join(self.dir, "r1.key")
        for args, text in ((["--dkim-key", key], "one selector per key"),
                           (["--dkim-selector", "r1"], "need --dkim-key"),
                           (["--dkim-key", key + ".missing", "--dkim-selector", "r1"], "missing"),
                           (["--dkim-key", self.template, "--dkim-selector", "r1"],
                            "not a PEM private key"),
                           (["--dkim-key", key, "--dkim-selector", "r1", "--dkim-domain", "a..b"],
                            "bad DKIM domain")):
            p = self.send(1, *args)
            self.assertEqual(p.returncode, 2, args)
            self.assertIn(text, p.stderr, args)


class VerifiesDkimpy(unittest.TestCase):
    """Messages signed by dkimpy verify with tern's dkim_verify (tern dkim verify)."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tern-dkim-verify-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.records = {}
        for sel, algo in (("r", "rsa"), ("e", "ed25519")):
            p = subprocess.run([TERN, "dkim", "keygen", "example.org", sel, "--algo", algo,
                                "--dir", cls.dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=60)
            assert p.returncode == 0, p.stderr
            name, txt = txt_record(p.stdout.decode())
            cls.records[name] = txt
        msg = message("from dkimpy", frm="<a@example.org>", to="<b@example.net>")
        m = dkimpy_sign(msg, "example.org", "r", os.path.join(cls.dir, "r.key"))
        m = dkimpy_sign(m, "example.org", "r", os.path.join(cls.dir, "r.key"), canon="simple/simple")
        cls.signed = dkimpy_sign(m, "example.org", "e", os.path.join(cls.dir, "e.key"),
                                 algo="ed25519-sha256", headers=["from", "to", "subject"])

    def test_dkimpy_signatures_pass(self):
        p = tern_verify(self.signed, self.records)
        self.assertEqual(p.returncode, 0, p.stdout)
        out = p.stdout.decode()
        self.assertEqual(out.count("pass d=example.org"), 3, out)
        self.assertIn("a=ed25519-sha256", out)

    def test_tampered_fails(self):
        p = tern_verify(self.signed.replace(b"signed body", b"signed b0dy"), self.records)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stdout.decode().count("fail d=example.org"), 3, p.stdout)
        self.assertIn(b"body hash mismatch", p.stdout)
        p = tern_verify(self.signed, {k: "v=DKIM1; p=" for k in self.records})
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"key revoked", p.stdout)

    def test_keys_from_dns(self):
        """The key records served by a private dnsmasq, read through c-ares."""
        if not shutil.which("dnsmasq"):
            self.fail("dnsmasq is not installed (Debian package dnsmasq-base)")
        args = []
        for name, txt in self.records.items():
            chunks = [txt[i:i + 250] for i in range(0, len(txt), 250)]  # a comma splits strings
            args.append("--txt-record=%s,%s" % (name, ",".join(chunks)))
        args.append("--txt-record=bad._domainkey.example.org,v=DKIM1; k=rsa; p=%%%")
        d = tempfile.mkdtemp(prefix="tern-dkim-dns-")
        self.addCleanup(shutil.rmtree, d, True)
        for _ in range(5):
            port = free_port("127.0.0.1")
            log = open(os.path.join(d, "dnsmasq.log"), "wb")
            proc = subprocess.Popen(["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts",
                                     "--port=%d" % port, "--listen-address=127.0.0.1",
                                     "--bind-interfaces", "--pid-file=", "--local=/example.org/",
                                     "--cache-size=0"] + args,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            time.sleep(0.3)
            if proc.poll() is None:
                break
        self.addCleanup(lambda: (proc.terminate(), proc.wait(10)))
        servers = "127.0.0.1:%d" % port

        def verified():
            p = tern_verify(self.signed, {}, "--dns-servers", servers)
            return p if p.returncode == 0 else None
        p = wait_until(verified, 10, 0.2)
        with open(os.path.join(d, "dnsmasq.log"), errors="replace") as f:
            self.assertTrue(p, f.read())
        self.assertEqual(p.stdout.decode().count("pass"), 3, p.stdout)
        # a name dnsmasq does not know: NXDOMAIN is a permanent error, no key
        bad = self.signed.replace(b"s=e;", b"s=zz;")
        p = tern_verify(bad, {}, "--dns-servers", servers)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"permerror d=example.org s=zz", p.stdout)
        self.assertIn(b"no key", p.stdout)
        # a broken key record
        p = tern_verify(self.signed.replace(b"s=e;", b"s=bad;"), {}, "--dns-servers", servers)
        self.assertIn(b"permerror d=example.org s=bad", p.stdout)
        # no DNS server answering: a temporary error
        p = tern_verify(self.signed, {}, "--dns-servers", "127.0.0.1:%d" % free_port("127.0.0.1"))
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"temperror", p.stdout)


class ThroughPostfix(unittest.TestCase):
    """tern (signs t.test) -> a private Postfix (relays t2.test) -> a second tern (delivers
    t2.test to a Maildir): the signatures still verify at the end."""

    def test_signed_mail_survives_postfix_and_a_second_tern(self):
        from test_postfix import PF_ADDR, TERN_ADDR, Postfix, PostfixError, skip_reason
        why = skip_reason()
        if why:
            self.fail(why)  # the project installs Postfix: missing is a failure, not a skip
        from servelib import cert_paths
        cert, key = cert_paths()
        pf_port = free_port(PF_ADDR)
        # the last hop: a tern for t2.test on 127.0.0.6
        last = ServeEnv(self, server={"hostname": "mx.t2.test"},
                        listen={"smtp": TERN_ADDR + ":0", "submission": TERN_ADDR + ":0",
                                "submissions": TERN_ADDR + ":0"})
        last.add_user("bob@t2.test", PW)
        last_srv = last.start()
        # the signer: routes t2.test to Postfix
        first = ServeEnv(self, server={"hostname": "mx.t.test"},
                         remote={"routes": "t2.test=[%s]:%d" % (PF_ADDR, pf_port), "tls": "may",
                                 "timeout": "20s"})
        first.add_user("alice@t.test", PW)
        records = dict([keygen(first, "rsa1", "rsa", "t.test"),
                        keygen(first, "ed1", "ed25519", "t.test")])
        first_srv = first.start()
        pf = Postfix(pf_port, ["nobody@p.test"],
                     {"t2.test": "smtp:[%s]:%d" % (TERN_ADDR, last_srv.port("smtp"))}, cert, key)
        self.addCleanup(pf.remove)
        self.addCleanup(pf.stop)
        try:
            pf.start()
        except (PostfixError, subprocess.TimeoutExpired) as e:
            self.fail("Postfix does not start: %s" % e)
        subject = "through postfix %f" % time.time()
        submit(first_srv, "alice@t.test", ["bob@t2.test"],
               message(subject, frm="Alice <alice@t.test>", to="Bob <bob@t2.test>"),
               user="alice@t.test")
        msgs = last.wait_maildir("bob@t2.test", 1, timeout=90, subject=subject)
        self.assertEqual(len(msgs), 1, "not delivered\n%s\n%s" % (first_srv.log[-2000:],
                                                                    pf.log[-2000:]))
        raw = msgs[0].raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        self.assertIn(b"(Postfix)", raw)  # it did pass through Postfix
        ok, report = dkimpy_verify(raw, records)
        self.assertTrue(ok, "%s\n%s" % (report, raw[:2000]))
        self.assertEqual(report["signatures"], 2)
        p = tern_verify(raw, records)
        self.assertEqual(p.returncode, 0, p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
