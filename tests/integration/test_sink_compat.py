"""`tern sink` as a drop-in for Boulder's test/mail-test-srv (issue 12, part 3).

mail-test-srv (letsencrypt/boulder, test/mail-test-srv/{main,http}.go, removed
in boulder#8304) keeps one record per recipient: a message to 2 recipients
counts 2 on /count, and /mail/N is the N-th record, oldest first, printed as
"FROM <sender>\\nTO <one recipient>\\n\\n<the DATA lines as sent, final
'.\\r\\n' included>\\n".  Filters to= and from= compare whole values,
case-sensitively; errors have an empty body.  `--compat mail-test-srv` does
the same, and its Go flags (-closeFirst, -smtp, -http, -cert, -key, as
Boulder's startservers.py passed them: `--closeFirst 5 --cert F --key F`)
imply it.  Without either, tern's own behaviour (one record per message) is
unchanged.

There is no Go toolchain here, so Boulder's Go code cannot run: its requests
are replayed exactly with http.client (v2_integration.py's
`requests.post("http://localhost:9381/clear", data='')` and
`requests.get(".../count?to=" + addr)`, and the cases of http_test.go).
"""

import os
import shutil
import smtplib
import ssl
import subprocess
import unittest

import ternlib
from ternlib import (TERN, Dialogue, api_json, free_port, http_get,
                     http_request, message, run, send_raw, start_sink, temp_dir)


class GoSink(ternlib.Sink):
    """A sink started with exactly the given arguments (no --smtp/--http added)."""

    def __init__(self, args):
        ternlib.Daemon.__init__(self, [TERN, "sink"] + list(args))


def start_go_sink(test, *args):
    sink = GoSink(args)
    test.addCleanup(sink.check_clean_exit)
    return sink


def send(port, frm, rcpts, data, tls=False):
    """One transaction with smtplib (implicit TLS if tls)."""
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=ternlib.IO_TIMEOUT)
    else:
        c = smtplib.SMTP("127.0.0.1", port, timeout=ternlib.IO_TIMEOUT)
    with c:
        c.sendmail(frm, rcpts, data)


def boulder_clear(port):
    # requests.post(url, data='') sends a POST with Content-Length: 0
    r = http_request(port, "POST", "/clear", body=b"", headers={"Content-Length": "0"})
    return r.status


def boulder_count(port, query=""):
    r = http_get(port, "/count" + query)
    assert r.status == 200, r
    return int(r.text)


