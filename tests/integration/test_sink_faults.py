"""Fault injection of `tern sink`: cuts, injected failures, delays, and the
reproducibility of the seeded decisions.

Rates are checked against binomial bounds of 6 standard deviations (a false
failure about once in 10^9 runs), never against exact counts, except where the
seed makes the sequence fixed."""

import math
import re
import time
import unittest

from ternlib import (ConnectionClosed, Dialogue, api_count, api_json, api_stats, http_put,
                     message, send_raw, start_sink)

SIGMAS = 6


def binomial_bounds(n, percent):
    p = percent / 100.0
    mean = n * p
    spread = SIGMAS * math.sqrt(n * p * (1 - p))
    return mean - spread, mean + spread


def seed_of(sink):
    m = re.search(r"seed=(\d+)", sink.log)
    return m.group(1) if m else "?"


def mail_outcome(port, mail_from="a@example.com"):
    """Connect, EHLO, MAIL: 'ok' (250), 'clean' (closed, no reply) or the reply code."""
    with Dialogue(port) as d:
        d.expect(220)
        d.cmd("EHLO fault.example", 250)
        d.send(("MAIL FROM:<%s>\r\n" % mail_from).encode())
        try:
            r = d.reply()
        except ConnectionClosed:
            return "clean", None
        if r.code == 250:
            d.cmd("QUIT", 221)
            return "ok", r
        if r.code == 421:
            if not d.is_closed():
                raise AssertionError("421 without a close: %r" % r)
        return r.code, r


class CloseTest(unittest.TestCase):
    def test_close_first(self):
        sink = start_sink(self, "--close-first", "4")
        port = sink.smtp_port
        # a connection that never sends MAIL is not one of the first four
        with Dialogue(port) as d:
            d.expect(220)
            d.cmd("EHLO x", 250)
            d.cmd("QUIT", 221)
        outcomes = []
        for i in range(4):
            kind, r = mail_outcome(port)
            outcomes.append(kind)
            if kind == 421:
                self.assertEqual(r.enh, "4.4.2")
                self.assertIn("timeout exceeded", r.text)
        self.assertEqual(outcomes, [421, "clean", 421, "clean"])
        self.assertEqual(send_raw(port, "a@example.com", ["b@example.com"], message()).code, 250)
        self.assertEqual(mail_outcome(port)[0], "ok")
        self.assertEqual(api_count(sink.http_port), 1)
        f = api_stats(sink.http_port)["faults"]
        self.assertEqual((f["close_first"], f["cut_clean"], f["cut_421"], f["total"]), (4, 2, 2, 4))
        self.assertEqual(sink.count_log(r"fault session=\d+ point=MAIL kind=close$", 2), 2)
        self.assertEqual(sink.count_log(r"fault session=\d+ point=MAIL kind=close-421 code=421$", 2), 2)

    def test_close_chance_rate(self):
        n, percent = 400, 35
        sink = start_sink(self, "--quiet", "--close-chance", str(percent))
        clean = c421 = ok = 0
        for _ in range(n):
            kind, r = mail_outcome(sink.smtp_port)
            if kind == "clean":
                clean += 1
            elif kind == 421:
                self.assertEqual(r.enh, "4.4.2")
                c421 += 1
            else:
                self.assertEqual(kind, "ok")
                ok += 1
        cuts = clean + c421
        lo, hi = binomial_bounds(n, percent)
        self.assertTrue(lo <= cuts <= hi, "%d cuts of %d, expected %.0f..%.0f (seed %s)"
                        % (cuts, n, lo, hi, seed_of(sink)))
        self.assertLessEqual(abs(clean - c421), 1)  # alternately clean and 421
        st = api_stats(sink.http_port)
        f = st["faults"]
        self.assertEqual(f["close_chance"], cuts)
        self.assertEqual((f["cut_clean"], f["cut_421"]), (clean, c421))
        self.assertEqual(f["total"], cuts)
        self.assertEqual(st["connections"], n)
        self.assertEqual(sink.count_log(r"point=MAIL kind=close", cuts), cuts)

    def test_close_chance_at_runtime(self):
        sink = start_sink(self, "--quiet")
        self.assertEqual(mail_outcome(sink.smtp_port)[0], "ok")
        r = http_put(sink.http_port, "/api/faults", {"close_chance": 100})
        self.assertEqual(r.status, 200, r)
        self.assertEqual([mail_outcome(sink.smtp_port)[0] for _ in range(4)], [421, "clean", 421, "clean"])
        http_put(sink.http_port, "/api/faults", {"close_chance": 0})
        self.assertEqual(mail_outcome(sink.smtp_port)[0], "ok")


