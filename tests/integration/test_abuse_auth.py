"""`tern serve` under password guessing, and logs that cannot be forged.

AUTH: the password check runs on a worker thread (an unrelated session's
NOOP is answered at once while eight guessers keep the hash threads busy);
failures are counted per client network (/24) and per user name across
sessions, answered after a growing delay, and past auth_max_failures answered
454 4.7.0 without a check until auth_lockout has passed; a success clears the
user's count.  Every failure is one line "auth failed: ip=... user=...
session=N".

Logs: every place that logs what a peer sent (AUTH user names, RCPT and
MAIL addresses, MDA output, a next hop's reply, the sink's message line)
writes one line per record, with control characters and bytes that are not
UTF-8 escaped as \\xNN.  (HELO is logged nowhere; a HELO with a control
character is refused by the session.)
NUL in DATA: refused after the real end with 550 5.6.0 (serve and sink).
"""

import base64
import ctypes
import os
import re
import socket
import socketserver
import statistics
import threading
import time
import unittest

from servelib import ServeEnv
from ternlib import IO_TIMEOUT, ConnectionClosed, Dialogue, start_sink, wait_until

USER, PW = "alice@example.test", "alice-pw"
LOCKED = "454 4.7.0 Too many authentication failures, try again later"


def plain(user, password):
    if isinstance(user, str):
        user = user.encode()
    return base64.b64encode(b"\0" + user + b"\0" + password.encode()).decode()


class SourceDialogue(Dialogue):
    """A Dialogue from a chosen loopback source address (another /24 than 127.0.0.1)."""

    def __init__(self, port, source):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT,
                                             source_address=(source, 0))
        self.buf = b""


def submission(test, srv, source=None):
    """A session on the submission port after STARTTLS and EHLO."""
    port = srv.port("submission")
    d = SourceDialogue(port, source) if source else Dialogue(port)
    test.addCleanup(d.close)
    d.expect(220)
    d.cmd("EHLO client.test", 250)
    d.cmd("STARTTLS", 220)
    d.starttls_wrap()
    d.cmd("EHLO client.test", 250)
    return d


def timed_auth(d, user, password):
    t = time.monotonic()
    r = d.cmd("AUTH PLAIN " + plain(user, password))
    return r, time.monotonic() - t


def fail_lines(srv):
    return re.findall(r"^\S+Z serve info: auth failed: ip=(\S+) user=(.*) session=(\d+)$", srv.log, re.M)