class CompatModeTest(unittest.TestCase):
    def setUp(self):
        self.sink = start_sink(self, "--compat", "mail-test-srv")
        self.http = self.sink.http_port
        self.smtp = self.sink.smtp_port

    def test_two_recipients_count_two(self):
        data = message(subject="two", frm="a@example.com", to="p@example.com")
        self.assertEqual(send_raw(self.smtp, "a@example.com", ["p@example.com", "q@example.com"],
                                  data).code, 250)
        self.assertEqual(boulder_count(self.http), 2)
        self.assertEqual(boulder_count(self.http, "?to=p@example.com"), 1)
        self.assertEqual(boulder_count(self.http, "?to=q@example.com"), 1)
        self.assertEqual(boulder_count(self.http, "?from=a@example.com"), 2)
        self.assertEqual(boulder_count(self.http, "?to=P@example.com"), 0)  # case-sensitive
        self.assertEqual(boulder_count(self.http, "?to=p@example"), 0)  # whole value
        self.assertEqual(boulder_count(self.http, "?to="), 2)  # empty: no filter
        self.assertEqual(boulder_count(self.http, "?subject=x&limit=1"), 2)  # ignored, as in Go
        # the JSON API still has one message with both recipients
        j = api_json(self.http, "/api/messages")
        self.assertEqual((j["total"], j["messages"][0]["to"]), (1, ["p@example.com", "q@example.com"]))

    def test_mail_n_is_the_per_recipient_record(self):
        body = "Line one.\r\n.starts with a dot\r\n..two dots\r\nend\r\n"
        data = message(subject="rec", frm="a@example.com", to="p@example.com", body=body)
        send(self.smtp, "a@example.com", ["p@example.com", "q@example.com"], data)
        data2 = message(subject="rec2", frm="b@example.com", to="p@example.com")
        send(self.smtp, "b@example.com", ["p@example.com"], data2)
        # what mail-test-srv stored: the DATA lines as they came (dot-stuffed), up to
        # and including the final ".\r\n"; printMail adds "\n"
        sent = ternlib.dot_stuff(data) + b".\r\n"
        sent2 = ternlib.dot_stuff(data2) + b".\r\n"
        self.assertIn(b"\r\n..starts with a dot\r\n...two dots\r\n", sent)
        want = [b"FROM a@example.com\nTO p@example.com\n\n" + sent + b"\n",
                b"FROM a@example.com\nTO q@example.com\n\n" + sent + b"\n",
                b"FROM b@example.com\nTO p@example.com\n\n" + sent2 + b"\n"]
        for n, w in enumerate(want):
            r = http_get(self.http, "/mail/%d" % n)
            self.assertEqual((r.status, r.body), (200, w))
            self.assertTrue(r.headers["content-type"].startswith("text/plain"))
        self.assertEqual(http_get(self.http, "/mail/1?to=p@example.com").body, want[2])
        self.assertEqual(http_get(self.http, "/mail/0?from=b@example.com").body, want[2])
        self.assertEqual(http_get(self.http, "/mail/0?to=q@example.com&from=a@example.com").body,
                         want[1])
        self.assertEqual(http_get(self.http, "/mail/1/").body, want[1])  # strings.Trim(N, "/")
        self.assertEqual(http_get(self.http, "/mail/+2").body, want[2])  # strconv.Atoi
        for path, status in (("/mail/3", 404), ("/mail/1?to=q@example.com", 404), ("/mail/x", 400),
                             ("/mail/-1", 404), ("/mail/", 400)):
            r = http_get(self.http, path)
            self.assertEqual((r.status, r.body), (status, b""), path)

    def test_http_test_go_cases_and_clear(self):
        # http_test.go TestHTTPCount: records (a,b) (a,b) (a,c) (c,a) (c,b)
        for frm, to in (("a", "b"), ("a", "b"), ("a", "c"), ("c", "a"), ("c", "b")):
            send(self.smtp, frm + "@example.com", [to + "@example.com"], message(subject=frm + to))
        self.assertEqual(boulder_count(self.http), 5)
        self.assertEqual(boulder_count(self.http, "?to=b@example.com"), 3)
        self.assertEqual(boulder_count(self.http, "?to=c@example.com"), 1)
        # TestHTTPClear: GET is 405 and clears nothing; POST clears
        self.assertEqual(http_get(self.http, "/clear").status, 405)
        self.assertEqual(boulder_count(self.http), 5)
        self.assertEqual(boulder_clear(self.http), 200)
        self.assertEqual(boulder_count(self.http), 0)
        self.assertEqual(http_get(self.http, "/mail/0").status, 404)


class DefaultModeUnchangedTest(unittest.TestCase):
    def test_tern_counts_messages(self):
        for args in ((), ("--compat", "tern")):
            sink = start_sink(self, *args)
            data = message(subject="two", frm="a@example.com", to="p@example.com")
            send(sink.smtp_port, "a@example.com", ["p@example.com", "q@example.com"], data)
            self.assertEqual(boulder_count(sink.http_port), 1)
            self.assertEqual(boulder_count(sink.http_port, "?to=Q@EXAMPLE.COM"), 1)
            r = http_get(sink.http_port, "/mail/0")
            self.assertEqual(r.body, b"FROM a@example.com\nTO p@example.com, q@example.com\n\n"
                             + data + b"\n")
            self.assertEqual(http_get(sink.http_port, "/mail/1").status, 404)
            sink.check_clean_exit()


