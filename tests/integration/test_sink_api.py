"""The HTTP API of `tern sink`: JSON messages, counts, stats, faults, and the
mail-test-srv compatible plain-text endpoints."""

import unittest

from ternlib import (Dialogue, api_count, api_json, api_stats, http_delete, http_get, http_post,
                     http_put, http_request, message, send_raw, start_sink)

# (envelope from, recipients, subject)
MAILS = [
    ("alice@example.com", ["bob@example.net"], "Invoice 1"),
    ("alice@example.com", ["carol@example.org", "dave@example.net"], "Weekly report"),
    ("", ["bob@example.net"], "Bounce: undeliverable"),
    ("erin@example.org", ["frank@example.com"], "invoice 2"),
    ("Gina@Example.COM", ["Bob@Example.NET"], "Mixed case"),
]


class ApiTest(unittest.TestCase):
    def setUp(self):
        self.sink = start_sink(self)
        self.port = self.sink.http_port

    def fill(self):
        self.sent = []
        for frm, rcpts, subject in MAILS:
            raw = message(subject=subject, frm=frm or "mailer-daemon@example.com", to=rcpts[0])
            r = send_raw(self.sink.smtp_port, frm, rcpts, raw)
            self.assertEqual(r.code, 250, r)
            self.sent.append(raw)

    def get(self, path, status=200):
        r = http_get(self.port, path)
        self.assertEqual(r.status, status, "%s: %r" % (path, r))
        return r

    def test_list_newest_first(self):
        self.fill()
        j = self.get("/api/messages").json
        self.assertEqual(j["total"], 5)
        self.assertEqual(j["count"], 5)
        self.assertEqual(j["offset"], 0)
        ids = [m["id"] for m in j["messages"]]
        self.assertEqual(ids, [5, 4, 3, 2, 1])
        self.assertEqual([m["subject"] for m in j["messages"]], [s for _, _, s in reversed(MAILS)])
        m = j["messages"][3]
        self.assertEqual(m["from"], "alice@example.com")
        self.assertEqual(m["to"], ["carol@example.org", "dave@example.net"])
        self.assertEqual(m["header_to"], "<carol@example.org>")
        self.assertEqual(j["messages"][2]["from"], "")  # null sender
        self.assertRegex(m["received"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(m["helo"], "client.test")
        self.assertRegex(m["peer"], r"^127\.0\.0\.1:\d+$")
        self.assertIs(m["tls"], False)
        self.assertIsNone(m["auth_user"])
        self.assertEqual(m["size"], len(self.sent[1]))

    def test_list_filters(self):
        self.fill()

        def subjects(q):
            j = self.get("/api/messages?" + q).json
            self.assertEqual(j["total"], len(j["messages"]))
            return [m["subject"] for m in j["messages"]]

        self.assertEqual(subjects("to=bob@example.net"), ["Mixed case", "Bounce: undeliverable", "Invoice 1"])
        self.assertEqual(subjects("to=dave"), ["Weekly report"])
        self.assertEqual(subjects("from=alice%40example.com"), ["Weekly report", "Invoice 1"])
        self.assertEqual(subjects("from=gina@example.com"), ["Mixed case"])  # case-insensitive
        self.assertEqual(subjects("subject=invoice"), ["invoice 2", "Invoice 1"])
        self.assertEqual(subjects("subject=Bounce%3A+undeliverable"), ["Bounce: undeliverable"])
        self.assertEqual(subjects("from=alice&subject=report"), ["Weekly report"])
        self.assertEqual(subjects("to=nobody@nowhere.example"), [])

    def test_list_paging(self):
        self.fill()
        j = self.get("/api/messages?limit=2&offset=1").json
        self.assertEqual((j["total"], j["count"], j["offset"]), (5, 2, 1))
        self.assertEqual([m["id"] for m in j["messages"]], [4, 3])
        j = self.get("/api/messages?limit=10&offset=4").json
        self.assertEqual([m["id"] for m in j["messages"]], [1])
        j = self.get("/api/messages?offset=9").json
        self.assertEqual((j["total"], j["count"], j["messages"]), (5, 0, []))
        j = self.get("/api/messages?limit=0").json
        self.assertEqual((j["total"], j["count"]), (5, 0))
        j = self.get("/api/messages?subject=invoice&limit=1").json
        self.assertEqual((j["total"], j["count"], j["messages"][0]["id"]), (2, 1, 4))
        for bad in ("limit=abc", "limit=-1", "limit=10001", "offset=x", "colour=blue"):
            with self.subTest(query=bad):
                r = self.get("/api/messages?" + bad, 400)
                self.assertIn("error", r.json)
        self.assertIn("colour", self.get("/api/messages?colour=blue", 400).json["error"])

    def test_one_message_and_latest(self):
        self.fill()
        m3 = self.get("/api/messages/3").json
        self.assertEqual(m3["id"], 3)
        self.assertEqual(m3["subject"], "Bounce: undeliverable")
        latest = self.get("/api/messages/latest").json
        self.assertEqual(latest, self.get("/api/messages/5").json)
        self.assertEqual(latest["subject"], "Mixed case")
        self.assertIn("error", self.get("/api/messages/99", 404).json)
        self.assertIn("error", self.get("/api/messages/abc", 400).json)
        self.get("/api/messages/3/raw/more", 404)
        self.get("/api/messages/3/other", 404)
        self.assertEqual(self.get("/api/messages/99/raw", 404).json["error"], "no such message")

    def test_raw_is_what_was_sent(self):
        body = (b"first\r\n.starts with a dot\r\n..two dots\r\n.\r\n \r\n\tlast\r\n"
                b"8bit: \xc3\xa9t\xc3\xa9\r\n")
        raw = b"Subject: raw check\r\nFrom: x@example.com\r\n\r\n" + body
        r = send_raw(self.sink.smtp_port, "a@example.com", ["b@example.com"], raw)
        self.assertEqual(r.code, 250)
        got = self.get("/api/messages/latest/raw")
        self.assertEqual(got.body, raw)
        self.assertEqual(got.headers["content-type"], "message/rfc822")
        self.assertEqual(self.get("/api/messages/1/raw").body, raw)
        self.assertEqual(self.get("/api/messages/1").json["size"], len(raw))
        # a message without a final CRLF gets one (the CRLF before the dot belongs to the data)
        with Dialogue(self.sink.smtp_port) as d:
            d.expect(220)
            d.send(b"EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
            for code in (250, 250, 250, 354):
                d.expect(code)
            d.send(b"Subject: empty body\r\n.\r\n")
            d.expect(250)
        self.assertEqual(self.get("/api/messages/latest/raw").body, b"Subject: empty body\r\n")

    def test_header_fields(self):
        raw = (b"SUBJECT: folded\r\n  over lines\r\nfrom: Ann <ann@example.com>\r\n"
               b"To: Bo <bo@example.net>,\r\n Cy <cy@example.net>\r\n\r\nSubject: not a header\r\n")
        self.assertEqual(send_raw(self.sink.smtp_port, "env@example.com", ["bo@example.net"], raw).code, 250)
        m = self.get("/api/messages/latest").json
        self.assertEqual(m["subject"], "folded  over lines")
        self.assertEqual(m["header_from"], "Ann <ann@example.com>")
        self.assertIn("cy@example.net", m["header_to"])
        # the list filters look at the headers too
        self.assertEqual(api_count(self.port, "?subject=over+lines"), 1)
        self.assertEqual(api_count(self.port, "?subject=not+a+header"), 0)
        self.assertEqual(api_count(self.port, "?from=ann@"), 1)
        self.assertEqual(api_count(self.port, "?to=cy@example.net"), 1)
        raw = b"X-Only: 1\r\n\r\nSubject: in the body\r\n"
        send_raw(self.sink.smtp_port, "a@example.com", ["b@example.com"], raw)
        self.assertEqual(self.get("/api/messages/latest").json["subject"], "")

    def test_non_utf8_header_is_valid_json(self):
        raw = b"Subject: caf\xe9 \xff\r\n\r\nbody\r\n"
        self.assertEqual(send_raw(self.sink.smtp_port, "a@example.com", ["b@example.com"], raw).code, 250)
        r = self.get("/api/messages/latest")
        r.body.decode("utf-8")  # strictly valid UTF-8
        self.assertTrue(r.json["subject"].startswith("caf"))
        self.assertEqual(self.get("/api/messages/latest/raw").body, raw)

    def test_delete(self):
        self.fill()
        r = http_delete(self.port, "/api/messages/2")
        self.assertEqual(r.status, 200, r)
        self.get("/api/messages/2", 404)
        self.assertEqual(http_delete(self.port, "/api/messages/2").status, 404)
        j = self.get("/api/messages").json
        self.assertEqual([m["id"] for m in j["messages"]], [5, 4, 3, 1])
        self.assertEqual(api_count(self.port), 4)
        self.assertEqual(api_stats(self.port)["stored"], 4)
        r = http_delete(self.port, "/api/messages")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(api_count(self.port), 0)
        self.assertEqual(self.get("/api/messages").json["messages"], [])
        self.get("/api/messages/latest", 404)
        st = api_stats(self.port)
        self.assertEqual((st["stored"], st["stored_bytes"], st["messages"]), (0, 0, 5))
        # ids keep growing after a delete
        send_raw(self.sink.smtp_port, "a@example.com", ["b@example.com"], message())
        self.assertEqual(self.get("/api/messages/latest").json["id"], 6)

    def test_cross_site_changes_refused(self):
        """A page of another site cannot clear the inbox or change the faults (CSRF);
        the inbox's own page and clients without Origin can."""
        self.fill()
        host = "127.0.0.1:%d" % self.port
        for hdrs in ({"Origin": "http://evil.example"},
                     {"Origin": "null"},
                     {"Origin": "http://" + host, "Sec-Fetch-Site": "cross-site"}):
            for method, path, body in (("DELETE", "/api/messages", None), ("POST", "/clear", None),
                                       ("DELETE", "/api/v1/messages", None),
                                       ("PUT", "/api/faults", {"delay": "1s"})):
                r = http_request(self.port, method, path, body=body, headers=hdrs)
                self.assertEqual(r.status, 403, "%s %s %r: %r" % (method, path, hdrs, r))
        self.assertEqual(api_count(self.port), 5)
        # reading stays open to everyone
        r = http_request(self.port, "GET", "/api/messages", headers={"Origin": "http://evil.example"})
        self.assertEqual(r.status, 200, r)
        # the same origin (the web inbox) may
        r = http_request(self.port, "DELETE", "/api/messages/1",
                         headers={"Origin": "http://" + host, "Sec-Fetch-Site": "same-origin"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(api_count(self.port), 4)

    def test_count_with_filters(self):
        self.fill()
        self.assertEqual(api_count(self.port), 5)
        self.assertEqual(api_count(self.port, "?to=bob"), 3)
        self.assertEqual(api_count(self.port, "?from=alice"), 2)
        self.assertEqual(api_count(self.port, "?subject=INVOICE"), 2)
        self.assertEqual(api_count(self.port, "?to=bob&subject=invoice"), 1)
        self.assertEqual(api_count(self.port, "?to=zed"), 0)
        self.get("/api/count?limit=x", 400)

    def test_stats(self):
        st = api_stats(self.port)
        self.assertEqual((st["connections"], st["messages"], st["stored"]), (0, 0, 0))
        self.fill()
        with Dialogue(self.sink.smtp_port) as d:  # a connection without a message
            d.expect(220)
            d.cmd("QUIT", 221)
        st = api_stats(self.port)
        self.assertEqual(st["connections"], 6)
        self.assertEqual(st["messages"], 5)
        self.assertEqual(st["stored"], 5)
        self.assertEqual(st["stored_bytes"], sum(len(s) for s in self.sent))
        self.assertEqual(st["dropped"], 0)
        self.assertEqual(st["refused_at_end_of_data"], 0)
        self.assertGreaterEqual(st["uptime_ms"], 0)
        self.assertEqual(st["faults"]["total"], 0)
        self.assertEqual(st["faults"]["fail"], {})

    def test_not_found_and_methods(self):
        # "/" is the web inbox (test_sink_web.py)
        for path in ("/index.htm", "/api", "/api/nothing", "/api/messages/", "/mail", "/counts"):
            with self.subTest(path=path):
                r = self.get(path, 404)
                self.assertIn("error", r.json)
        cases = [("POST", "/api/messages", "GET, DELETE"), ("PUT", "/api/messages/1", "GET, DELETE"),
                 ("DELETE", "/api/messages/1/raw", "GET"), ("POST", "/api/count", "GET"),
                 ("DELETE", "/api/stats", "GET"), ("DELETE", "/api/faults", "GET, PUT, POST"),
                 ("GET", "/clear", "POST"), ("POST", "/count", "GET"), ("DELETE", "/mail/0", "GET")]
        for method, path, allow in cases:
            with self.subTest(method=method, path=path):
                r = http_request(self.port, method, path)
                self.assertEqual(r.status, 405, r)
                self.assertEqual(r.headers.get("allow"), allow)
                self.assertIn("error", r.json)

    def test_head(self):
        self.fill()
        r = http_request(self.port, "HEAD", "/api/count")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")


class FaultsApiTest(unittest.TestCase):
    def setUp(self):
        self.sink = start_sink(self, "--seed", "7", "--fail", "RCPT:451:10", "--delay", "DATA:5")
        self.port = self.sink.http_port

    def test_get(self):
        j = api_json(self.port, "/api/faults")
        self.assertEqual(j, {"close_first": 0, "close_chance": 0.0, "fail": ["RCPT:451:10"],
                             "delay": ["DATA:5"], "seed": 7})

    def test_put_takes_effect_on_next_connection(self):
        r = http_put(self.port, "/api/faults", {"fail": ["MAIL:550:100"], "close_chance": 0})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["fail"], ["MAIL:550:100"])
        self.assertEqual(r.json["delay"], ["DATA:5"])  # fields not given are kept
        self.assertEqual(api_json(self.port, "/api/faults"), r.json)
        with Dialogue(self.sink.smtp_port) as d:
            d.expect(220)
            d.cmd("EHLO x", 250)
            d.cmd("MAIL FROM:<a@example.com>", 550, "5.7.1")
        # POST works like PUT; an empty list clears the rules
        r = http_post(self.port, "/api/faults", {"fail": [], "close_first": 1})
        self.assertEqual(r.status, 200, r)
        with Dialogue(self.sink.smtp_port) as d:
            d.expect(220)
            d.cmd("EHLO x", 250)
            d.cmd("MAIL FROM:<a@example.com>", 421, "4.4.2")  # close_first 1: the first cut is a 421
            self.assertTrue(d.is_closed())
        self.assertEqual(send_raw(self.sink.smtp_port, "a@x.example", ["b@x.example"], message()).code, 250)
        st = api_stats(self.port)
        self.assertEqual(st["faults"]["fail"], {"MAIL": 1})
        self.assertEqual(st["faults"]["close_first"], 1)
        self.assertEqual(st["faults"]["cut_421"], 1)

    def test_put_errors(self):
        before = api_json(self.port, "/api/faults")
        cases = [
            (b"{not json", "JSON"),
            (b"[1, 2]", "not an object"),
            (b'{"bogus": 1}', "unknown field 'bogus'"),
            (b'{"close_first": -1}', "close_first"),
            (b'{"close_first": "3"}', "close_first"),
            (b'{"close_chance": 101}', "close_chance"),
            (b'{"seed": 1.5}', "seed"),
            (b'{"fail": "RCPT:451:10"}', "fail: expected an array"),
            (b'{"fail": [42]}', "fail[0]"),
            (b'{"fail": ["RCPT:451:10", "MAIL:99:10"]}', "fail[1]"),
            (b'{"fail": ["QUIT:451:10"]}', "unknown command 'QUIT'"),
            (b'{"fail": ["RCPT:451:101"]}', "percent"),
            (b'{"fail": ["RCPT:451"]}', "CMD:CODE:PERCENT"),
            (b'{"delay": ["DATA:abc"]}', "delay[0]"),
            (b'{"delay": ["DATA:600001"]}', "milliseconds"),
            (b'{"close_chance": 50, "fail": ["MAIL:600:1"]}', "code must be from 400 to 599"),
        ]
        for body, needle in cases:
            with self.subTest(body=body):
                r = http_put(self.port, "/api/faults", body, headers={"Content-Type": "application/json"})
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.headers["content-type"], "application/json")
                self.assertIn(needle, r.json["error"])
        # nothing of the rejected requests was applied (close_chance 50 came with a bad rule)
        self.assertEqual(api_json(self.port, "/api/faults"), before)

    def test_seed_restarts_generator(self):
        r = http_put(self.port, "/api/faults", {"seed": 12345, "fail": ["RCPT:451:50"], "delay": []})
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["seed"], r.json["delay"]), (12345, []))

        def pattern():
            out = []
            with Dialogue(self.sink.smtp_port) as d:
                d.expect(220)
                d.cmd("EHLO x", 250)
                d.cmd("MAIL FROM:<a@example.com>", 250)
                for i in range(40):
                    out.append(d.cmd("RCPT TO:<r%d@example.com>" % i).code)
            return out

        first = pattern()
        self.assertIn(451, first)
        self.assertIn(250, first)
        http_put(self.port, "/api/faults", {"seed": 12345})
        self.assertEqual(pattern(), first)


class CompatTest(unittest.TestCase):
    def setUp(self):
        self.sink = start_sink(self)
        self.port = self.sink.http_port

    def send(self, frm, rcpts, subject):
        raw = message(subject=subject, frm=frm, to=rcpts[0])
        self.assertEqual(send_raw(self.sink.smtp_port, frm, rcpts, raw).code, 250)
        return raw

    def test_count_clear_mail(self):
        r = http_get(self.port, "/count")
        self.assertEqual((r.status, r.text), (200, "0\n"))
        self.assertTrue(r.headers["content-type"].startswith("text/plain"))
        a = self.send("a@example.com", ["x@example.com"], "one")
        b = self.send("b@example.com", ["y@example.com"], "two")
        c = self.send("a@example.com", ["x@example.com"], "three")
        self.assertEqual(http_get(self.port, "/count").text, "3\n")
        self.assertEqual(http_get(self.port, "/count?to=x@example.com").text, "2\n")
        self.assertEqual(http_get(self.port, "/count?to=x").text, "0\n")  # exact match, not substring
        self.assertEqual(http_get(self.port, "/count?from=A@EXAMPLE.COM").text, "2\n")

        def mail(q):
            r = http_get(self.port, "/mail/" + q)
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.headers["content-type"].startswith("text/plain"))
            return r.body

        # oldest first: "FROM x\nTO y\n\n<raw>\n"
        self.assertEqual(mail("0"), b"FROM a@example.com\nTO x@example.com\n\n" + a + b"\n")
        self.assertEqual(mail("1"), b"FROM b@example.com\nTO y@example.com\n\n" + b + b"\n")
        self.assertEqual(mail("1?to=x@example.com"), b"FROM a@example.com\nTO x@example.com\n\n" + c + b"\n")
        self.assertEqual(mail("0?from=b@example.com"), b"FROM b@example.com\nTO y@example.com\n\n" + b + b"\n")
        self.assertEqual(mail("0?from=a@example.com&to=x@example.com"),
                         b"FROM a@example.com\nTO x@example.com\n\n" + a + b"\n")
        self.assertEqual(http_get(self.port, "/mail/3").status, 404)
        self.assertEqual(http_get(self.port, "/mail/1?from=b@example.com").status, 404)
        self.assertEqual(http_get(self.port, "/mail/x").status, 400)
        self.assertEqual(http_get(self.port, "/mail/0?subject=one").status, 400)  # not a filter here

        # a message to several recipients is found by each of them
        d = self.send("c@example.com", ["p@example.com", "q@example.com"], "four")
        for rcpt in ("p@example.com", "q@example.com"):
            self.assertEqual(http_get(self.port, "/count?to=" + rcpt).text, "1\n")
            body = mail("0?to=" + rcpt)
            self.assertTrue(body.startswith(b"FROM c@example.com\nTO "), body)
            self.assertIn(rcpt.encode(), body.split(b"\n")[1])
            self.assertTrue(body.endswith(b"\n\n" + d + b"\n"))

        r = http_get(self.port, "/clear")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.headers["allow"], "POST")
        self.assertEqual(http_get(self.port, "/count?from=a@example.com").text, "2\n")
        r = http_post(self.port, "/clear")
        self.assertEqual(r.status, 200)
        self.assertEqual(http_get(self.port, "/count").text, "0\n")
        self.assertEqual(http_get(self.port, "/mail/0").status, 404)
        self.assertEqual(api_count(self.port), 0)


