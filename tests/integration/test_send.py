"""Integration tests for `tern send` against `tern sink` on loopback.

Every scenario checks, through the sink's HTTP API, which recipients received
how many messages: exactly one each, none missing, no duplicate (except where a
test says how many duplicates a kill can cause).
"""

import collections
import csv
import os
import re
import signal
import subprocess
import sys
import time
import unittest

from ternlib import TERN, Sink, api_json, api_stats, free_port, http_get, http_put, start_sink, temp_dir

SEND_TIMEOUT = 240


class SendCase(unittest.TestCase):
    def setUp(self):
        self.dir = temp_dir(self.addCleanup, "tern-send-")
        self.template = os.path.join(self.dir, "notice.txt")
        with open(self.template, "w") as f:
            f.write("From: Notices <notices@example.org>\n"
                    "To: {{ name }} <{{email}}>\n"
                    "Subject: Hello {{name}}\n"
                    "\n"
                    "Dear {{name}},\n"
                    ".this line starts with a dot\n"
                    "Your code is {{code}}.\n")

    def write_list(self, rows, name="list.csv", header=("email", "name", "code")):
        path = os.path.join(self.dir, name)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            for r in rows:
                w.writerow(r)
        return path

    def people(self, n, domain="example.net"):
        return [("user%d@%s" % (i, domain), "User %d" % i, "C%05d" % i) for i in range(n)]

    def send(self, sink_port, listfile, *extra, timeout=SEND_TIMEOUT, env=None):
        argv = [TERN, "send", "--to", listfile, "--template", self.template,
                "--from", "notices@example.org", "--server", "127.0.0.1:%d" % sink_port,
                "--reconnect-base", "20ms", "--reconnect-max", "500ms", "--timeout", "10s"]
        argv += list(extra)
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, env=env)

    def delivered(self, http_port):
        """Counter of recipient -> messages received."""
        got = api_json(http_port, "/api/messages?limit=10000")
        c = collections.Counter()
        for m in got["messages"]:
            for r in m["to"]:
                c[r] += 1
        return c, got["messages"]

    def assertExactlyOnce(self, http_port, rows):
        c, _ = self.delivered(http_port)
        want = {r[0] for r in rows}
        missing = want - set(c)
        dups = {k: v for k, v in c.items() if v > 1}
        self.assertFalse(missing, "missing: %d e.g. %s" % (len(missing), sorted(missing)[:5]))
        self.assertFalse(dups, "duplicates: %s" % list(dups.items())[:5])
        self.assertEqual(set(c), want)


