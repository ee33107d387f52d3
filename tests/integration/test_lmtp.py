"""`tern serve` delivering to a real Dovecot over LMTP (RFC 2033): [local] delivery = lmtp.

Each test runs a private Dovecot (Debian's dovecot-core, dovecot-lmtpd, dovecot-imapd):
its dovecot.conf, base_dir, state_dir, log and mail in a temporary folder; `ssl = no`;
protocols lmtp and imap; the lmtp service on a unix socket in that folder AND on a
loopback TCP port; imap on a loopback TCP port; users in a passwd-file of the folder
(mail_location maildir:DIR/mail/%u); the quota plugin with quota_full_tempfail, so that
a user over quota gets a 452 after DATA, for that recipient only.  It is started as
`dovecot -F -c CONF` and stopped by its PID (SIGTERM, then a bounded wait).

tern knows alice, full, ghost and bob of example.test; Dovecot knows alice, full
(1 KiB quota) and bob, not ghost.  One message from bob to alice, full and ghost:
  - alice gets it (read back with `doveadm fetch`);
  - ghost is refused at RCPT (550 5.1.1): permanent, and bob gets a failure DSN
    (delivered to him by LMTP as well, read back with doveadm);
  - full gets 452 4.2.2 after DATA: deferred, retried, and delivered once its quota
    is raised.
Over TCP: with Dovecot down the delivery is deferred (connection refused) and done on a
later attempt once Dovecot is up; the mailbox is read back over IMAP (imaplib).

A missing Dovecot fails the test: scripts/install-deps installs it.
"""

import imaplib
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import time
import unittest

from servelib import AS_ROOT, ServeEnv
from ternlib import IO_TIMEOUT, free_port, temp_dir, wait_until, write_file

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
DOMAIN = "example.test"
LONG = max(IO_TIMEOUT, 30.0)  # a retry (1 s, then 2 s) plus Dovecot's start