class LimitsTest(unittest.TestCase):
    def test_max_messages_keeps_newest(self):
        sink = start_sink(self, "--max-messages", "3")
        for i in range(7):
            raw = message(subject="n%d" % i)
            self.assertEqual(send_raw(sink.smtp_port, "a@example.com", ["b@example.com"], raw).code, 250)
        j = api_json(sink.http_port, "/api/messages")
        self.assertEqual(j["total"], 3)
        self.assertEqual([m["subject"] for m in j["messages"]], ["n6", "n5", "n4"])
        self.assertEqual([m["id"] for m in j["messages"]], [7, 6, 5])
        self.assertEqual(http_get(sink.http_port, "/api/messages/4").status, 404)
        st = api_stats(sink.http_port)
        self.assertEqual((st["messages"], st["stored"], st["dropped"]), (7, 3, 4))
        self.assertEqual(http_get(sink.http_port, "/count").text, "3\n")

    def test_max_memory_drops_oldest(self):
        sink = start_sink(self, "--max-memory", "10K")
        size = 0
        for i in range(6):
            raw = message(subject="m%d" % i, body=("x" * 98 + "\r\n") * 30)
            size = len(raw)
            send_raw(sink.smtp_port, "a@example.com", ["b@example.com"], raw)
        st = api_stats(sink.http_port)
        self.assertEqual(st["stored"], 10240 // size)
        self.assertLessEqual(st["stored_bytes"], 10240)
        self.assertEqual(st["dropped"], 6 - st["stored"])
        self.assertEqual(api_json(sink.http_port, "/api/messages/latest")["subject"], "m5")


if __name__ == "__main__":
    unittest.main()