class GoFlagsTest(unittest.TestCase):
    def test_single_dash_flags(self):
        sink = start_go_sink(self, "-closeFirst", "2", "-smtp", "127.0.0.1:0", "-http=127.0.0.1:0")
        self.assertEqual(api_json(sink.http_port, "/api/faults")["close_first"], 2)
        # the first 2 connections are cut at MAIL in mail-test-srv's order: 421, then a clean close
        with Dialogue(sink.smtp_port) as d:
            d.expect(220)
            d.cmd("EHLO client.test", 250)
            d.cmd("MAIL FROM:<a@example.com>", 421)
            self.assertTrue(d.is_closed())
        with Dialogue(sink.smtp_port) as d:
            d.expect(220)
            d.cmd("EHLO client.test", 250)
            d.send(b"MAIL FROM:<a@example.com>\r\n")
            self.assertTrue(d.is_closed())
        send(sink.smtp_port, "a@example.com", ["p@example.com", "q@example.com"],
             message(subject="third"))
        self.assertEqual(boulder_count(sink.http_port), 2)  # Go flags imply mail-test-srv mode

    def test_boulder_command_line_with_tls(self):
        if not shutil.which("openssl"):
            self.skipTest("no openssl command")
        d = temp_dir(self.addCleanup)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=60)
        # startservers.py: mail-test-srv --closeFirst 5 --cert ... --key ...
        sink = start_go_sink(self, "--closeFirst", "1", "--cert", cert, "--key", key,
                             "-smtp", "127.0.0.1:0", "--httpAddr", "127.0.0.1:0")
        self.assertEqual(sink.listeners["smtp"], [])
        port = sink.smtps_port  # mail-test-srv's SMTP listener is implicit TLS
        with self.assertRaises((smtplib.SMTPServerDisconnected, smtplib.SMTPSenderRefused)):
            send(port, "a@example.com", ["p@example.com"], message(subject="cut"), tls=True)
        # Boulder's mailer: implicit TLS, then AUTH PLAIN as cert-manager@example.com
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=ternlib.IO_TIMEOUT) as c:
            c.ehlo("localhost")
            self.assertIn("PLAIN", c.esmtp_features.get("auth", ""))
            c.login("cert-manager@example.com", "password")
            c.sendmail("a@example.com", ["p@example.com", "q@example.com"], message(subject="ok"))
        self.assertEqual(boulder_count(sink.http_port), 2)
        latest = api_json(sink.http_port, "/api/messages/latest")
        self.assertTrue(latest["tls"])
        self.assertEqual(latest["auth_user"], "cert-manager@example.com")

    def test_compat_tern_overrides(self):
        sink = start_go_sink(self, "-closeChance=0", "-smtp", "127.0.0.1:0", "-http", "127.0.0.1:0",
                             "--compat", "tern")
        send(sink.smtp_port, "a@example.com", ["p@example.com", "q@example.com"], message())
        self.assertEqual(boulder_count(sink.http_port), 1)

    def test_default_ports(self):
        for p in (9380, 9381):
            if ternlib._bind_port("127.0.0.1", p) is None:
                self.skipTest("port %d is busy" % p)
        sink = start_go_sink(self, "-closeFirst", "0")
        self.assertEqual((sink.smtp_port, sink.http_port), (9380, 9381))
        self.assertEqual(boulder_count(9381), 0)

    def test_bad_flags(self):
        cases = [(["-closeFirst", "x"], "-closeFirst x: expected a number of connections"),
                 (["-closeFirst=-1"], "-closeFirst -1: expected a number"),
                 (["-closeChance", "101"], "-closeChance 101: expected a percentage"),
                 (["-closeFrist", "5"], "unknown option '-closeFrist'"),
                 (["-smtp"], "-smtp: needs a value"),
                 (["--compat", "mailhog"], "--compat mailhog: expected 'tern' or 'mail-test-srv'"),
                 (["--closeFirst"], "--closeFirst: needs a value")]
        for args, msg in cases:
            r = run([TERN, "sink"] + args, timeout=30)
            out = r.stdout.decode("utf-8", "replace")
            self.assertEqual(r.returncode, 2, (args, out))
            self.assertIn(msg, out, args)
            self.assertNotIn("listening", out)

    def test_help_lists_them(self):
        r = run([TERN, "sink", "-help"], timeout=30)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out)
        for word in ("--compat MODE", "--store DIR", "-closeFirst", "-smtp ADDR:PORT"):
            self.assertIn(word, out)


if __name__ == "__main__":
    unittest.main()
