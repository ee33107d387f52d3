"""SMTP behaviour of `tern sink`: real clients (smtplib, swaks, curl,
smtp-source, msmtp) and protocol edge cases over a raw socket."""

import base64
import os
import random
import shutil
import signal
import smtplib
import socket
import threading
import time
import unittest

from ternlib import (Dialogue, api_count, api_json, api_stats, dot_stuff, have_ipv6_loopback,
                     http_get, message, run, send_raw, start_sink, temp_file, unverified_context)


def raw_of(sink, mid="latest"):
    r = http_get(sink.http_port, "/api/messages/%s/raw" % mid)
    if r.status != 200:
        raise AssertionError(repr(r))
    return r.body


class SmtplibTest(unittest.TestCase):
    def smtp(self, port, **kw):
        s = smtplib.SMTP("127.0.0.1", port, timeout=20, **kw)
        self.addCleanup(s.close)
        return s

    def test_plain_delivery(self):
        sink = start_sink(self)
        s = self.smtp(sink.smtp_port)
        code, _ = s.ehlo("client.example")
        self.assertEqual(code, 250)
        for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes"):
            self.assertTrue(s.has_extn(ext), ext)
        self.assertFalse(s.has_extn("starttls"))  # no --tls
        self.assertFalse(s.has_extn("auth"))
        self.assertEqual(s.esmtp_features["size"], str(25 * 1024 * 1024))
        msg = message(subject="plain one", body="line 1\r\n.leading dot\r\n..two dots\r\n.\r\n")
        refused = s.sendmail("alice@example.com", ["bob@example.net", "carol@example.org"], msg)
        self.assertEqual(refused, {})
        s.quit()
        m = api_json(sink.http_port, "/api/messages/latest")
        self.assertEqual(m["from"], "alice@example.com")
        self.assertEqual(m["to"], ["bob@example.net", "carol@example.org"])
        self.assertEqual(m["subject"], "plain one")
        self.assertEqual(m["helo"], "client.example")
        self.assertFalse(m["tls"])
        self.assertIsNone(m["auth_user"])
        self.assertEqual(raw_of(sink), msg)  # smtplib stuffed the dots, the sink unstuffed them
        self.assertEqual(m["size"], len(msg))

    def test_starttls(self):
        sink = start_sink(self, "--tls")
        s = self.smtp(sink.smtp_port)
        s.ehlo("tls.example")
        self.assertTrue(s.has_extn("starttls"))
        code, _ = s.starttls(context=unverified_context())
        self.assertEqual(code, 220)
        s.ehlo("tls.example")
        self.assertFalse(s.has_extn("starttls"), "STARTTLS offered again inside TLS")
        s.sendmail("a@example.com", ["b@example.com"], message(subject="over tls"))
        s.quit()
        m = api_json(sink.http_port, "/api/messages/latest")
        self.assertTrue(m["tls"])
        self.assertEqual(m["subject"], "over tls")

    def login_with(self, s, mech, user, password):
        s.user, s.password = user, password
        auth = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login}[mech]
        return s.auth(mech, auth, initial_response_ok=(mech == "PLAIN"))

    def test_auth_any_plain_and_login(self):
        sink = start_sink(self, "--tls", "--auth", "any")
        for mech in ("PLAIN", "LOGIN"):
            s = self.smtp(sink.smtp_port)
            s.starttls(context=unverified_context())
            s.ehlo()
            self.assertIn(mech, s.esmtp_features["auth"].split())
            code, text = self.login_with(s, mech, "user-" + mech, "whatever")
            self.assertEqual(code, 235, text)
            s.sendmail("a@example.com", ["b@example.com"], message(subject="auth " + mech))
            s.quit()
            m = api_json(sink.http_port, "/api/messages/latest")
            self.assertEqual(m["auth_user"], "user-" + mech)
            self.assertEqual(m["subject"], "auth " + mech)

    def test_auth_file(self):
        path = temp_file(self.addCleanup, "users", "# users\nalice:s3cret\nbob:pa:ss\n")
        sink = start_sink(self, "--tls", "--auth-file", path)
        cases = [("PLAIN", "alice", "s3cret", 235), ("LOGIN", "alice", "s3cret", 235),
                 ("PLAIN", "bob", "pa:ss", 235), ("PLAIN", "alice", "wrong", 535),
                 ("LOGIN", "alice", "s3cre", 535), ("LOGIN", "mallory", "s3cret", 535),
                 ("PLAIN", "alice", "s3cret\x00", 535)]
        for mech, user, password, want in cases:
            with self.subTest(mech=mech, user=user, password=password):
                s = self.smtp(sink.smtp_port)
                s.starttls(context=unverified_context())
                s.ehlo()
                if want == 235:
                    code, _ = self.login_with(s, mech, user, password)
                    self.assertEqual(code, 235)
                else:
                    with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                        self.login_with(s, mech, user, password)
                    self.assertEqual(cm.exception.smtp_code, 535)
                    self.assertTrue(cm.exception.smtp_error.startswith(b"5.7.8"), cm.exception)
                    # the session goes on after a failed AUTH
                    self.assertEqual(s.noop()[0], 250)
                s.quit()

    def test_auth_dialogue_details(self):
        path = temp_file(self.addCleanup, "users", "alice:s3cret\n")
        sink = start_sink(self, "--auth-file", path, "--auth-insecure")
        b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
        with Dialogue(sink.smtp_port) as d:
            d.expect(220)
            d.cmd("HELO old.example", 250)
            d.cmd("AUTH PLAIN " + b64("\0alice\0s3cret"), 503)  # EHLO first
            d.cmd("EHLO new.example", 250)
            d.cmd("AUTH CRAM-MD5", 504)
            d.cmd("AUTH PLAIN", 334)
            d.cmd("*", 501)  # cancelled
            d.cmd("AUTH PLAIN", 334)
            d.cmd("!!!not base64", 501)
            d.cmd("AUTH PLAIN " + b64("bob\0alice\0s3cret"), 535)  # authzid must be the user
            d.cmd("AUTH LOGIN " + b64("alice"), 334)  # initial response: the user name
            d.cmd(b64("s3cret"), 235, "2.7.0")
            d.cmd("AUTH PLAIN " + b64("\0alice\0s3cret"), 503)  # already authenticated
            d.cmd("MAIL FROM:<a@example.com>", 250)
        with Dialogue(sink.smtp_port) as d:
            d.expect(220)
            d.cmd("EHLO new.example", 250)
            d.cmd("MAIL FROM:<a@example.com>", 250)
            d.cmd("AUTH PLAIN " + b64("\0alice\0s3cret"), 503)  # not inside a transaction
            d.cmd("RSET", 250)
            d.cmd("AUTH PLAIN " + b64("alice\0alice\0s3cret"), 235)

    def test_failed_auth_bounded_by_max_errors(self):
        path = temp_file(self.addCleanup, "users", "alice:s3cret\n")
        sink = start_sink(self, "--auth-file", path, "--auth-insecure", "--max-errors", "3")
        with Dialogue(sink.smtp_port) as d:
            d.expect(220)
            d.cmd("EHLO guess.example", 250)
            codes = []
            for i in range(10):  # password guessing
                r = d.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0guess%d" % i).decode())
                codes.append(r.code)
                if r.code != 535:
                    break
            # like three bad commands, three failed AUTHs are tolerated and the next error ends it
            self.assertEqual(codes, [535, 535, 535, 421], codes)
            self.assertTrue(d.is_closed())

    def test_auth_requires_tls_unless_insecure(self):
        sink = start_sink(self, "--tls", "--auth", "any")
        with Dialogue(sink.smtp_port) as d:
            d.expect(220)
            r = d.cmd("EHLO c.example", 250)
            self.assertNotIn("AUTH PLAIN LOGIN", r.lines)
            self.assertIn("STARTTLS", r.lines)
            d.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==", 538, "5.7.11")
            d.cmd("NOOP", 250)
        insecure = start_sink(self, "--auth", "any", "--auth-insecure")
        s = self.smtp(insecure.smtp_port)
        s.ehlo()
        self.assertIn("PLAIN", s.esmtp_features.get("auth", "").split())
        self.assertEqual(s.login("carol", "pw")[0], 235)
        s.sendmail("a@example.com", ["b@example.com"], message())
        s.quit()
        m = api_json(insecure.http_port, "/api/messages/latest")
        self.assertEqual(m["auth_user"], "carol")
        self.assertFalse(m["tls"])

    def test_implicit_tls(self):
        sink = start_sink(self, smtps=("127.0.0.1:0",))
        s = smtplib.SMTP_SSL("127.0.0.1", sink.smtps_port, timeout=20, context=unverified_context())
        self.addCleanup(s.close)
        s.ehlo()
        self.assertFalse(s.has_extn("starttls"))
        s.sendmail("a@example.com", ["b@example.com"], message(subject="smtps"))
        s.quit()
        m = api_json(sink.http_port, "/api/messages/latest")
        self.assertTrue(m["tls"])
        self.assertEqual(m["subject"], "smtps")
        # the plain listener of the same sink still speaks plain SMTP
        with Dialogue(sink.smtp_port) as d:
            d.expect(220)

    def test_smtputf8_and_8bitmime(self):
        sink = start_sink(self)
        s = self.smtp(sink.smtp_port)
        s.ehlo()
        self.assertTrue(s.has_extn("smtputf8"))
        body = "Grüße, ünïcödé\r\n".encode()
        msg = b"Subject: utf8\r\n\r\n" + body
        s.sendmail("jörg@exämple.de", ["zoë@example.com"], msg,
                   mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        s.quit()
        m = api_json(sink.http_port, "/api/messages/latest")
        self.assertEqual(m["from"], "jörg@exämple.de")
        self.assertEqual(m["to"], ["zoë@example.com"])
        self.assertEqual(raw_of(sink), msg)


class PipeliningTest(unittest.TestCase):
    def test_one_write_in_order(self):
        sink = start_sink(self)
        with Dialogue(sink.smtp_port) as d:
            d.expect(220)
            d.send(b"EHLO pipe.example\r\nMAIL FROM:<p@example.com>\r\nRCPT TO:<r1@example.com>\r\n"
                   b"RCPT TO:<r2@example.com>\r\nDATA\r\n")
            ehlo = d.expect(250)
            self.assertGreater(len(ehlo.lines), 3)
            self.assertIn("PIPELINING", ehlo.lines)
            d.expect(250, "2.1.0")
            d.expect(250, "2.1.5")
            d.expect(250, "2.1.5")
            d.expect(354)
            # the data, the next transaction and QUIT in one more write
            d.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nMAIL FROM:<q@example.com>\r\n"
                   b"RCPT TO:<bad address>\r\nRCPT TO:<r3@example.com>\r\nRSET\r\nNOOP\r\nQUIT\r\n")
            d.expect(250, "2.0.0")
            d.expect(250, "2.1.0")
            self.assertEqual(d.reply().code // 100, 5)  # the bad RCPT, answered in its place
            d.expect(250, "2.1.5")
            d.expect(250)  # RSET
            d.expect(250)  # NOOP
            d.expect(221)
            self.assertTrue(d.is_closed())
        m = api_json(sink.http_port, "/api/messages/latest")
        self.assertEqual(m["to"], ["r1@example.com", "r2@example.com"])
        self.assertEqual(m["subject"], "pipelined")
        self.assertEqual(api_count(sink.http_port), 1)

    def test_many_transactions_in_one_write(self):
        sink = start_sink(self)
        n = 50
        batch = b"EHLO many.example\r\n"
        for i in range(n):
            batch += (b"MAIL FROM:<s%d@example.com>\r\nRCPT TO:<r@example.com>\r\nDATA\r\n"
                      b"Subject: m%d\r\n\r\nbody %d\r\n.\r\n" % (i, i, i))
        batch += b"QUIT\r\n"
        with Dialogue(sink.smtp_port) as d:
            d.expect(220)
            d.send(batch)
            d.expect(250)
            for i in range(n):
                d.expect(250)
                d.expect(250)
                d.expect(354)
                self.assertIn("queued as %d" % (i + 1), d.expect(250).text)
            d.expect(221)
        self.assertEqual(api_count(sink.http_port), n)
        self.assertEqual(api_json(sink.http_port, "/api/messages/1")["subject"], "m0")


@unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
class SwaksTest(unittest.TestCase):
    def test_swaks_plain(self):
        sink = start_sink(self)
        p = run(["swaks", "--server", "127.0.0.1:%d" % sink.smtp_port, "--from", "sw@example.com",
                 "--to", "one@example.com,two@example.com", "--header", "Subject: from swaks",
                 "--body", "swaks body"])
        self.assertEqual(p.returncode, 0, p.stdout.decode(errors="replace"))
        m = api_json(sink.http_port, "/api/messages/latest")
        self.assertEqual(m["from"], "sw@example.com")
        self.assertEqual(m["to"], ["one@example.com", "two@example.com"])
        self.assertEqual(m["subject"], "from swaks")
        self.assertIn(b"swaks body", raw_of(sink))

    def test_swaks_starttls_auth(self):
        sink = start_sink(self, "--tls", "--auth", "any")
        for mech in ("PLAIN", "LOGIN"):
            p = run(["swaks", "--server", "127.0.0.1:%d" % sink.smtp_port, "--tls",
                     "--auth", mech, "--auth-user", "sw-" + mech, "--auth-password", "pw",
                     "--from", "sw@example.com", "--to", "x@example.com"])
            out = p.stdout.decode(errors="replace")
            self.assertEqual(p.returncode, 0, out)
            self.assertIn("235 2.7.0", out)
            m = api_json(sink.http_port, "/api/messages/latest")
            self.assertEqual(m["auth_user"], "sw-" + mech)
            self.assertTrue(m["tls"])

    def test_swaks_sees_injected_failure(self):
        sink = start_sink(self, "--fail", "RCPT:550:100")
        p = run(["swaks", "--server", "127.0.0.1:%d" % sink.smtp_port, "--from", "a@example.com",
                 "--to", "b@example.com"])
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"550 5.1.1", p.stdout)
        self.assertEqual(api_count(sink.http_port), 0)


