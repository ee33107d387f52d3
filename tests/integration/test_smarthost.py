"""`tern serve` relaying everything through a smarthost with STARTTLS and AUTH.

The smarthost is a `tern sink` with TLS and an AUTH users file: it records
whether each message came over TLS and which user authenticated.  A wrong
smarthost password is a permanent failure: one DSN to the sender.
"""

import email
import email.policy
import os
import smtplib
import ssl
import unittest

from servelib import ServeEnv, wait_until
from ternlib import Sink, api_json

PASSWORD = "s3cret"


def submit(srv, user, frm, rcpts, data):
    host, port = srv.listeners["submission"][0]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(host, port, timeout=20) as s:
        s.starttls(context=ctx)
        s.login(user, PASSWORD)
        s.sendmail(frm, rcpts, data)


class SmarthostTest(unittest.TestCase):
    def start(self, relay_password):
        users = os.path.join(self.env.dir, "sink-users")
        with open(users, "w") as f:
            f.write("relayuser:right-password\n")
        self.sink = Sink(["--tls", "--auth-file", users, "--quiet"])
        self.addCleanup(self.sink.check_clean_exit)
        pw = os.path.join(self.env.dir, "relay-password")
        with open(pw, "w") as f:
            f.write(relay_password + "\n")
        os.chmod(pw, 0o600)  # a secret others can read is refused
        self.env.conf["remote"] = {"smarthost": "127.0.0.1:%d" % self.sink.smtp_port,
                                   "smarthost_user": "relayuser",
                                   "smarthost_password_file": pw,
                                   "smarthost_tls": "may"}
        self.env.write_conf()
        self.env.add_user("alice@example.test", PASSWORD)
        return self.env.start()

    def setUp(self):
        self.env = ServeEnv(self)

    def test_relays_through_the_smarthost_with_tls_and_auth(self):
        srv = self.start("right-password")
        submit(srv, "alice@example.test", "alice@example.test",
               ["bob@far.test", "carol@other.test"],
               b"Subject: via the smarthost\r\n\r\nhello\r\n")
        ok = wait_until(lambda: api_json(self.sink.http_port, "/api/count")["count"] >= 2, 30)
        self.assertTrue(ok, srv.log[-3000:])
        msgs = api_json(self.sink.http_port, "/api/messages?limit=100")["messages"]
        self.assertEqual(sorted(r for m in msgs for r in m["to"]), ["bob@far.test", "carol@other.test"])
        for m in msgs:
            self.assertTrue(m["tls"])
            self.assertEqual(m["auth_user"], "relayuser")
            self.assertEqual(m["from"], "alice@example.test")
            self.assertEqual(m["subject"], "via the smarthost")
        self.assertEqual(len(msgs), 2)  # one delivery per destination domain

    def test_wrong_smarthost_password_bounces(self):
        srv = self.start("wrong-password")
        submit(srv, "alice@example.test", "alice@example.test", ["bob@far.test"],
               b"Subject: will bounce\r\n\r\nhello\r\n")
        dsns = self.env.wait_maildir("alice@example.test", 1, timeout=30)
        self.assertEqual(len(dsns), 1, srv.log[-3000:])
        d = email.message_from_bytes(dsns[0].raw, policy=email.policy.default)
        self.assertEqual(d.get_content_type(), "multipart/report")
        text = d.as_string()
        self.assertIn("Action: failed", text)
        self.assertIn("535", text)
        self.assertEqual(api_json(self.sink.http_port, "/api/count")["count"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
