"""`tern sink --store DIR`: the inbox on disk survives a restart (issue 12, part 6).

Each message is DIR/ID.eml (the message as received) and DIR/ID.json (the
envelope; written last, it commits the pair).  A restart, after SIGTERM or
after SIGKILL, brings back the same ids, envelopes and octets; deletes and
clears remove the files; damaged or foreign files are skipped with a log line
and left alone; the store's limits apply to what is loaded."""

import email
import email.policy
import json
import mailbox
import os
import signal
import unittest

from ternlib import (api_json, api_stats, http_delete, http_get, message, send_raw, start_sink,
                     temp_dir)


def files(d):
    """The message files (not the spares, N.spare.tmp, kept to be written over)."""
    return sorted(f for f in os.listdir(d) if not f.endswith(".tmp"))


class StoreTest(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.join(temp_dir(self.addCleanup), "inbox")

    def start(self, *args):
        return start_sink(self, "--store", self.dir, *args)

    def send(self, sink, subject, rcpts=("p@example.com",), body="Hello.\r\n"):
        raw = message(subject=subject, frm="a@example.com", to=rcpts[0], body=body)
        r = send_raw(sink.smtp_port, "a@example.com", list(rcpts), raw)
        self.assertEqual(r.code, 250, r)
        return raw

    def snapshot(self, sink):
        j = api_json(sink.http_port, "/api/messages")
        out = {}
        for m in j["messages"]:
            raw = http_get(sink.http_port, "/api/messages/%d/raw" % m["id"]).body
            keep = {k: m[k] for k in ("id", "received", "from", "to", "subject", "header_from",
                                      "header_to", "size", "helo", "peer", "auth_user", "tls")}
            out[m["id"]] = (keep, raw)
        return [m["id"] for m in j["messages"]], out

    def restart_keeps_inbox(self, stop):
        sink = self.start()
        self.send(sink, "one")
        self.send(sink, "two", rcpts=("p@example.com", "q@example.com"),
                  body="Caf\u00e9 line\r\n.dot\r\n")
        self.send(sink, "three")
        before = self.snapshot(sink)
        self.assertEqual(before[0], [3, 2, 1])
        self.assertEqual(files(self.dir), ["1.eml", "1.json", "2.eml", "2.json", "3.eml",
                                           "3.json"])
        stop(sink)
        sink2 = self.start()
        self.assertIn("store: 3 messages loaded", sink2.log)
        self.assertEqual(self.snapshot(sink2), before)
        st = api_stats(sink2.http_port)
        self.assertEqual((st["stored"], st["messages"]), (3, 0))
        self.send(sink2, "four")
        self.assertEqual(api_json(sink2.http_port, "/api/messages/latest")["id"], 4)
        return sink2

    def test_restart_after_sigterm(self):
        self.restart_keeps_inbox(lambda s: self.assertEqual(s.stop(), 0))

    def test_restart_after_sigkill(self):
        self.restart_keeps_inbox(lambda s: s.kill())

    def test_delete_and_clear_survive_restart(self):
        sink = self.start()
        for s in ("a", "b", "c"):
            self.send(sink, s)
        self.assertEqual(http_delete(sink.http_port, "/api/messages/2").status, 200)
        self.assertEqual(files(self.dir), ["1.eml", "1.json", "3.eml", "3.json"])
        sink.signal(signal.SIGTERM)
        sink.check_clean_exit()
        sink = self.start()
        self.assertEqual([m["id"] for m in api_json(sink.http_port, "/api/messages")["messages"]],
                         [3, 1])
        self.assertEqual(http_delete(sink.http_port, "/api/messages").status, 200)
        self.assertEqual(files(self.dir), [])
        sink.check_clean_exit()
        sink = self.start()
        self.assertEqual(api_json(sink.http_port, "/api/messages")["total"], 0)

    def test_eml_opens_as_mail(self):
        sink = self.start()
        raw = self.send(sink, "Gr\u00fc\u00dfe",
                        rcpts=("p@example.com", "q@example.com"))
        path = os.path.join(self.dir, "1.eml")
        with open(path, "rb") as f:
            data = f.read()
        self.assertEqual(data, raw)
        with open(path, "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.default)
        self.assertEqual(msg["From"], "a@example.com")
        self.assertEqual(msg["To"], "p@example.com")
        self.assertEqual(msg.get_content().strip(), "Hello.")
        with open(path, "rb") as f:
            mb = mailbox.Message(f)
        self.assertEqual(mb["Message-ID"], msg["Message-ID"])
        with open(os.path.join(self.dir, "1.json")) as f:
            env = json.load(f)
        self.assertEqual((env["id"], env["from"], env["to"]),
                         (1, "a@example.com", ["p@example.com", "q@example.com"]))

    def test_damaged_files_are_skipped(self):
        sink = self.start()
        self.send(sink, "good")
        sink.check_clean_exit()

        def put(name, data):
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(data)

        put("5.json", b"{not json")
        put("6.json", json.dumps({"id": 6, "received_ms": 1, "from": "", "to": []}).encode())
        put("7.json", json.dumps({"id": 99, "received_ms": 1, "from": "", "to": []}).encode())
        put("7.eml", b"Subject: x\r\n\r\nx\r\n")
        put("8.json", json.dumps({"id": 8, "received_ms": 1, "from": "x@y", "to": [3]}).encode())
        put("8.eml", b"Subject: x\r\n\r\nx\r\n")
        put("9.eml", b"Subject: no envelope\r\n\r\n")
        put("notes.txt", b"hello")
        put("10.json.tmp", b"half")
        os.mkdir(os.path.join(self.dir, "11.json"))
        put("12.json", json.dumps({"id": 12, "received_ms": 1700000000000, "from": "",
                                   "to": ["z@example.com"]}).encode())
        put("12.eml", b"Subject: hand made\r\n\r\nok\r\n")
        # a torn write over a spare: the new envelope, then the old one's tail
        put("13.json", json.dumps({"id": 13, "received_ms": 1, "from": "", "to": []}).encode()
            + b'"to":["old@example.com"]}')
        put("13.eml", b"Subject: torn\r\n\r\n")
        sink = self.start()
        self.assertIn("store: 2 messages loaded", sink.log)
        for what in ("message 5 in .*: (damaged|its .eml is missing)", "message 6 in .*: its .eml is missing",
                     "message 7 in .*: damaged", "message 8 in .*: damaged",
                     "message 11 in .*: not a regular file", "message 13 in .*: damaged", ".*/notes.txt: not a tern sink file"):
            self.assertTrue(sink.wait_log("sink warning: store: skipping " + what, 1), what)
        j = api_json(sink.http_port, "/api/messages")
        self.assertEqual([(m["id"], m["subject"]) for m in j["messages"]],
                         [(12, "hand made"), (1, "good")])
        self.assertNotIn("10.json.tmp", files(self.dir))
        self.assertIn("notes.txt", files(self.dir))  # left alone
        self.send(sink, "next")
        self.assertEqual(api_json(sink.http_port, "/api/messages/latest")["id"], 14)

    def test_limits_apply_to_the_disk(self):
        sink = self.start("--max-messages", "2")
        for s in ("a", "b", "c"):
            self.send(sink, s)
        self.assertEqual(files(self.dir), ["2.eml", "2.json", "3.eml", "3.json"])
        sink.check_clean_exit()
        sink = self.start("--max-messages", "1")
        self.assertEqual([m["id"] for m in api_json(sink.http_port, "/api/messages")["messages"]],
                         [3])
        self.assertEqual(files(self.dir), ["3.eml", "3.json"])

    def test_unusable_dir(self):
        d = temp_dir(self.addCleanup)
        f = os.path.join(d, "file")
        with open(f, "w") as fh:
            fh.write("x")
        from ternlib import TERN, run
        r = run([TERN, "sink", "--store", f, "--smtp", "127.0.0.1:0", "--http", "none"],
                timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"--store " + f.encode(), r.stdout)


if __name__ == "__main__":
    unittest.main()