class Dovecot:
    """A private Dovecot instance in a temporary folder (not started until start())."""

    def __init__(self, cleanup, users):
        """users: {"alice": quota_rule or None}; addresses are NAME@example.test."""
        self.dir = temp_dir(cleanup, "tern-dovecot-")
        os.chmod(self.dir, 0o755)  # tern serve (nobody) must reach the socket in it
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.socket = os.path.join(self.dir, "lmtp")
        self.logfile = os.path.join(self.dir, "dovecot.log")
        self.users_file = os.path.join(self.dir, "users")
        self.lmtp_port = free_port("127.0.0.1")
        self.imap_port = free_port("127.0.0.1")
        self.proc = None
        mail = os.path.join(self.dir, "mail")
        os.mkdir(mail, 0o755)
        if AS_ROOT:
            # Dovecot never touches mail as root: the mail user is nobody, and its
            # internal processes run as Debian's dovecot and dovenull users
            pw = pwd.getpwnam("nobody")
            internal, login = "dovecot", "dovenull"
        else:
            pw = pwd.getpwuid(os.getuid())
            internal = login = pw.pw_name
        os.chown(mail, pw.pw_uid, pw.pw_gid)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.write_users(users)
        d = self.dir
        write_file(self.conf, f"""\
base_dir = {d}/run
state_dir = {d}/state
instance_name = tern-test-{os.path.basename(d)}
ssl = no
protocols = lmtp imap
listen = 127.0.0.1
log_path = {self.logfile}
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
first_valid_uid = 1
mail_location = maildir:{d}/mail/%u
disable_plaintext_auth = no
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.users_file}
}}
userdb {{
  driver = passwd-file
  args = {self.users_file}
  default_fields = uid={self.uid} gid={self.gid}
}}
mail_plugins = quota
plugin {{
  quota = maildir:User quota
  quota_rule = *:storage=100M
}}
quota_full_tempfail = yes
service lmtp {{
  unix_listener {self.socket} {{
    mode = 0666
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""")
        cleanup(self.stop)

    def write_users(self, users):
        """(Re)write the passwd-file: Dovecot reads it again when it changes."""
        lines = []
        for name, quota in users.items():
            extra = "userdb_quota_rule=*:storage=%s" % quota if quota else ""
            lines.append("%s@%s:{PLAIN}%s-pw::::::%s\n" % (name, DOMAIN, name, extra))
        tmp = self.users_file + ".tmp"
        write_file(tmp, "".join(lines))
        os.rename(tmp, self.users_file)
        # the mtime is what Dovecot compares: make sure it moves even within one second
        now = time.time()
        os.utime(self.users_file, (now + 2, now + 2))

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def start(self):
        out = open(os.path.join(self.dir, "dovecot.out"), "wb")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf], stdout=out,
                                     stderr=subprocess.STDOUT)
        out.close()

        def up():
            if self.proc.poll() is not None:
                return True
            if not os.path.exists(self.socket):
                return False
            for port in (self.lmtp_port, self.imap_port):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                except OSError:
                    return False
            return True

        wait_until(up, IO_TIMEOUT)
        if self.proc.poll() is not None or not up():
            with open(os.path.join(self.dir, "dovecot.out"), errors="replace") as f:
                out = f.read()
            raise AssertionError("dovecot did not start:\n%s\n%s" % (out, self.log()))

    def stop(self):
        """SIGTERM to the master we started (it stops its children), then a bounded wait."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=IO_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=IO_TIMEOUT)
        self.proc = None
        # the master removes its sockets; wait for the children to go with it
        wait_until(lambda: not os.path.exists(self.socket), 5)

    def fetch(self, name, fields="hdr.subject text"):
        """`doveadm fetch` of every message of NAME's INBOX: its output ("" when none)."""
        p = subprocess.run([DOVEADM, "-c", self.conf, "fetch", "-u", "%s@%s" % (name, DOMAIN),
                            fields, "mailbox", "INBOX", "all"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        text = p.stdout.decode(errors="replace")
        if p.returncode != 0 and "Mailbox doesn't exist" not in text:
            raise AssertionError("doveadm fetch -u %s: %d: %s" % (name, p.returncode, text))
        return text if p.returncode == 0 else ""

    def wait_fetch(self, name, pattern, timeout=LONG):
        """Poll doveadm until NAME's INBOX matches pattern; the output."""
        out = [""]

        def found():
            out[0] = self.fetch(name)
            return re.search(pattern, out[0], re.M)

        wait_until(found, timeout, step=0.3)
        return out[0]


def message(subject, sender, to, size=0):
    body = "Hello over LMTP.\r\n" + ("x" * 70 + "\r\n") * (size // 72)
    return ("From: <%s>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@%s>\r\n\r\n%s" %
            (sender, ", ".join("<%s>" % t for t in to), subject,
             re.sub(r"\W", "", subject), DOMAIN, body)).encode()


class TestLmtpDovecot(unittest.TestCase):
    def setUp(self):
        for prog in (DOVECOT, DOVEADM):
            if not os.access(prog, os.X_OK):
                self.fail("%s not found: scripts/install-deps installs dovecot-core, "
                          "dovecot-lmtpd and dovecot-imapd" % prog)
        if not os.path.exists("/usr/lib/dovecot/lmtp"):
            self.fail("Dovecot's lmtp service is missing: install dovecot-lmtpd")

    def serve(self, dovecot, endpoint):
        env = ServeEnv(self, local={"delivery": "lmtp", "lmtp": endpoint})
        for name in ("alice", "full", "ghost", "bob"):
            env.add_user("%s@%s" % (name, DOMAIN), name + "-pw")
        p = env.tern("check-config")
        self.assertEqual(p.returncode, 0, p.stdout.decode(errors="replace"))
        return env, env.start()

    def send(self, srv, sender, to, msg):
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=IO_TIMEOUT) as s:
            refused = s.sendmail(sender, to, msg)
        self.assertEqual(refused, {})

    def diag(self, srv, dovecot):
        return "\n--- tern:\n%s\n--- dovecot:\n%s" % (srv.log, dovecot.log())

    def test_unix_socket_per_recipient_replies(self):
        dc = Dovecot(self.addCleanup, {"alice": None, "full": "1k", "bob": None})
        dc.start()
        env, srv = self.serve(dc, "unix:" + dc.socket)
        rcpts = ["alice@" + DOMAIN, "full@" + DOMAIN, "ghost@" + DOMAIN]
        self.send(srv, "bob@" + DOMAIN, rcpts,
                  message("lmtp three recipients", "bob@" + DOMAIN, rcpts, size=4000))

        # alice: 250 after DATA, in her Dovecot mailbox
        out = dc.wait_fetch("alice", r"^hdr\.subject: lmtp three recipients$")
        self.assertRegex(out, r"(?m)^hdr\.subject: lmtp three recipients$", self.diag(srv, dc))
        self.assertIn("Hello over LMTP.", out)
        self.assertRegex(out, r"(?m)^Return-Path: <bob@example\.test>")  # Dovecot's own
        # ghost: refused at RCPT, permanent; full: 452 after DATA, transient, for it only
        self.assertTrue(srv.wait_log(r"to=<ghost@example\.test> via=lmtp unix:\S+ failed: 550 "
                                     r"5\.1\.1 ", LONG), self.diag(srv, dc))
        self.assertTrue(srv.wait_log(r"to=<full@example\.test> via=lmtp unix:\S+ deferred: 452 "
                                     r"4\.2\.2 .*Quota exceeded", LONG), self.diag(srv, dc))
        self.assertTrue(srv.wait_log(r"to=<alice@example\.test> via=lmtp unix:\S+ delivered",
                                     LONG), self.diag(srv, dc))
        self.assertEqual(dc.fetch("full"), "")
        self.assertEqual(len(re.findall(r"(?m)^hdr\.subject: lmtp three", dc.fetch("alice"))), 1)
        # retried: still over quota (a second 452), then delivered once the quota is raised
        self.assertTrue(srv.wait_log(r"to=<full@example\.test> via=lmtp \S+ deferred: 452", LONG,
                                     count=2), self.diag(srv, dc))
        dc.write_users({"alice": None, "full": "10M", "bob": None})
        out = dc.wait_fetch("full", r"^hdr\.subject: lmtp three recipients$")
        self.assertRegex(out, r"(?m)^hdr\.subject: lmtp three recipients$", self.diag(srv, dc))
        self.assertTrue(srv.wait_log(r"to=<full@example\.test> via=lmtp \S+ delivered", LONG))
        # the failure DSN for ghost goes to bob, through LMTP as well; alice got hers once
        out = dc.wait_fetch("bob", r"ghost@example\.test")
        self.assertRegex(out, r"(?m)^hdr\.subject: .*(Undelivered|[Ff]ailure|[Ff]ailed|"
                              r"[Rr]eturned)", self.diag(srv, dc))
        self.assertIn("ghost@example.test", out)
        self.assertRegex(out, r"5\.1\.1")
        self.assertEqual(len(re.findall(r"(?m)^hdr\.subject: lmtp three", dc.fetch("alice"))), 1)
        # nothing left in tern's queue
        self.assertTrue(wait_until(lambda: env.queue_files() == [], LONG), env.queue_files())

    def test_tcp_connection_failure_is_retried(self):
        dc = Dovecot(self.addCleanup, {"alice": None, "bob": None})
        env, srv = self.serve(dc, "127.0.0.1:%d" % dc.lmtp_port)  # Dovecot not started yet
        self.send(srv, "bob@" + DOMAIN, ["alice@" + DOMAIN],
                  message("lmtp over tcp", "bob@" + DOMAIN, ["alice@" + DOMAIN]))
        self.assertTrue(srv.wait_log(r"to=<alice@example\.test> via=lmtp 127\.0\.0\.1:%d deferred: "
                                     r"4\.4\.1 " % dc.lmtp_port, LONG), srv.log)
        dc.start()
        self.assertTrue(srv.wait_log(r"to=<alice@example\.test> via=lmtp 127\.0\.0\.1:%d delivered"
                                     % dc.lmtp_port, LONG), self.diag(srv, dc))
        # read it back over IMAP, on Dovecot's loopback listener
        imap = imaplib.IMAP4("127.0.0.1", dc.imap_port, timeout=IO_TIMEOUT)
        try:
            imap.login("alice@" + DOMAIN, "alice-pw")
            typ, data = imap.select("INBOX", readonly=True)
            self.assertEqual(typ, "OK", data)
            self.assertEqual(int(data[0]), 1)
            typ, data = imap.fetch("1", "(BODY.PEEK[])")
            self.assertEqual(typ, "OK", data)
            raw = data[0][1]
        finally:
            imap.logout()
        self.assertIn(b"Subject: lmtp over tcp\r\n", raw)
        self.assertIn(b"Hello over LMTP.", raw)
        self.assertRegex(raw, rb"Return-Path: <bob@example\.test>")
        self.assertTrue(wait_until(lambda: env.queue_files() == [], LONG), env.queue_files())

    def test_stopped_dovecot_unix_socket_deferred_then_delivered(self):
        dc = Dovecot(self.addCleanup, {"alice": None, "bob": None})
        dc.start()
        env, srv = self.serve(dc, "unix:" + dc.socket)
        self.send(srv, "bob@" + DOMAIN, ["alice@" + DOMAIN],
                  message("first", "bob@" + DOMAIN, ["alice@" + DOMAIN]))
        dc.wait_fetch("alice", r"^hdr\.subject: first$")
        dc.stop()  # the kept connection is gone too: the next delivery finds no socket
        self.send(srv, "bob@" + DOMAIN, ["alice@" + DOMAIN],
                  message("second", "bob@" + DOMAIN, ["alice@" + DOMAIN]))
        self.assertTrue(srv.wait_log(r"to=<alice@example\.test> via=lmtp unix:\S+ deferred: "
                                     r"4\.4\.[12] ", LONG), self.diag(srv, dc))
        dc.start()
        out = dc.wait_fetch("alice", r"^hdr\.subject: second$")
        self.assertRegex(out, r"(?m)^hdr\.subject: second$", self.diag(srv, dc))
        self.assertEqual(len(re.findall(r"(?m)^hdr\.subject: ", out)), 2)


if __name__ == "__main__":
    unittest.main()
