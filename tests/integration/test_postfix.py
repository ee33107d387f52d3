"""Interoperability of `tern serve` with a real Postfix (Debian's package) on loopback,
both ways: Postfix relays t.test mail to tern, tern delivers p.test mail to Postfix.

Postfix runs as a private instance: its own config_directory, queue_directory and
data_directory in a temporary folder (`postfix -c DIR start` / `stop`), listening
only on 127.0.0.5:PORT (master.cf), logging to a file of its own (maillog_file),
delivering p.test to a virtual Maildir and sending t.test to tern at
[127.0.0.6]:PORT (transport map).  STARTTLS is offered and used on both sides
(opportunistic, self-signed).  The system's /etc/postfix is only read (meta_directory)
and port 25 is never used.  The instance is stopped by a class clean-up, and only its
own processes (the master we started and its children) are ever signalled.

The class is skipped, with the reason and Postfix's log, when Postfix is missing,
when not running as root (Postfix's master must start as root), or when the
instance does not start.
"""

import email
import email.policy
import grp
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
import unittest

from servelib import ServeEnv, cert_paths, wait_until
from ternlib import IO_TIMEOUT, free_port, unverified_context

POSTFIX = "/usr/sbin/postfix"
POSTMAP = "/usr/sbin/postmap"
DAEMON_DIR = "/usr/lib/postfix/sbin"

PF_ADDR = "127.0.0.5"  # Postfix listens here
TERN_ADDR = "127.0.0.6"  # tern listens here

ALICE_PW = "alice-pw"
DELIVERY_TIMEOUT = 60.0  # Postfix's queue manager, two servers, maybe ASan: generous


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


class PostfixError(Exception):
    pass