class AuthThrottleTest(unittest.TestCase):
    def start(self, failures, lockout):
        env = ServeEnv(self, server={"auth_max_failures": str(failures), "auth_lockout": lockout})
        env.add_user(USER, PW)
        env.add_user("bob@example.test", "bob-pw")
        return env.start()

    def test_failures_slow_down_then_454_then_lock_expires(self):
        srv = self.start(5, "8s")
        times = []
        for i in range(7):  # seven fresh sessions, one wrong password each
            d = submission(self, srv)
            r, dt = timed_auth(d, USER, "guess-%d" % i)
            times.append(dt)
            if i < 5:
                self.assertEqual((r.code, r.enh), (535, "5.7.8"), (i, r))
            else:
                self.assertEqual(r.raw.decode().strip(), LOCKED, (i, r))
            d.close()
        # 0.5 s doubling (plus the hash): each failure answered later than the one before
        for i in range(1, 4):
            self.assertGreater(times[i], times[i - 1] + 0.3, times)
        self.assertGreater(times[3], 3.9, times)
        self.assertGreater(times[4], 3.9, times)  # at most 4 s
        # locked: answered at once, and nothing more is checked (no new failure line)
        self.assertLess(times[5], 0.45, times)
        self.assertLess(times[6], 0.45, times)
        # even the right password is refused while locked
        d = submission(self, srv)
        r, dt = timed_auth(d, USER, PW)
        self.assertEqual(r.raw.decode().strip(), LOCKED)
        self.assertTrue(srv.wait_log(r"auth locked: net=127\.0\.0\.0/24 failures=5 for=8s"))
        self.assertTrue(srv.wait_log(r"auth locked: user=alice@example\.test failures=5 for=8s"))
        self.assertEqual(srv.count_log(r"auth refused: ip=127\.0\.0\.1 user=alice@example\.test "
                                       r"session=\d+ locked=", 3), 3)
        lines = fail_lines(srv)
        self.assertEqual(len(lines), 5, srv.log[-3000:])
        self.assertTrue(all(ip == "127.0.0.1" and user == USER for ip, user, _ in lines), lines)
        self.assertEqual(len({s for _, _, s in lines}), 5)  # one per session
        # once the lock is over, the right password works again
        locked_at = time.monotonic()
        d.close()
        ok = None
        while time.monotonic() < locked_at + 20:
            d = submission(self, srv)
            r, _ = timed_auth(d, USER, PW)
            d.close()
            if r.code == 235:
                ok = r
                break
            self.assertEqual(r.code, 454, r)
            time.sleep(0.5)
        self.assertIsNotNone(ok, "still locked 20 s after an 8 s lock")
        self.assertTrue(srv.wait_log(r"auth ok: ip=127\.0\.0\.1 user=alice@example\.test session=\d+$"))

    def test_user_counted_across_networks_and_cleared_by_success(self):
        srv = self.start(3, "60s")
        # two failures for alice from two networks, then a success clears her count
        for i, src in enumerate(("127.0.1.1", "127.0.2.1")):
            r, _ = timed_auth(submission(self, srv, src), USER, "x%d" % i)
            self.assertEqual(r.code, 535)
        r, _ = timed_auth(submission(self, srv, "127.0.3.1"), USER, PW)
        self.assertEqual(r.code, 235)
        # cleared: two more failures from fresh networks do not lock her
        for i, src in enumerate(("127.0.4.1", "127.0.5.1")):
            r, _ = timed_auth(submission(self, srv, src), USER, "y%d" % i)
            self.assertEqual(r.code, 535)
        r, _ = timed_auth(submission(self, srv, "127.0.6.1"), USER, PW)
        self.assertEqual(r.code, 235)
        # three failures, each from another network, lock the user name (not the networks),
        # whatever case and drop characters the guesser uses
        for i, (src, name) in enumerate((("127.0.7.1", "alice@example.test"),
                                         ("127.0.8.1", "ALICE@Example.Test"),
                                         ("127.0.9.1", "a.lice@example.test"))):
            r, _ = timed_auth(submission(self, srv, src), name, "z%d" % i)
            self.assertEqual(r.code, 535, name)
        self.assertTrue(srv.wait_log(r"auth locked: user=a\.lice@example\.test failures=3"))
        d = submission(self, srv, "127.0.10.1")
        r, _ = timed_auth(d, USER, PW)
        self.assertEqual(r.raw.decode().strip(), LOCKED)
        r, _ = timed_auth(d, "bob@example.test", "bob-pw")  # another user from there: fine
        self.assertEqual(r.code, 235)
        self.assertIn("ip=127.0.8.1 user=ALICE@Example.Test", srv.log)
        self.assertNotIn("auth locked: net=", srv.log)

    def test_network_counted_across_users(self):
        srv = self.start(3, "60s")
        for i, user in enumerate(("nobody@example.test", "bob@example.test", "x@y.test")):
            r, _ = timed_auth(submission(self, srv, "127.0.20.%d" % (i + 1)), user, "nope")
            self.assertEqual(r.code, 535, user)
        self.assertTrue(srv.wait_log(r"auth locked: net=127\.0\.20\.0/24 failures=3"))
        # the whole /24 is locked, for any user, right password or not
        r, _ = timed_auth(submission(self, srv, "127.0.20.200"), USER, PW)
        self.assertEqual(r.raw.decode().strip(), LOCKED)
        # another network is not
        r, _ = timed_auth(submission(self, srv, "127.0.21.1"), USER, PW)
        self.assertEqual(r.code, 235)

    def add_slow_user(self, srv_env, name, password, cost=8):
        """A user whose yescrypt hash costs `cost` (tern user add uses 5; each step doubles the
        time): a check then takes a few tenths of a second, long enough to be seen."""
        lc = ctypes.CDLL("libcrypt.so.1")
        lc.crypt_gensalt.restype = ctypes.c_char_p
        lc.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
        lc.crypt.restype = ctypes.c_char_p
        lc.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        h = lc.crypt(password.encode(), lc.crypt_gensalt(b"$y$", cost, None, 0))
        self.assertTrue(h and h.startswith(b"$y$"), h)
        path = os.path.join(srv_env.data_dir, "domains", "example.test", "users")
        with open(path, "a") as f:
            f.write("%s:%s\n" % (name, h.decode()))

    def test_guessers_do_not_block_the_loop(self):
        env = ServeEnv(self, server={"auth_max_failures": "1000", "auth_lockout": "15m"})
        env.add_user(USER, PW)
        self.add_slow_user(env, "slow", "slow-pw")
        srv = env.start()
        # one slow check in progress: another session's NOOPs are answered meanwhile
        a = submission(self, srv)
        b = Dialogue(srv.port("smtp"))
        self.addCleanup(b.close)
        b.expect(220)
        b.cmd("EHLO victim.test", 250)
        t0 = time.monotonic()
        a.send("AUTH PLAIN %s\r\n" % plain("slow@example.test", "slow-pw"))
        time.sleep(0.05)  # the check has begun
        noops = []
        for _ in range(5):
            t = time.monotonic()
            b.cmd("NOOP", 250)
            noops.append(time.monotonic() - t)
        self.assertTrue(a.nothing_pending(0.001), "the check was over before the NOOPs")
        a.expect(235)
        t_check = time.monotonic() - t0
        self.assertGreater(t_check, 0.1, "the slow hash was not slow")
        self.assertLess(max(noops), t_check / 2, (noops, t_check))

        # eight guessers keep the checking threads busy; NOOP stays quick
        stop = threading.Event()
        errors = []

        def guesser(k):
            i = 0
            try:
                while not stop.is_set():
                    d = submission(self, srv, "127.0.%d.1" % (30 + k))
                    r = d.cmd("AUTH PLAIN " + plain("slow@example.test", "guess-%d-%d" % (k, i)))
                    if r.code not in (535, 454):
                        errors.append(r)
                    i += 1
                    d.close()
            except (OSError, ConnectionClosed) as e:
                if not stop.is_set():
                    errors.append(e)

        before = len(fail_lines(srv))
        threads = [threading.Thread(target=guesser, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        try:
            self.assertTrue(wait_until(lambda: len(fail_lines(srv)) >= before + 2, 30))
            rtts = []
            checked_from = len(fail_lines(srv))
            for _ in range(60):
                t = time.monotonic()
                b.cmd("NOOP", 250)
                rtts.append(time.monotonic() - t)
                time.sleep(0.05)
            checked = len(fail_lines(srv)) - checked_from
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertEqual(errors, [])
        med = statistics.median(rtts)
        print("\n  one slow check %.0f ms (NOOPs meanwhile: max %.1f ms); with 8 guessers: NOOP "
              "median %.1f ms, max %.1f ms, %d checks meanwhile"
              % (t_check * 1000, max(noops) * 1000, med * 1000, max(rtts) * 1000, checked))
        self.assertGreater(checked, 0, "no check ended while NOOP was measured")
        self.assertLess(med, 0.05, rtts)


class LogForgeTest(unittest.TestCase):
    """What a client sends cannot make a line of its own in the log."""

    @classmethod
    def setUpClass(cls):
        cls.env = ServeEnv(cleanup=cls.addClassCleanup)
        cls.env.add_user(USER, PW)
        cls.srv = cls.env.start()

    def records(self):
        """The log as lines; each must look like a record."""
        lines = self.srv.log.splitlines()
        for line in lines:
            self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z serve \w+: ")
            self.assertNotRegex(line, r"[\x00-\x1f\x7f]")
        return lines

    def test_auth_user_with_lf_and_fake_record(self):
        fake = "2026-01-01T00:00:00.000Z serve info: auth ok: ip=192.0.2.1 user=admin@example.test session=1"
        d = submission(self, self.srv)
        r, _ = timed_auth(d, "mallory\n" + fake, "x")
        self.assertEqual(r.code, 535)
        self.assertTrue(self.srv.wait_log(r"auth failed: ip=127\.0\.0\.1 user=mallory\\x0a2026"))
        lines = self.records()
        self.assertFalse([ln for ln in lines if ln.startswith("2026-01-01T")], lines)
        self.assertEqual(len([ln for ln in lines if "user=admin@example.test" in ln]), 1)
        # AUTH LOGIN: a user name with CR LF and ESC
        d.cmd("AUTH LOGIN", 334)
        d.cmd(base64.b64encode(b"eve\r\n\x1b[2Jfake").decode(), 334)
        d.cmd(base64.b64encode(b"pw").decode(), 535)
        self.assertTrue(self.srv.wait_log(r"user=eve\\x0d\\x0a\\x1b\[2Jfake session="))
        self.records()

    def test_helo_with_esc_refused(self):
        d = Dialogue(self.srv.port("smtp"))
        self.addCleanup(d.close)
        d.expect(220)
        d.cmd(b"EHLO evil\x1b[2J.test", 501, "5.5.4")
        d.cmd(b"HELO a\x7fb", 501)
        d.cmd("NOOP", 250)
        self.records()

    def test_rcpt_with_bytes_that_are_not_utf8(self):
        d = Dialogue(self.srv.port("smtp"))
        self.addCleanup(d.close)
        d.expect(220)
        d.cmd("EHLO client.test", 250)
        d.cmd("MAIL FROM:<x@remote.test> SMTPUTF8", 250)
        d.send("RCPT TO:<nob\u009b31mody\u202e@example.test>\r\n".encode())
        self.assertEqual(d.reply().code, 550)
        self.assertTrue(self.srv.wait_log(r"RCPT <nob\\xc2\\x9b31mody\\xe2\\x80\\xae@example\.test> refused"))
        self.records()

    def test_mail_from_in_queued_line(self):
        d = Dialogue(self.srv.port("smtp"))
        self.addCleanup(d.close)
        d.expect(220)
        d.cmd("EHLO client.test", 250)
        d.send("MAIL FROM:<j\u00fcrgen\u202eevil\u0085@remote.test> SMTPUTF8\r\n".encode())
        self.assertEqual(d.reply().code, 250)
        d.cmd("RCPT TO:<%s>" % USER, 250)
        d.cmd("DATA", 354)
        d.send(b"Subject: x\r\n\r\nhi\r\n.\r\n")
        self.assertEqual(d.reply().code, 250)
        # valid UTF-8 stays readable; the bidi override and the C1 control (NEL) do not
        self.assertTrue(self.srv.wait_log(r"from=<j\u00fcrgen\\xe2\\x80\\xaeevil\\xc2\\x85@remote\.test>"))
        self.records()

    def test_nul_in_data_refused(self):
        d = Dialogue(self.srv.port("smtp"))
        self.addCleanup(d.close)
        d.expect(220)
        d.cmd("EHLO client.test", 250)
        d.cmd("MAIL FROM:<x@remote.test>", 250)
        d.cmd("RCPT TO:<%s>" % USER, 250)
        d.cmd("DATA", 354)
        d.send(b"Subject: nul\r\n\r\nbefore\0after\r\n.\r\n")
        r = d.reply()
        self.assertEqual((r.code, r.enh), (550, "5.6.0"), r)
        d.cmd("NOOP", 250)  # the session goes on after the real end
        self.assertEqual(self.env.wait_maildir(USER, 1, timeout=0.5, subject="nul"), [])


class MdaOutputLogTest(unittest.TestCase):
    def test_mda_output_escaped(self):
        env = ServeEnv(self, local={"delivery": "mda"})
        script = env.write_script("mda.sh", "#!/bin/sh\ncat >/dev/null\n"
                                  "printf 'oops\\n2026-01-01T00:00:00.000Z serve info: id=forged delivered\\033[0m'\n"
                                  "exit 1\n")
        env.conf["local"]["mda_command"] = script + " %to%"
        env.write_conf()
        env.add_user(USER, PW)
        srv = env.start()
        d = Dialogue(srv.port("smtp"))
        self.addCleanup(d.close)
        d.expect(220)
        d.cmd("EHLO client.test", 250)
        r = d.transaction("x@remote.test", [USER], b"Subject: mda\r\n\r\nhi\r\n")
        self.assertEqual(r.code, 250, r)
        self.assertTrue(srv.wait_log(r"via=mda"))
        lines = srv.log.splitlines()
        self.assertFalse([ln for ln in lines if ln.startswith("2026-01-01T")], lines)
        self.assertFalse([ln for ln in lines if "\x1b" in ln], lines)


class RemoteReplyLogTest(unittest.TestCase):
    def test_peer_reply_escaped(self):
        """A next hop's reply text (ESC, DEL, bytes that are not UTF-8) in the delivery log."""
        evil = b"550 5.1.1 no\x1b[2J such\x7f user \xff\xfe 2026-01-01T00:00:00.000Z serve info: forged\r\n"

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                self.wfile.write(b"220 evil.test ESMTP\r\n")
                for line in self.rfile:
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        self.wfile.write(b"250 evil.test\r\n")
                    elif verb == b"RCPT":
                        self.wfile.write(evil)
                    elif verb == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:
                        self.wfile.write(b"250 ok\r\n")

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        env = ServeEnv(self, remote={"routes": "evil.test=[127.0.0.1]:%d" % server.server_address[1],
                                     "tls": "none"})
        env.write_aliases("example.test", "fwd: x@evil.test\n")
        srv = env.start()
        d = Dialogue(srv.port("smtp"))
        self.addCleanup(d.close)
        d.expect(220)
        d.cmd("EHLO client.test", 250)
        r = d.transaction("x@remote.test", ["fwd@example.test"], b"Subject: fwd\r\n\r\nhi\r\n")
        self.assertEqual(r.code, 250, r)
        self.assertTrue(srv.wait_log(r"to=<x@evil\.test> via=.*no.*such.*user"), srv.log[-2000:])
        lines = srv.log.splitlines()
        self.assertFalse([ln for ln in lines if ln.startswith("2026-01-01T")], lines)
        self.assertFalse([ln for ln in lines if re.search(r"[\x00-\x1f\x7f\ufffd]", ln)], lines)


class SinkTest(unittest.TestCase):
    def test_nul_refused_and_sender_escaped(self):
        sink = start_sink(self)
        d = Dialogue(sink.smtp_port)
        self.addCleanup(d.close)
        d.expect(220)
        d.cmd("EHLO client.test", 250)
        r = d.transaction("x@remote.test", ["a@b.test"], b"Subject: nul\r\n\r\na\0b\r\n")
        self.assertEqual((r.code, r.enh), (550, "5.6.0"), r)
        d.send("MAIL FROM:<x\u009b2J\u2028y@remote.test> SMTPUTF8\r\n".encode())
        self.assertEqual(d.reply().code, 250)
        d.cmd("RCPT TO:<a@b.test>", 250)
        d.cmd("DATA", 354)
        d.send(b"Subject: ok\r\n\r\nhi\r\n.\r\n")
        self.assertEqual(d.reply().code, 250)
        self.assertTrue(sink.wait_log(r"from=<x\\xc2\\x9b2J\\xe2\\x80\\xa8y@remote\.test>"))


if __name__ == "__main__":
    unittest.main()
