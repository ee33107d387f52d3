"""`sendmail` and `tern queue` against a running `tern serve` (loopback only).

sendmail commits straight into the spool and wakes the server; tern queue
lists, shows, retries and deletes what is queued.
"""

import json
import os
import signal
import smtplib
import subprocess
import time
import unittest

from servelib import TERN, ServeEnv, wait_until


class SendmailAndQueueTest(unittest.TestCase):
    def setUp(self):
        # remote.test goes to a port where nothing listens: its mail stays queued
        self.env = ServeEnv(self, remote={"routes": "remote.test=[127.0.0.1]:9",
                                          "timeout": "2s"})
        self.env.add_user("alice@example.test", "pw")
        self.env.write_aliases("example.test", "team: alice, bob@remote.test\n")
        self.serve = self.env.start()

    def sendmail(self, args, text, argv0=None):
        argv = [argv0 or TERN] + ([] if argv0 else ["sendmail"]) + ["--config", self.env.conf_path] + args
        return subprocess.run(argv, input=text.encode(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=60)

    def test_sendmail_t_i_f_and_bcc(self):
        p = self.sendmail(["-t", "-f", "cron@example.test"],
                          "To: Alice <alice@example.test>\nBcc: team@example.test\n"
                          "Subject: nightly\n\nall good\n.\nafter the dot\n")
        self.assertEqual(p.returncode, 0, p.stdout)
        msgs = self.env.wait_maildir("alice@example.test", 1)
        m = msgs[0]
        self.assertEqual(m["Subject"], "nightly")
        self.assertEqual(m["Return-Path"], "<cron@example.test>")
        self.assertIsNone(m["Bcc"], "Bcc must be removed")
        self.assertIsNotNone(m["Message-ID"])
        self.assertIsNotNone(m["Date"])
        self.assertIn("tern sendmail", m["Received"])
        self.assertEqual(m.get_payload(), "all good\n")  # a lone '.' ended the input
        # -i: the dot is data
        p = self.sendmail(["-i", "alice@example.test"], "Subject: dots\n\n.\nmore\n")
        self.assertEqual(p.returncode, 0, p.stdout)
        msgs = self.env.wait_maildir("alice@example.test", 2)
        dots = [x for x in msgs if x["Subject"] == "dots"][0]
        self.assertEqual(dots.get_payload(), ".\nmore\n")
        self.assertTrue(dots["From"].endswith("@%s>" % self.env.conf["server"]["hostname"]) or
                        "@" in dots["From"])

    def test_sendmail_as_argv0_and_errors(self):
        link = self.env.path("sendmail")
        os.symlink(TERN, link)
        p = self.sendmail(["alice@example.test"], "hello without headers\n", argv0=link)
        self.assertEqual(p.returncode, 0, p.stdout)
        m = self.env.wait_maildir("alice@example.test", 1)[0]
        self.assertEqual(m.get_payload(), "hello without headers\n")
        p = self.sendmail(["not an address"], "x\n")
        self.assertEqual(p.returncode, 65)
        p = self.sendmail([], "Subject: nobody\n\nx\n")
        self.assertEqual(p.returncode, 64)

    def test_sendmail_cron_call_with_a_bare_name(self):
        # issue 10: this exited 64 ("unknown option -B8BITMIME"), and a bare name 65
        p = self.sendmail(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "alice"],
                          "Subject: Cron <root@mx> true\n\noutput\n")
        self.assertEqual(p.returncode, 0, p.stdout)
        m = self.env.wait_maildir("alice@example.test", 1)[0]
        self.assertEqual(m["Subject"], "Cron <root@mx> true")
        self.assertIn('"CronDaemon" <', m["From"])
        self.assertEqual(m["To"], None)

    def test_queue_list_show_retry_delete(self):
        with smtplib.SMTP("127.0.0.1", self.serve.port("smtp"), timeout=20) as s:
            s.sendmail("someone@example.test", ["team@example.test"],
                       "Subject: for the team\r\n\r\nhi\r\n")
        self.env.wait_maildir("alice@example.test", 1)
        self.serve.wait_log(r"to=<bob@remote.test> via=smtp.*deferred")
        p = self.env.tern("queue", "list")
        self.assertEqual(p.returncode, 0, p.stdout)
        line = p.stdout.decode().strip().splitlines()[0]
        qid = line.split()[0]
        self.assertIn("pending 1, sent 1, failed 0", line)
        p = self.env.tern("queue", "--json", "list")
        items = json.loads(p.stdout.decode())
        self.assertEqual([i["id"] for i in items], [qid])
        rcpts = {r["address"]: r["status"] for r in items[0]["recipients"]}
        self.assertEqual(rcpts, {"alice@example.test": "sent", "bob@remote.test": "pending"})
        p = self.env.tern("queue", "show", qid)
        self.assertIn("<bob@remote.test> pending", p.stdout.decode())
        p = self.env.tern("queue", "retry")
        self.assertEqual(p.returncode, 0, p.stdout)
        self.serve.wait_log(r"SIGUSR1")
        p = self.env.tern("queue", "delete", qid)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.serve.signal(signal.SIGUSR1)
        self.serve.wait_log(r"id=%s: removed from the queue by an administrator" % qid)
        p = self.env.tern("queue", "list")
        self.assertIn("the queue is empty", p.stdout.decode())
        p = self.env.tern("queue", "show", qid)
        self.assertEqual(p.returncode, 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