@unittest.skipUnless(shutil.which("curl"), "curl not installed")
class CurlTest(unittest.TestCase):
    def test_curl_upload(self):
        sink = start_sink(self)
        msg = message(subject="from curl", body="curl body\r\n.dot line\r\n")
        path = temp_file(self.addCleanup, "mail.eml", msg)
        p = run(["curl", "-sS", "--max-time", "30", "smtp://127.0.0.1:%d/curl.example" % sink.smtp_port,
                 "--mail-from", "c@example.com", "--mail-rcpt", "d@example.com",
                 "--mail-rcpt", "e@example.com", "-T", path])
        self.assertEqual(p.returncode, 0, p.stdout)
        m = api_json(sink.http_port, "/api/messages/latest")
        self.assertEqual(m["to"], ["d@example.com", "e@example.com"])
        self.assertEqual(m["helo"], "curl.example")
        self.assertEqual(raw_of(sink), msg)

    def test_curl_smtps(self):
        sink = start_sink(self, smtps=("127.0.0.1:0",))
        path = temp_file(self.addCleanup, "mail.eml", message(subject="curl smtps"))
        p = run(["curl", "-sS", "-k", "--max-time", "30", "smtps://127.0.0.1:%d" % sink.smtps_port,
                 "--mail-from", "c@example.com", "--mail-rcpt", "d@example.com", "-T", path])
        self.assertEqual(p.returncode, 0, p.stdout)
        m = api_json(sink.http_port, "/api/messages/latest")
        self.assertTrue(m["tls"])
        self.assertEqual(m["subject"], "curl smtps")