class Postfix:
    """A private Postfix instance in a temporary folder."""

    MASTER_CF = """\
{addr}:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
proxywrite unix - - n -  1 proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
local     unix  - n n -  - local
virtual   unix  - n n -  - virtual
lmtp      unix  - - n -  - lmtp
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

    def __init__(self, port, users, transports, cert, key):
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="tern-postfix-")
        os.chmod(self.dir, 0o755)  # Postfix's daemons (user postfix) must reach the queue
        self.etc = os.path.join(self.dir, "etc")
        self.spool = os.path.join(self.dir, "spool")
        self.data = os.path.join(self.dir, "data")
        self.vmail = os.path.join(self.dir, "vmail")
        self.logfile = os.path.join(self.dir, "postfix.log")
        self.master_pid = None
        pw = pwd.getpwnam("postfix")
        for d in (self.etc, self.spool, self.data, self.vmail):
            os.mkdir(d, 0o755)
        os.chown(self.data, pw.pw_uid, pw.pw_gid)
        os.chown(self.vmail, pw.pw_uid, pw.pw_gid)
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.spool,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mx.p.test",
            "mydomain": "p.test",
            "myorigin": "p.test",
            "mydestination": "",
            # The master binds 127.0.0.5:PORT from master.cf; inet_interfaces must name an
            # address that a network interface has (Postfix checks), so the loopback one.
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "maillog_file": self.logfile,
            "maillog_file_prefixes": self.dir,
            "virtual_mailbox_domains": "p.test",
            "virtual_mailbox_base": self.vmail,
            "virtual_mailbox_maps": "hash:" + os.path.join(self.etc, "vmailbox"),
            "virtual_uid_maps": "static:%d" % pw.pw_uid,
            "virtual_gid_maps": "static:%d" % pw.pw_gid,
            "transport_maps": "hash:" + os.path.join(self.etc, "transport"),
            "alias_maps": "",
            "alias_database": "",
            "smtpd_peername_lookup": "no",
            "smtp_dns_support_level": "disabled",
            "smtpd_tls_cert_file": cert,
            "smtpd_tls_key_file": key,
            "smtpd_tls_security_level": "may",
            "smtpd_tls_loglevel": "1",
            "smtp_tls_security_level": "may",
            "smtp_tls_loglevel": "1",
            # quick retries: a deferred message must not wait Postfix's usual 5 minutes
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "10s",
            "biff": "no",
        }
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            for k, v in main.items():
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(self.MASTER_CF.format(addr=PF_ADDR, port=port))
        with open(os.path.join(self.etc, "vmailbox"), "w") as f:
            for u in users:
                f.write("%s %s/Maildir/\n" % (u, u.partition("@")[0]))
        with open(os.path.join(self.etc, "transport"), "w") as f:
            for domain, nexthop in transports.items():
                f.write("%s %s\n" % (domain, nexthop))
        for m in ("vmailbox", "transport"):
            self._run([POSTMAP, "-c", self.etc, os.path.join(self.etc, m)])

    def _run(self, argv, timeout=60):
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        if p.returncode != 0:
            raise PostfixError("%s: exit %d\n%s\n--- postfix log ---\n%s"
                               % (" ".join(argv), p.returncode, p.stdout.decode(errors="replace"), self.log))
        return p.stdout.decode(errors="replace")

    @property
    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return "(no log file)"

    def start(self):
        self._run([POSTFIX, "-c", self.etc, "check"])
        self._run([POSTFIX, "-c", self.etc, "start"])
        pidfile = os.path.join(self.spool, "pid", "master.pid")

        def master():
            try:
                with open(pidfile) as f:
                    return int(f.read().strip())
            except (OSError, ValueError):
                return None

        self.master_pid = wait_until(master, 20)
        if not self.master_pid:
            raise PostfixError("no master.pid after start\n--- postfix log ---\n" + self.log)

        def listening():
            try:
                with socket.create_connection((PF_ADDR, self.port), timeout=2) as s:
                    return s.recv(512).startswith(b"220")
            except OSError:
                return False

        if not wait_until(listening, 20, 0.1):
            raise PostfixError("Postfix does not answer on %s:%d\n--- postfix log ---\n%s"
                               % (PF_ADDR, self.port, self.log))

    def own_pids(self):
        """PIDs of this instance: processes whose environment names our config directory
        (the master passes MAIL_CONFIG to every child it starts)."""
        tag = ("MAIL_CONFIG=" + self.etc).encode()
        pids = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % name, "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if tag in env:
                pids.append(int(name))
        return pids

    def stop(self):
        """`postfix stop`, wait for the master and its children; SIGKILL by PID as a last resort."""
        if self.master_pid is None and not self.own_pids():
            return
        try:
            subprocess.run([POSTFIX, "-c", self.etc, "stop"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
        except subprocess.TimeoutExpired:
            pass
        if not wait_until(lambda: not self.own_pids(), 20, 0.1):
            for pid in self.own_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            wait_until(lambda: not self.own_pids(), 10, 0.1)
        self.master_pid = None

    def remove(self):
        shutil.rmtree(self.dir, True)

    # -- mailboxes and queue ------------------------------------------------------

    def maildir_files(self, user):
        """Raw bytes of every message in the virtual Maildir of `user` (local part)."""
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.vmail, user, "Maildir", sub)
            if os.path.isdir(d):
                for name in sorted(os.listdir(d)):
                    with open(os.path.join(d, name), "rb") as f:
                        out.append(f.read())
        return out

    def messages(self, user, subject=None):
        msgs = [parse(raw) for raw in self.maildir_files(user)]
        return [m for m in msgs if subject is None or m["Subject"] == subject]

    def wait_maildir(self, user, count, subject=None, timeout=DELIVERY_TIMEOUT):
        """Poll (bounded) until `user` has `count` messages (with that subject); returns them."""
        wait_until(lambda: len(self.messages(user, subject)) >= count, timeout, 0.1)
        return self.messages(user, subject)

    def queue_empty(self):
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            for _root, _dirs, files in os.walk(os.path.join(self.spool, sub)):
                if files:
                    return False
        return True


def skip_reason():
    for b in (POSTFIX, POSTMAP, os.path.join(DAEMON_DIR, "master")):
        if not os.access(b, os.X_OK):
            return "Postfix is not installed (%s missing; Debian package postfix)" % b
    if os.geteuid() != 0:
        return "Postfix's master must be started as root (running as uid %d)" % os.geteuid()
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError as e:
        return "user postfix or group postdrop missing: %s" % e
    return None


class PostfixInterop(unittest.TestCase):
    """One Postfix and one tern for the class; every test uses its own subject line."""

    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        cert, key = cert_paths()
        cls.pf_port = free_port(PF_ADDR)  # Postfix needs a number in master.cf
        cls.env = ServeEnv(
            cleanup=cls.addClassCleanup,
            server={"hostname": "mx.t.test"},
            listen={"smtp": TERN_ADDR + ":0", "submission": TERN_ADDR + ":0",
                    "submissions": TERN_ADDR + ":0"},
            remote={"routes": "p.test=[%s]:%d" % (PF_ADDR, cls.pf_port), "tls": "may",
                    "timeout": "20s"},
        )
        cls.env.add_user("alice@t.test", ALICE_PW)
        cls.env.write_aliases("t.test", "fwd: bob@p.test\n")
        cls.tern = cls.env.start()
        cls.tern_port = cls.tern.port("smtp")

        # tern routes p.test to the port probed above; Postfix binds it now.
        pf = Postfix(cls.pf_port, ["bob@p.test", "carol@p.test"],
                     {"t.test": "smtp:[%s]:%d" % (TERN_ADDR, cls.tern_port)}, cert, key)
        cls.addClassCleanup(pf.remove)
        cls.addClassCleanup(pf.stop)
        try:
            pf.start()
        except (PostfixError, subprocess.TimeoutExpired) as e:
            raise unittest.SkipTest("Postfix does not start here: %s" % e)
        cls.pf = pf

    # -- helpers --------------------------------------------------------------------

    def diag(self):
        return "\n--- tern log (tail) ---\n%s\n--- postfix log (tail) ---\n%s" % (
            self.tern.log[-4000:], self.pf.log[-4000:])

    def submit_to_postfix(self, mail_from, rcpts, data, **kw):
        with smtplib.SMTP(PF_ADDR, self.pf_port, local_hostname="client.test", timeout=IO_TIMEOUT) as s:
            s.ehlo()
            return s.sendmail(mail_from, rcpts, data, **kw)

    def submit_to_tern(self, rcpts, data, mail_from="alice@t.test", **kw):
        """Authenticated submission (STARTTLS, AUTH) as alice@t.test."""
        with smtplib.SMTP(TERN_ADDR, self.tern.port("submission"), local_hostname="client.test",
                          timeout=IO_TIMEOUT) as s:
            s.starttls(context=unverified_context())
            s.login("alice@t.test", ALICE_PW)
            return s.sendmail(mail_from, rcpts, data, **kw)

    def tern_inbox(self, address, subject, count=1, timeout=DELIVERY_TIMEOUT):
        msgs = self.env.wait_maildir(address, count, timeout=timeout, subject=subject)
        return [parse(m.raw) for m in msgs]

    # -- Postfix -> tern ----------------------------------------------------------

    def test_postfix_relays_to_tern(self):
        subject = "pf-to-tern %f" % time.time()
        body = "First line.\r\n.A line that starts with a dot.\r\n..two dots\r\nLast line.\r\n"
        data = ("From: Bob <bob@p.test>\r\nTo: <alice@t.test>\r\nSubject: %s\r\n"
                "Message-ID: <pf1.%d@p.test>\r\n\r\n%s" % (subject, os.getpid(), body)).encode()
        self.assertEqual(self.submit_to_postfix("bob@p.test", ["alice@t.test"], data), {})
        msgs = self.tern_inbox("alice@t.test", subject)
        self.assertEqual(len(msgs), 1, "not in tern's Maildir" + self.diag())
        m = msgs[0]
        self.assertEqual(m["Return-Path"], "<bob@p.test>")
        self.assertEqual(m["Delivered-To"], "alice@t.test")
        received = m.get_all("Received")
        self.assertGreaterEqual(len(received), 2, received)
        self.assertIn("mx.t.test", received[0])  # tern's, on top
        self.assertTrue(any("mx.p.test (Postfix)" in r for r in received[1:]), received)
        self.assertEqual(m.get_content().replace("\r\n", "\n"), body.replace("\r\n", "\n"))
        # Postfix used STARTTLS towards tern and got tern's 250 with its queue id
        self.assertTrue(wait_until(lambda: re.search(
            r"to=<alice@t\.test>, relay=%s\[%s\]:%d, .*status=sent \(250 [^)]*queued as" %
            (re.escape(TERN_ADDR), re.escape(TERN_ADDR), self.tern_port), self.pf.log), 20), self.diag())
        self.assertRegex(self.pf.log, r"TLS connection established to %s\[%s\]:%d"
                         % (re.escape(TERN_ADDR), re.escape(TERN_ADDR), self.tern_port))
        time.sleep(0.3)  # exactly once: no second copy shortly after
        self.assertEqual(len(self.tern_inbox("alice@t.test", subject, timeout=0)), 1)

    def test_postfix_relays_8bit_and_large_to_tern(self):
        subject = "pf-to-tern-8bit %f" % time.time()
        line = "Grüße aus Köln, ½ € – ünïcödé line %05d ..........................\r\n"
        body = "".join(line % i for i in range(4000))  # about 300 KiB
        data = ("From: <bob@p.test>\r\nTo: <alice@t.test>\r\nSubject: %s\r\nMIME-Version: 1.0\r\n"
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n%s"
                % (subject, body)).encode()
        self.assertEqual(self.submit_to_postfix("bob@p.test", ["alice@t.test"], data,
                                                mail_options=["BODY=8BITMIME"]), {})
        msgs = self.tern_inbox("alice@t.test", subject)
        self.assertEqual(len(msgs), 1, "not in tern's Maildir" + self.diag())
        raw_body = msgs[0].get_payload(decode=True)
        self.assertEqual(raw_body.replace(b"\r\n", b"\n"), body.encode().replace(b"\r\n", b"\n"))

    def test_tern_rejects_unknown_user_and_postfix_bounces(self):
        """tern answers 550 5.1.1 to Postfix's RCPT; Postfix returns the mail to its sender."""
        subject = "pf-to-tern-unknown %f" % time.time()
        data = ("From: <bob@p.test>\r\nTo: <nobody@t.test>\r\nSubject: %s\r\n\r\nhello\r\n" % subject).encode()
        self.assertEqual(self.submit_to_postfix("bob@p.test", ["nobody@t.test"], data), {})

        def bounce():
            for raw in self.pf.maildir_files("bob"):
                if subject.encode() in raw and b"MAILER-DAEMON" in raw:
                    return raw
            return None

        raw = wait_until(bounce, DELIVERY_TIMEOUT, 0.1)
        self.assertTrue(raw, "no bounce from Postfix in bob's Maildir" + self.diag())
        self.assertIn(b"nobody@t.test", raw)
        self.assertIn(b"5.1.1", raw)
        self.assertRegex(self.pf.log, r"to=<nobody@t\.test>, relay=%s.*status=bounced \(host .* said: 550"
                         % re.escape(TERN_ADDR))

    # -- tern -> Postfix ----------------------------------------------------------

    def test_tern_delivers_to_postfix(self):
        """One delivery carries both p.test recipients; STARTTLS towards Postfix."""
        subject = "tern-to-pf %f" % time.time()
        body = "Hello Postfix.\r\n.dot line\r\nBye.\r\n"
        data = ("From: Alice <alice@t.test>\r\nTo: <bob@p.test>, <carol@p.test>\r\nSubject: %s\r\n"
                "Message-ID: <t1.%d@t.test>\r\n\r\n%s" % (subject, os.getpid(), body)).encode()
        self.assertEqual(self.submit_to_tern(["bob@p.test", "carol@p.test"], data), {})
        for user in ("bob", "carol"):
            msgs = self.pf.wait_maildir(user, 1, subject)
            self.assertEqual(len(msgs), 1, "not in Postfix's Maildir of %s%s" % (user, self.diag()))
            m = msgs[0]
            self.assertEqual(m["Return-Path"], "<alice@t.test>")
            self.assertEqual(m["Delivered-To"], "%s@p.test" % user)
            self.assertEqual(m.get_content().replace("\r\n", "\n"), body.replace("\r\n", "\n"))
            received = m.get_all("Received")
            self.assertIn("mx.p.test (Postfix)", received[0])
            self.assertRegex(received[0], r"with ESMTPS")  # tern used STARTTLS
            self.assertTrue(any("mx.t.test" in r for r in received[1:]), received)
        for rcpt in ("bob@p.test", "carol@p.test"):
            self.assertTrue(self.tern.wait_log(
                r"to=<%s> via=smtp \S*\[%s\]:%d tls=TLSv1\.[23]\b.* delivered"
                % (re.escape(rcpt), re.escape(PF_ADDR), self.pf_port)), self.diag())
        # one transaction for both recipients of the domain
        self.assertRegex(self.pf.log, r"from=<alice@t\.test>, size=\d+, nrcpt=2 ")

    def test_tern_delivers_8bit_and_large_to_postfix(self):
        subject = "tern-to-pf-8bit %f" % time.time()
        line = "Ĳsselmeer – naïve café ½ %05d .............................................\r\n"
        body = "".join(line % i for i in range(4000))
        data = ("From: <alice@t.test>\r\nTo: <bob@p.test>\r\nSubject: %s\r\nMIME-Version: 1.0\r\n"
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n%s"
                % (subject, body)).encode()
        self.assertEqual(self.submit_to_tern(["bob@p.test"], data, mail_options=["BODY=8BITMIME"]), {})
        msgs = self.pf.wait_maildir("bob", 1, subject)
        self.assertEqual(len(msgs), 1, "not in Postfix's Maildir" + self.diag())
        self.assertEqual(msgs[0].get_payload(decode=True).replace(b"\r\n", b"\n"),
                         body.encode().replace(b"\r\n", b"\n"))

    def test_postfix_rejects_unknown_user_and_tern_sends_dsn(self):
        """Postfix answers 550 5.1.1 at RCPT: permanent, one DSN to alice, no retry."""
        subject = "tern-to-pf-unknown %f" % time.time()
        data = ("From: <alice@t.test>\r\nTo: <nobody@p.test>\r\nSubject: %s\r\n\r\nhello\r\n" % subject).encode()
        self.assertEqual(self.submit_to_tern(["nobody@p.test"], data), {})
        self.assertTrue(self.tern.wait_log(r"to=<nobody@p\.test> via=smtp .*failed: 550", DELIVERY_TIMEOUT),
                        self.diag())

        def dsn():
            for m in self.env.maildir("alice@t.test"):
                raw = m.raw
                if b"nobody@p.test" in raw and subject.encode() in raw and m["Return-Path"] == "<>":
                    return raw
            return None

        raw = wait_until(dsn, DELIVERY_TIMEOUT, 0.1)
        self.assertTrue(raw, "no DSN in alice's Maildir" + self.diag())
        self.assertRegex(raw, rb"(?i)Status: 5\.1\.1")
        self.assertIn(b"User unknown in virtual mailbox table", raw)
        time.sleep(0.3)
        self.assertEqual(len([m for m in self.env.maildir("alice@t.test")
                              if b"nobody@p.test" in m.raw and subject.encode() in m.raw]), 1)

    # -- both ways ------------------------------------------------------------------

    def test_round_trip_through_alias(self):
        """Postfix -> tern (fwd@t.test, an alias of bob@p.test) -> Postfix: tern forwards
        to Postfix without authentication because the alias is tern's own."""
        subject = "round-trip %f" % time.time()
        data = ("From: <carol@p.test>\r\nTo: <fwd@t.test>\r\nSubject: %s\r\n\r\nthere and back\r\n"
                % subject).encode()
        self.assertEqual(self.submit_to_postfix("carol@p.test", ["fwd@t.test"], data), {})
        msgs = self.pf.wait_maildir("bob", 1, subject)
        self.assertEqual(len(msgs), 1, "not back in Postfix's Maildir" + self.diag())
        m = msgs[0]
        received = m.get_all("Received")
        # Postfix (final), tern, Postfix (first hop), in that order from the top
        self.assertGreaterEqual(len(received), 3, received)
        self.assertIn("mx.p.test (Postfix)", received[0])
        self.assertIn("mx.t.test", received[1])
        self.assertIn("mx.p.test (Postfix)", received[2])
        self.assertEqual(m["Delivered-To"], "bob@p.test")

    def test_zz_queues_drained(self):
        """After the other tests (run in name order), nothing is left queued on either side."""
        self.assertTrue(wait_until(self.pf.queue_empty, DELIVERY_TIMEOUT, 0.2),
                        "Postfix queue not empty" + self.diag())
        self.assertTrue(wait_until(lambda: not self.env.queue_files(), DELIVERY_TIMEOUT, 0.2),
                        "tern queue not empty: %s%s" % (self.env.queue_files(), self.diag()))


if __name__ == "__main__":
    unittest.main()