class TestSendBasics(SendCase):
    def test_renders_and_sends_one_per_row(self):
        sink = start_sink(self, "--quiet")
        rows = self.people(20) + [("Ünïcode@example.net", "Jürgen Ö", "X1")]
        lst = self.write_list(rows)
        p = self.send(sink.smtp_port, lst)
        self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
        self.assertIn("sent 21", p.stdout)
        self.assertExactlyOnce(sink.http_port, rows)
        _, msgs = self.delivered(sink.http_port)
        one = [m for m in msgs if m["to"] == ["user7@example.net"]][0]
        self.assertEqual(one["subject"], "Hello User 7")
        self.assertEqual(one["from"], "notices@example.org")
        raw = http_get(sink.http_port, "/api/messages/%d/raw" % one["id"]).body
        self.assertIn(b"\r\n.this line starts with a dot\r\n", raw)
        self.assertIn(b"Your code is C00007.", raw)
        self.assertRegex(raw.decode(), r"(?m)^Message-I[dD]: <[^@>]+@example\.org>\r$")
        self.assertRegex(raw.decode(), r"(?m)^Date: ")
        self.assertNotRegex(raw.decode(), r"[^\r]\n")  # CRLF only
        # the non-ASCII name went into the header as an RFC 2047 encoded-word
        uni = [m for m in msgs if m["to"][0].startswith("Ü")][0]
        raw = http_get(sink.http_port, "/api/messages/%d/raw" % uni["id"]).body
        self.assertIn(b"=?UTF-8?", raw)

    def test_rerun_skips_sent_and_does_not_connect(self):
        sink = start_sink(self, "--quiet")
        rows = self.people(30)
        lst = self.write_list(rows)
        p = self.send(sink.smtp_port, lst)
        self.assertEqual(p.returncode, 0, p.stderr)
        conns = api_stats(sink.http_port)["connections"]
        p = self.send(sink.smtp_port, lst)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("sent 0", p.stdout)
        self.assertIn("30 already sent", p.stdout)
        self.assertEqual(api_stats(sink.http_port)["connections"], conns,
                         "nothing to send must mean no connection")
        self.assertExactlyOnce(sink.http_port, rows)

    def test_bad_rows_reported_with_line_and_skipped(self):
        sink = start_sink(self, "--quiet")
        lst = os.path.join(self.dir, "bad.csv")
        with open(lst, "w") as f:
            f.write("\ufeffemail,name,code\n"
                    "good1@example.net,\"Smith, Jo\",1\n"
                    "not-an-address,X,2\n"
                    "good2@example.net,Two,\"multi\nline\"\n"
                    "GOOD1@example.net,dup,4\n"
                    "short@example.net,only-two\n"
                    "\n"
                    "good3@example.net,Z,5\n")
        p = self.send(sink.smtp_port, lst)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertRegex(p.stderr, r"bad\.csv:3: .*not-an-address")
        self.assertRegex(p.stderr, r"bad\.csv:6: .*already on line 2")
        self.assertRegex(p.stderr, r"bad\.csv:7: 2 fields")
        c, msgs = self.delivered(sink.http_port)
        self.assertEqual(set(c), {"good1@example.net", "good2@example.net", "good3@example.net"})
        subj = {m["to"][0]: m["subject"] for m in msgs}
        self.assertEqual(subj["good1@example.net"], "Hello Smith, Jo")

    def test_template_errors_name_file_and_line(self):
        sink = start_sink(self, "--quiet")
        lst = self.write_list(self.people(2))
        with open(self.template, "w") as f:
            f.write("Subject: {{nosuch}}\n\nhi\n")
        p = self.send(sink.smtp_port, lst)
        self.assertEqual(p.returncode, 2)
        self.assertRegex(p.stderr, r"notice\.txt:1: .*nosuch")
        # a value with a line break cannot go into a header
        with open(self.template, "w") as f:
            f.write("Subject: {{name}}\n\nhi\n")
        lst = self.write_list([("a@example.net", "evil\r\nBcc: x@y", "1"), ("b@example.net", "ok", "2")])
        p = self.send(sink.smtp_port, lst)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertRegex(p.stderr, r"list\.csv:2: column 'name'")
        c, _ = self.delivered(sink.http_port)
        self.assertEqual(set(c), {"b@example.net"})

    def test_dry_run_renders_without_sending(self):
        sink = start_sink(self, "--quiet")
        lst = self.write_list(self.people(5))
        out = os.path.join(self.dir, "out")
        p = self.send(sink.smtp_port, lst, "--dry-run", out)
        self.assertEqual(p.returncode, 0, p.stderr)
        files = sorted(os.listdir(out))
        self.assertEqual(len(files), 5)
        with open(os.path.join(out, files[0]), "rb") as f:
            self.assertIn(b"Subject: Hello User 0\r\n", f.read())
        self.assertEqual(api_stats(sink.http_port)["connections"], 0)