@unittest.skipUnless(os.access("/usr/sbin/smtp-source", os.X_OK), "Postfix smtp-source not installed")
class SmtpSourceTest(unittest.TestCase):
    def test_smtp_source_200(self):
        sink = start_sink(self, "--quiet")
        p = run(["/usr/sbin/smtp-source", "-s", "5", "-m", "200", "-l", "1024", "-f", "src@example.com",
                 "-t", "dst@example.com", "127.0.0.1:%d" % sink.smtp_port], timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertEqual(api_count(sink.http_port), 200)
        st = api_stats(sink.http_port)
        self.assertEqual(st["messages"], 200)
        self.assertEqual(st["connections"], 200)  # one connection per message by default
        m = api_json(sink.http_port, "/api/messages/latest")
        self.assertEqual(m["from"], "src@example.com")
        self.assertGreaterEqual(m["size"], 1024)

    def test_smtp_source_connection_reuse(self):
        sink = start_sink(self, "--quiet")
        p = run(["/usr/sbin/smtp-source", "-s", "2", "-m", "100", "-N", "-d", "-l", "300",
                 "127.0.0.1:%d" % sink.smtp_port], timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout)
        st = api_stats(sink.http_port)
        self.assertEqual(st["messages"], 100)
        self.assertLessEqual(st["connections"], 2)


@unittest.skipUnless(shutil.which("msmtp"), "msmtp not installed")
class MsmtpTest(unittest.TestCase):
    def msmtp(self, port, args, msg):
        return run(["msmtp", "--file=/dev/null", "--host=127.0.0.1", "--port=%d" % port,
                    "--from=ms@example.com", "--domain=msmtp.example"] + args + ["--", "to@example.com"],
                   input=msg)

    def test_msmtp_plain(self):
        sink = start_sink(self)
        msg = message(subject="from msmtp")
        p = self.msmtp(sink.smtp_port, ["--auth=off", "--tls=off"], msg)
        self.assertEqual(p.returncode, 0, p.stdout)
        m = api_json(sink.http_port, "/api/messages/latest")
        self.assertEqual(m["subject"], "from msmtp")
        self.assertEqual(m["helo"], "msmtp.example")
        self.assertTrue(raw_of(sink).endswith(msg))  # msmtp may add a Date: header

    def test_msmtp_starttls_auth_file(self):
        path = temp_file(self.addCleanup, "users", "dave:hunter2\n")
        sink = start_sink(self, "--tls", "--auth-file", path)
        tls = ["--tls=on", "--tls-starttls=on", "--tls-certcheck=off", "--auth=plain", "--user=dave"]
        p = self.msmtp(sink.smtp_port, tls + ["--passwordeval=echo hunter2"], message(subject="ms tls"))
        self.assertEqual(p.returncode, 0, p.stdout)
        m = api_json(sink.http_port, "/api/messages/latest")
        self.assertEqual(m["auth_user"], "dave")
        self.assertTrue(m["tls"])
        p = self.msmtp(sink.smtp_port, tls + ["--passwordeval=echo wrong"], message(subject="bad"))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"535", p.stdout)
        self.assertEqual(api_count(sink.http_port), 1)