class FailTest(unittest.TestCase):
    def test_rcpt_rate(self):
        n, percent = 400, 30
        sink = start_sink(self, "--quiet", "--fail", "RCPT:451:%d" % percent)
        failed = 0
        for s in range(4):
            with Dialogue(sink.smtp_port) as d:
                d.expect(220)
                d.cmd("EHLO x", 250)
                d.cmd("MAIL FROM:<a@example.com>", 250)
                accepted = 0
                for i in range(n // 4):
                    r = d.cmd("RCPT TO:<r%d@example.com>" % i)
                    if r.code == 451:
                        self.assertEqual(r.enh, "4.3.0", r)
                        self.assertIn("Injected failure", r.text)
                        failed += 1
                    else:
                        self.assertEqual(r.code, 250, r)
                        accepted += 1
                d.cmd("DATA", 354)
                d.send(b"Subject: rcpt rate\r\n\r\nx\r\n.\r\n")
                d.expect(250)
                m = api_json(sink.http_port, "/api/messages/latest")
                self.assertEqual(len(m["to"]), accepted)  # only accepted recipients are kept
        lo, hi = binomial_bounds(n, percent)
        self.assertTrue(lo <= failed <= hi, "%d failures of %d, expected %.0f..%.0f (seed %s)"
                        % (failed, n, lo, hi, seed_of(sink)))
        f = api_stats(sink.http_port)["faults"]
        self.assertEqual(f["fail"], {"RCPT": failed})
        self.assertEqual(f["total"], failed)
        self.assertEqual(sink.count_log(r"point=RCPT kind=fail code=451$", failed), failed)

    def session(self, sink):
        d = Dialogue(sink.smtp_port)
        self.addCleanup(d.close)
        return d

    def test_mail_550(self):
        sink = start_sink(self, "--fail", "MAIL:550:100")
        d = self.session(sink)
        d.expect(220)
        d.cmd("EHLO x", 250)
        d.cmd("MAIL FROM:<a@example.com>", 550, "5.7.1")
        d.cmd("RCPT TO:<b@example.com>", 503)  # no transaction was opened
        d.cmd("MAIL FROM:<a@example.com>", 550, "5.7.1")
        d.cmd("QUIT", 221)
        self.assertEqual(api_stats(sink.http_port)["faults"]["fail"], {"MAIL": 2})

    def test_data_452(self):
        sink = start_sink(self, "--fail", "DATA:452:100")
        d = self.session(sink)
        d.expect(220)
        d.cmd("EHLO x", 250)
        d.cmd("MAIL FROM:<a@example.com>", 250)
        d.cmd("RCPT TO:<b@example.com>", 250)
        d.cmd("DATA", 452, "4.3.1")
        d.cmd("NOOP", 250)  # not in DATA mode: a command is a command
        d.cmd("QUIT", 221)
        self.assertEqual(api_count(sink.http_port), 0)

    def test_eod_554_not_stored(self):
        sink = start_sink(self, "--fail", "EOD:554:100")
        r = send_raw(sink.smtp_port, "a@example.com", ["b@example.com"], message(subject="refused"))
        self.assertEqual((r.code, r.enh), (554, "5.3.0"), r)
        self.assertEqual(api_count(sink.http_port), 0)
        st = api_stats(sink.http_port)
        self.assertEqual((st["messages"], st["stored"], st["refused_at_end_of_data"]), (0, 0, 1))
        self.assertEqual(st["faults"]["fail"], {"EOD": 1})
        self.assertTrue(sink.wait_log(r"point=EOD kind=fail code=554"))
        self.assertNotIn("message id=", sink.log)

    def test_connect_421(self):
        sink = start_sink(self, "--fail", "CONNECT:421:100")
        for _ in range(2):
            d = self.session(sink)
            r = d.expect(421, "4.3.2")
            self.assertIn("Service not available", r.text)
            self.assertTrue(d.is_closed())
        st = api_stats(sink.http_port)
        self.assertEqual(st["connections"], 2)
        self.assertEqual(st["faults"]["fail"], {"CONNECT": 2})

    def test_connect_554(self):
        sink = start_sink(self, "--fail", "CONNECT:554:100")
        d = self.session(sink)
        d.expect(554)
        self.assertTrue(d.is_closed())

    def test_ehlo_421(self):
        sink = start_sink(self, "--fail", "EHLO:421:100")
        for verb in ("EHLO", "HELO"):
            d = self.session(sink)
            d.expect(220)
            d.cmd(verb + " x", 421, "4.3.2")
            self.assertTrue(d.is_closed())
        self.assertEqual(api_stats(sink.http_port)["faults"]["fail"], {"EHLO": 2})

    def test_auth_454(self):
        sink = start_sink(self, "--auth", "any", "--auth-insecure", "--fail", "AUTH:454:100")
        d = self.session(sink)
        d.expect(220)
        d.cmd("EHLO x", 250)
        d.cmd("AUTH PLAIN AHVzZXIAcGFzcw==", 454, "4.7.0")
        d.cmd("AUTH LOGIN", 334)
        d.cmd("dXNlcg==", 334)
        d.cmd("cGFzcw==", 454, "4.7.0")
        d.cmd("MAIL FROM:<a@example.com>", 250)  # the session goes on, unauthenticated
        d.cmd("QUIT", 221)
        self.assertEqual(api_stats(sink.http_port)["faults"]["fail"], {"AUTH": 2})

    def test_several_rules(self):
        sink = start_sink(self, "--fail", "RCPT:450:0", "--fail", "RCPT:550:100", "--fail", "MAIL:451:0")
        d = self.session(sink)
        d.expect(220)
        d.cmd("EHLO x", 250)
        d.cmd("MAIL FROM:<a@example.com>", 250)
        d.cmd("RCPT TO:<b@example.com>", 550, "5.1.1")
        d.cmd("DATA", 554)  # no valid recipients


class DelayTest(unittest.TestCase):
    def test_delay_mail(self):
        sink = start_sink(self, "--delay", "MAIL:300")
        with Dialogue(sink.smtp_port) as d:
            d.expect(220)
            d.cmd("EHLO x", 250)
            for _ in range(2):
                t0 = time.monotonic()
                d.cmd("MAIL FROM:<a@example.com>", 250)
                self.assertGreaterEqual(time.monotonic() - t0, 0.295)
                d.cmd("RSET", 250)
            # pipelined: the delayed reply still comes first, in order
            t0 = time.monotonic()
            d.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nNOOP\r\n")
            d.expect(250, "2.1.0")
            self.assertGreaterEqual(time.monotonic() - t0, 0.295)
            d.expect(250, "2.1.5")
            d.expect(250, "2.0.0")
        self.assertEqual(api_stats(sink.http_port)["faults"]["delay"], {"MAIL": 3})

    def test_delay_with_failure(self):
        sink = start_sink(self, "--delay", "RCPT:200", "--fail", "RCPT:451:100")
        with Dialogue(sink.smtp_port) as d:
            d.expect(220)
            d.cmd("EHLO x", 250)
            d.cmd("MAIL FROM:<a@example.com>", 250)
            t0 = time.monotonic()
            d.cmd("RCPT TO:<b@example.com>", 451)
            self.assertGreaterEqual(time.monotonic() - t0, 0.195)


def seeded_run(test, seed, sessions=80):
    """One fixed client sequence against a fresh sink; (outcomes, fault log lines)."""
    sink = start_sink(test, "--quiet", "--seed", str(seed), "--close-chance", "20",
                      "--fail", "EHLO:421:4", "--fail", "RCPT:451:25", "--fail", "DATA:452:15",
                      "--fail", "EOD:554:10")
    out = []
    for i in range(sessions):
        steps = []
        with Dialogue(sink.smtp_port) as d:
            try:
                d.expect(220)
                for line in ("EHLO seed.example", "MAIL FROM:<s%d@example.com>" % i,
                             "RCPT TO:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"):
                    steps.append(d.cmd(line).code)
                    if steps[-1] == 421:
                        break
                if steps[-1] == 354:
                    d.send(b"Subject: seeded\r\n\r\nbody\r\n.\r\n")
                    steps.append(d.reply().code)
                    d.cmd("QUIT", 221)
            except ConnectionClosed:
                steps.append("closed")
        out.append(tuple(steps))
    stats = api_stats(sink.http_port)["faults"]
    pattern = r"(fault session=\d+ point=\w+ kind=\S+(?: code=\d+)?)$"
    test.assertEqual(sink.count_log(pattern, stats["total"]), stats["total"])  # one line per fault
    faults = re.findall(pattern, sink.log, re.M)
    return out, faults, stats


class SeedTest(unittest.TestCase):
    def test_same_seed_same_faults(self):
        a, fa, sa = seeded_run(self, 4242)
        b, fb, sb = seeded_run(self, 4242)
        self.assertEqual(a, b)
        self.assertEqual(fa, fb)
        self.assertEqual(sa, sb)
        # the run really injected faults of every configured kind
        kinds = {s[-1] for s in a}
        self.assertIn("closed", kinds)
        self.assertTrue({421, 451, 452, 554} <= {c for s in a for c in s}, a)
        self.assertGreater(sa["total"], 10)
        c, fc, _ = seeded_run(self, 4243)
        self.assertNotEqual(a, c)
        self.assertNotEqual(fa, fc)


if __name__ == "__main__":
    unittest.main()