class TestSendFaults(SendCase):
    def test_close_first_5(self):
        sink = start_sink(self, "--quiet", "--close-first", "5")
        rows = self.people(500)
        p = self.send(sink.smtp_port, self.write_list(rows), "--parallel", "4")
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        self.assertExactlyOnce(sink.http_port, rows)
        self.assertEqual(api_stats(sink.http_port)["faults"]["close_first"], 5)

    def test_close_chance_35(self):
        sink = start_sink(self, "--quiet", "--close-chance", "35", "--seed", "4242")
        rows = self.people(500)
        p = self.send(sink.smtp_port, self.write_list(rows), "--parallel", "4")
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        self.assertExactlyOnce(sink.http_port, rows)
        self.assertGreater(api_stats(sink.http_port)["faults"]["close_chance"], 100)

    def test_421_at_mail(self):
        sink = start_sink(self, "--quiet", "--fail", "MAIL:421:30", "--seed", "7")
        rows = self.people(200)
        p = self.send(sink.smtp_port, self.write_list(rows), "--parallel", "2")
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        self.assertExactlyOnce(sink.http_port, rows)
        self.assertRegex(p.stdout, r"[1-9]\d* 421 replies")

    def test_rcpt_550_recorded_and_reported(self):
        sink = start_sink(self, "--quiet", "--fail", "RCPT:550:20", "--seed", "11")
        rows = self.people(200)
        lst = self.write_list(rows)
        p = self.send(sink.smtp_port, lst)
        self.assertEqual(p.returncode, 1, p.stderr[-3000:])
        c, _ = self.delivered(sink.http_port)
        failed = {r[0] for r in rows} - set(c)
        self.assertEqual(api_stats(sink.http_port)["faults"]["fail"]["RCPT"], len(failed))
        self.assertGreater(len(failed), 10)
        self.assertTrue(all(v == 1 for v in c.values()))
        with open(lst + ".failed.csv") as f:
            rep = list(csv.DictReader(f))
        self.assertEqual({r["email"] for r in rep}, failed)
        self.assertTrue(all("550" in r["detail"] for r in rep))
        self.assertIn("failed permanently %d" % len(failed), p.stdout)
        # permanent failures are not retried by a re-run
        p = self.send(sink.smtp_port, lst)
        self.assertIn("sent 0", p.stdout)

    def test_rcpt_451_retried(self):
        sink = start_sink(self, "--quiet", "--fail", "RCPT:451:30", "--seed", "3")
        rows = self.people(200)
        p = self.send(sink.smtp_port, self.write_list(rows), "--attempts", "12", "--parallel", "2")
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        self.assertExactlyOnce(sink.http_port, rows)
        self.assertGreater(api_stats(sink.http_port)["faults"]["fail"]["RCPT"], 20)

    def test_sink_restarted_mid_run(self):
        port = free_port()
        sink = Sink([], smtp=("127.0.0.1:%d" % port,))  # not --quiet: its log lists what it stored
        rows = self.people(120)
        lst = self.write_list(rows)
        argv = [TERN, "send", "--to", lst, "--template", self.template, "--from",
                "notices@example.org", "--server", "127.0.0.1:%d" % port, "--rate", "40",
                "--reconnect-base", "100ms", "--reconnect-max", "1s", "--timeout", "5s"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and os.kill(proc.pid, signal.SIGKILL))
        deadline = time.monotonic() + 60
        while api_stats(sink.http_port)["messages"] < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        sink.check_clean_exit()
        # everything the first sink stored, up to its very last moment
        c1 = collections.Counter(re.findall(r"message id=\d+ .* first=<([^>]*)>", sink.log))
        time.sleep(3)
        sink2 = Sink(["--quiet"], smtp=("127.0.0.1:%d" % port,))
        self.addCleanup(sink2.check_clean_exit)
        out, err = proc.communicate(timeout=SEND_TIMEOUT)
        self.assertEqual(proc.returncode, 0, err[-3000:])
        c2, _ = self.delivered(sink2.http_port)
        total = c1 + c2
        self.assertGreaterEqual(len(c1), 30)
        self.assertEqual(set(total), {r[0] for r in rows})
        # a message whose 250 was lost with the first sink may arrive twice; nothing else
        self.assertLessEqual(sum(total.values()) - len(rows), 1)
        self.assertGreater(len(c2), 0)
        self.assertRegex(err + out, r"reconnect")

    def test_kill_9_and_resume(self):
        sink = start_sink(self, "--quiet")
        rows = self.people(300)
        lst = self.write_list(rows)
        argv = [TERN, "send", "--to", lst, "--template", self.template, "--from",
                "notices@example.org", "--server", "127.0.0.1:%d" % sink.smtp_port,
                "--parallel", "3", "--rate", "150"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while api_stats(sink.http_port)["messages"] < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        before = api_stats(sink.http_port)["messages"]
        self.assertLess(before, 300, "the run finished before the kill")
        p = self.send(sink.smtp_port, lst, "--parallel", "3")
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        c, _ = self.delivered(sink.http_port)
        self.assertEqual(set(c), {r[0] for r in rows})
        # only messages in flight at the kill (at most one per connection) can be sent twice
        self.assertLessEqual(sum(c.values()) - len(rows), 3)


class TestSendOptions(SendCase):
    def test_transient_left_then_retry_failed(self):
        sink = start_sink(self, "--quiet", "--fail", "RCPT:451:100")
        rows = self.people(10)
        lst = self.write_list(rows)
        p = self.send(sink.smtp_port, lst, "--attempts", "2")
        self.assertEqual(p.returncode, 75, p.stderr[-2000:])  # transient failures remain
        self.assertIn("failed transiently 10", p.stdout)
        # a plain re-run leaves them alone; --retry-failed sends them once the server is well
        p = self.send(sink.smtp_port, lst)
        self.assertIn("10 failed before", p.stdout)
        put = http_put(sink.http_port, "/api/faults", {"fail": []})
        self.assertEqual(put.status, 200)
        p = self.send(sink.smtp_port, lst, "--retry-failed")
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        self.assertExactlyOnce(sink.http_port, rows)

    def test_starttls_and_auth(self):
        users = os.path.join(self.dir, "users")
        with open(users, "w") as f:
            f.write("mailer:s3cret\n")
        sink = start_sink(self, "--quiet", "--tls", "--auth-file", users)
        rows = self.people(5)
        lst = self.write_list(rows)
        env = dict(os.environ, TERN_SMTP_PASSWORD="s3cret")
        p = self.send(sink.smtp_port, lst, "--tls", "--tls-no-verify", "--auth-user", "mailer",
                      env=env)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        _, msgs = self.delivered(sink.http_port)
        self.assertEqual(len(msgs), 5)
        self.assertTrue(all(m["tls"] and m["auth_user"] == "mailer" for m in msgs))
        # the certificate is self-signed: with verification on, nothing is sent
        lst2 = self.write_list(self.people(1, "other.example"), name="l2.csv")
        p = self.send(sink.smtp_port, lst2, "--tls", "--auth-user", "mailer", "--give-up", "1s",
                      "--attempts", "1", env=env)
        self.assertEqual(p.returncode, 75)
        self.assertIn("not verified", p.stderr)
        # a wrong password is a permanent failure
        lst3 = self.write_list(self.people(1, "third.example"), name="l3.csv")
        env["TERN_SMTP_PASSWORD"] = "wrong"
        p = self.send(sink.smtp_port, lst3, "--tls", "--tls-no-verify", "--auth-user", "mailer",
                      env=env)
        self.assertEqual(p.returncode, 1)
        self.assertIn("535", p.stderr)


class TestReminders(SendCase):
    def test_reminders_over_simulated_days(self):
        sink = start_sink(self, "--quiet")
        rows = [("a@example.net", "A", "1", "2027-01-31T00:00:00Z"),
                ("b@example.net", "B", "2", "2027-01-10"),
                ("c@example.net", "C", "3", "2027-03-01")]
        lst = self.write_list(rows, header=("email", "name", "code", "expires"))
        sent = collections.defaultdict(list)

        def day(date):
            before = self.delivered(sink.http_port)[0]
            p = self.send(sink.smtp_port, lst, "--remind", "30d,7d,1d", "--now", date)
            self.assertEqual(p.returncode, 0, p.stderr)
            after = self.delivered(sink.http_port)[0]
            for k in after:
                if after[k] > before.get(k, 0):
                    sent[k].append(date)

        # 2026-12-20: a is 42 days out (nothing), b is 21 days out (30d window)
        day("2026-12-20T09:00:00Z")
        day("2026-12-21T09:00:00Z")  # nothing new: b already had its 30d reminder
        # the cron job missed days; on 2027-01-09 b is 15 hours out: only the 1d reminder
        day("2027-01-02T09:00:00Z")  # a: 29 days out -> 30d; b: 8 days -> nothing new
        day("2027-01-09T09:00:00Z")  # b: 1d (the 7d one is skipped: catch-up sends the latest)
        day("2027-01-25T09:00:00Z")  # a: 6 days out -> 7d
        day("2027-01-26T09:00:00Z")  # nothing
        day("2027-02-01T09:00:00Z")  # a expired: nothing; c: 28 days -> 30d
        self.assertEqual(sent["a@example.net"], ["2027-01-02T09:00:00Z", "2027-01-25T09:00:00Z"])
        self.assertEqual(sent["b@example.net"], ["2026-12-20T09:00:00Z", "2027-01-09T09:00:00Z"])
        self.assertEqual(sent["c@example.net"], ["2027-02-01T09:00:00Z"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