class ProtocolEdgeTest(unittest.TestCase):
    def session(self, sink, ehlo=True):
        d = Dialogue(sink.smtp_port)
        self.addCleanup(d.close)
        d.expect(220)
        if ehlo:
            d.cmd("EHLO edge.example", 250)
        return d

    def test_long_command_line(self):
        """512 octets (RFC 5321 4.5.3.1.4), plus 500 because the sink offers DSN (RFC 3461 5)."""
        limit = 512 + 500
        sink = start_sink(self)
        d = self.session(sink)
        d.cmd("NOOP " + "x" * 1100, 500, "5.5.2")
        d.cmd("MAIL FROM:<a@example.com>", 250)  # still in step
        d.cmd("RCPT TO:<" + "y" * 1020 + "@example.com>", 500, "5.5.2")
        d.cmd("RCPT TO:<b@example.com>", 250)
        # exactly the limit with CRLF is allowed
        line = "NOOP " + "z" * (limit - 2 - 5)
        self.assertEqual(len(line) + 2, limit)
        d.cmd(line, 250)
        d.cmd("NOOP " + "z" * (limit - 2 - 4), 500, "5.5.2")
        d.cmd("QUIT", 221)

    def test_long_line_pipelined(self):
        sink = start_sink(self)
        d = self.session(sink)
        d.send(b"NOOP " + b"x" * 5000 + b"\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<" + b"b" * 1100
               + b"@example.com>\r\nRCPT TO:<c@example.com>\r\n")
        d.expect(500, "5.5.2")
        d.expect(250, "2.1.0")
        d.expect(500, "5.5.2")
        d.expect(250, "2.1.5")

    def test_unknown_command(self):
        sink = start_sink(self)
        d = self.session(sink)
        d.cmd("FROB nicate", 500)
        d.cmd("NOOP", 250)

    def test_sequence_errors(self):
        sink = start_sink(self)
        d = self.session(sink, ehlo=False)
        d.cmd("MAIL FROM:<a@example.com>", 503, "5.5.1")
        d.cmd("EHLO edge.example", 250)
        d.cmd("RCPT TO:<b@example.com>", 503, "5.5.1")
        d.cmd("DATA", 503, "5.5.1")
        d.cmd("MAIL FROM:<a@example.com>", 250)
        d.cmd("MAIL FROM:<a@example.com>", 503, "5.5.1")  # nested
        d.cmd("DATA", 554)  # no recipients
        d.cmd("RCPT TO:<b@example.com>", 250)
        d.cmd("QUIT", 221)

    def test_too_many_errors(self):
        sink = start_sink(self, "--max-errors", "3")
        d = self.session(sink)
        for _ in range(3):
            d.cmd("BOGUS", 500)
        d.cmd("BOGUS", 421, "4.7.0")
        self.assertTrue(d.is_closed())

    def test_unknown_mail_parameter(self):
        sink = start_sink(self)
        d = self.session(sink)
        d.cmd("MAIL FROM:<a@example.com> FOO=BAR", 555, "5.5.4")
        d.cmd("MAIL FROM:<a@example.com> BODY=8BITMIME", 250)
        d.cmd("RCPT TO:<b@example.com> BOGUS", 555, "5.5.4")

    def test_size_parameter_over_limit(self):
        sink = start_sink(self, "--max-size", "10K")
        d = self.session(sink)
        d.cmd("MAIL FROM:<a@example.com> SIZE=10241", 552, "5.3.4")
        d.cmd("MAIL FROM:<a@example.com> SIZE=10240", 250)

    def test_streamed_message_over_limit(self):
        sink = start_sink(self, "--max-size", "10K")
        d = self.session(sink)
        d.cmd("MAIL FROM:<a@example.com>", 250)
        d.cmd("RCPT TO:<b@example.com>", 250)
        d.cmd("DATA", 354)
        line = b"y" * 98 + b"\r\n"
        d.send(b"Subject: big\r\n\r\n")
        for _ in range(200):  # 20 000 octets
            d.send(line)
        self.assertTrue(d.nothing_pending(0.3), "replied before the end of data")
        d.send(b".\r\n")
        d.expect(552, "5.3.4")
        self.assertEqual(api_count(sink.http_port), 0)
        # the session stays usable and a message just under the limit goes through
        d.cmd("MAIL FROM:<a@example.com>", 250)
        d.cmd("RCPT TO:<b@example.com>", 250)
        d.cmd("DATA", 354)
        d.send(b"Subject: fits\r\n\r\n" + line * 90 + b".\r\n")
        d.expect(250)
        self.assertEqual(api_count(sink.http_port), 1)
        self.assertEqual(api_stats(sink.http_port)["messages"], 1)

    def start_data(self, d):
        d.cmd("MAIL FROM:<a@example.com>", 250)
        d.cmd("RCPT TO:<b@example.com>", 250)
        d.cmd("DATA", 354)

    def test_bare_lf_refused(self):
        sink = start_sink(self)
        d = self.session(sink)
        for body in (b"Subject: lf\r\n\r\nline one\nline two\r\n", b"Subject: cr\r\n\r\nline\rtwo\r\n"):
            with self.subTest(body=body):
                self.start_data(d)
                d.send(body + b".\r\n")
                d.expect(550, "5.6.0")
        self.assertEqual(api_count(sink.http_port), 0)
        self.start_data(d)
        d.send(b"Subject: ok\r\n\r\nfine\r\n.\r\n")
        d.expect(250)
        self.assertEqual(api_count(sink.http_port), 1)

    def test_text_line_over_1000_refused(self):
        sink = start_sink(self)
        d = self.session(sink)
        self.start_data(d)
        d.send(b"Subject: long\r\n\r\n" + b"a" * 998 + b"\r\n.\r\n")  # 1000 with CRLF: fine
        d.expect(250)
        self.start_data(d)
        d.send(b"Subject: long\r\n\r\n" + b"a" * 999 + b"\r\n.\r\n")
        d.expect(550, "5.6.0")
        self.assertEqual(api_count(sink.http_port), 1)

    def test_smuggling(self):
        """Bare LF variants of the end marker must not end the data."""
        sink = start_sink(self)
        for fake_end in (b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"):
            with self.subTest(fake_end=fake_end):
                d = self.session(sink)
                self.start_data(d)
                d.send(b"Subject: outer\r\n\r\nouter body" + fake_end +
                       b"MAIL FROM:<smuggler@evil.example>\r\nRCPT TO:<victim@example.com>\r\n"
                       b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")
                r = d.reply()  # exactly one reply to the whole thing: the end of data
                self.assertEqual(r.code, 550, r)
                d.cmd("QUIT", 221)  # next reply is QUIT's: no MAIL/RCPT/DATA replies in between
                self.assertTrue(d.is_closed())
        self.assertEqual(api_count(sink.http_port), 0)
        self.assertEqual(api_count(sink.http_port, "?from=smuggler"), 0)
        self.assertEqual(api_stats(sink.http_port)["messages"], 0)

    def test_starttls_discards_pipelined_command(self):
        sink = start_sink(self, "--tls")
        d = self.session(sink)
        d.send(b"STARTTLS\r\nMAIL FROM:<smuggled@example.com>\r\n")
        d.expect(220)
        self.assertTrue(d.nothing_pending(0.5), "answered a pipelined command in clear text")
        d.starttls_wrap()
        d.cmd("EHLO edge.example", 250)  # the first reply inside TLS belongs to EHLO
        d.cmd("RCPT TO:<b@example.com>", 503)  # the smuggled MAIL was not acted on
        self.assertTrue(sink.wait_log(r"discarding \d+ octets pipelined after STARTTLS"))

    def test_starttls_resets_state(self):
        sink = start_sink(self, "--tls")
        d = self.session(sink)
        d.cmd("MAIL FROM:<a@example.com>", 250)
        d.cmd("STARTTLS", 220)
        d.starttls_wrap()
        d.cmd("MAIL FROM:<a@example.com>", 503)  # EHLO must be sent again
        d.cmd("EHLO again.example", 250)
        d.cmd("STARTTLS", 503)
        d.cmd("MAIL FROM:<a@example.com>", 250)  # no transaction left from before TLS

    def test_sigterm_421(self):
        sink = start_sink(self, "--tls")
        d = self.session(sink)
        d.cmd("MAIL FROM:<a@example.com>", 250)
        t = self.session(sink)  # and one inside TLS
        t.cmd("STARTTLS", 220)
        t.starttls_wrap()
        t.cmd("EHLO tls.example", 250)
        sink.signal(signal.SIGTERM)
        for s in (d, t):
            s.expect(421, "4.3.2")
            self.assertTrue(s.is_closed())
        self.assertEqual(sink.proc.wait(20), 0)
        self.assertTrue(sink.wait_log(r"signal 15: shutting down"))

    def test_sigint_421_during_data(self):
        sink = start_sink(self)
        d = self.session(sink)
        self.start_data(d)
        d.send(b"Subject: interrupted\r\n\r\nhalf")
        self.assertTrue(d.nothing_pending(0.2))
        sink.signal(signal.SIGINT)
        d.expect(421, "4.3.2")
        self.assertTrue(d.is_closed())
        self.assertEqual(sink.proc.wait(20), 0)
        self.assertTrue(sink.wait_log(r"signal 2: shutting down"))
        self.assertTrue(sink.wait_log(r"stopped: 1 connections, 0 messages received"))

    @unittest.skipUnless(have_ipv6_loopback(), "no IPv6 on loopback")
    def test_ipv6(self):
        sink = start_sink(self, smtp=("[::1]:0",), http="[::1]:0")
        self.assertEqual(sink.listeners["smtp"][0][0], "::1")
        r = send_raw(sink.smtp_port, "v6@example.com", ["r@example.com"], message(subject="v6"),
                     host="::1")
        self.assertEqual(r.code, 250)
        m = http_get(sink.http_port, "/api/messages/latest", host="::1").json
        self.assertEqual(m["subject"], "v6")
        self.assertIn("::1", m["peer"])

    def test_disconnect_in_data(self):
        sink = start_sink(self)
        for tail in (b"half a line", b"line\r\n", b"line\r\n.", b"line\r\n.\r"):
            with self.subTest(tail=tail):
                d = self.session(sink)
                self.start_data(d)
                d.send(b"Subject: cut\r\n\r\n" + tail)
                d.sock.shutdown(socket.SHUT_WR)
                self.assertTrue(d.is_closed())  # the sink closes its end too
                d.close()
        r = send_raw(sink.smtp_port, "a@example.com", ["b@example.com"], message(subject="whole"))
        self.assertEqual(r.code, 250)
        st = api_stats(sink.http_port)
        self.assertEqual(st["messages"], 1)
        self.assertEqual(api_count(sink.http_port, "?subject=cut"), 0)
        self.assertEqual(api_json(sink.http_port, "/api/messages/latest")["subject"], "whole")

    def test_idle_timeout(self):
        sink = start_sink(self, "--timeout", "1")
        d = self.session(sink)
        t0 = time.monotonic()
        r = d.reply()  # waits (up to the Dialogue's generous I/O timeout)
        self.assertEqual((r.code, r.enh), (421, "4.4.2"), r)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        self.assertTrue(d.is_closed())

    def test_max_rcpts(self):
        sink = start_sink(self, "--max-rcpts", "2")
        d = self.session(sink)
        d.cmd("MAIL FROM:<a@example.com>", 250)
        d.cmd("RCPT TO:<r1@example.com>", 250)
        d.cmd("RCPT TO:<r2@example.com>", 250)
        d.cmd("RCPT TO:<r3@example.com>", 452, "4.5.3")
        d.cmd("DATA", 354)
        d.send(b"Subject: two\r\n\r\nx\r\n.\r\n")
        d.expect(250)
        self.assertEqual(api_json(sink.http_port, "/api/messages/latest")["to"],
                         ["r1@example.com", "r2@example.com"])

    def test_size_boundary_counts_unstuffed_octets(self):
        sink = start_sink(self, "--max-size", "1K")
        hdr = b"Subject: b\r\n\r\n"
        for n, code in ((1024, 250), (1025, 552)):
            with self.subTest(size=n):
                # dot lines are sent stuffed (more octets on the wire) but count once
                raw = hdr + b".\r\n" * ((n - len(hdr) - 10) // 3)
                raw += b"y" * (n - len(raw) - 2) + b"\r\n"
                self.assertEqual(len(raw), n)
                self.assertEqual(send_raw(sink.smtp_port, "a@example.com", ["b@example.com"], raw).code, code)
        self.assertEqual(api_json(sink.http_port, "/api/messages/latest")["size"], 1024)

    def test_data_in_small_pieces(self):
        """Dot-unstuffing and the end marker work whatever the TCP segmentation."""
        sink = start_sink(self)
        rnd = random.Random(5321)
        parts = [b".", b"..", b"x", b"\r\n", b"\r\n.", b"ab", b" "]
        raw = b"Subject: pieces\r\n\r\n" + b"".join(rnd.choice(parts) for _ in range(3000))
        raw = raw.replace(b"\r\n", b"\0").replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"\r\n")
        raw += b"\r\n"
        wire = dot_stuff(raw) + b".\r\n"
        d = self.session(sink)
        d.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.start_data(d)
        i = 0
        while i < len(wire):
            n = rnd.randint(1, 7)
            d.send(wire[i:i + n])
            i += n
            if rnd.random() < 0.02:
                time.sleep(0.002)
        d.expect(250)
        self.assertEqual(raw_of(sink), raw)

    def test_replies_when_client_reads_late(self):
        """Many pipelined commands while the client does not read: all answered, in order."""
        sink = start_sink(self)
        d = self.session(sink)
        n = 50000
        got = []

        def reader():
            try:
                while len(got) < n + 1:
                    got.append(d.reply().code)
            except Exception as e:  # noqa: BLE001 - reported by the assertions below
                got.append(repr(e))

        th = threading.Thread(target=reader)
        th.start()
        time.sleep(0.2)
        d.send(b"NOOP\r\n" * n + b"QUIT\r\n")
        th.join(120)
        self.assertEqual(len(got), n + 1)
        self.assertEqual(got[:n], [250] * n)
        self.assertEqual(got[n], 221)

    def test_rset_noop_vrfy_help(self):
        sink = start_sink(self)
        d = self.session(sink, ehlo=False)
        d.cmd("HELO old.example", 250)
        d.cmd("MAIL FROM:<a@example.com> SIZE=10", 555)  # HELO offers no extensions
        d.cmd("MAIL FROM:<>", 250)
        d.cmd("RSET", 250)
        d.cmd("RCPT TO:<b@example.com>", 503)
        d.cmd("VRFY someone", 252)
        d.cmd("HELP", 214)
        d.cmd("NOOP", 250)
        d.cmd("QUIT", 221)
        self.assertTrue(d.is_closed())


if __name__ == "__main__":
    unittest.main()
