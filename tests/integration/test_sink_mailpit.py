"""`tern sink`'s Mailpit-compatible API (/api/v1/...), driven the way Mailpit's
users script it: plain urllib + json calls as in Mailpit's API documentation,
checking field names AND JSON types (Mailpit v1.30.5's structs), paging,
search, read flags and deletes.  The npm package `mailpit-api` (a real
Mailpit client; scripts/install-deps puts it in /var/cache/tern-test/npm)
is run against the sink too: without node or that package the test fails."""

import hashlib
import json
import os
import shutil
import smtplib
import subprocess
import unittest
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage

from ternlib import start_sink

HERE = os.path.dirname(os.path.abspath(__file__))
MAILPIT_API_DIR = os.environ.get("MAILPIT_API_DIR",
                                 "/var/cache/tern-test/npm/node_modules/mailpit-api")
RFC3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class MailpitApi:
    """What a Mailpit user writes: a base URL and urllib."""

    def __init__(self, port):
        self.base = "http://127.0.0.1:%d" % port

    def call(self, method, path, body=None, params=None):
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, path, params=None):
        status, headers, body = self.call("GET", path, params=params)
        if status != 200:
            raise AssertionError("GET %s: %d %r" % (path, status, body[:300]))
        assert headers["Content-Type"].startswith("application/json"), headers["Content-Type"]
        return json.loads(body)

    def messages(self, **params):
        return self.json("/api/v1/messages", params or None)

    def search(self, query, **params):
        params["query"] = query
        return self.json("/api/v1/search", params)

    def message(self, id):
        return self.json("/api/v1/message/%s" % id)


def plain(subject, frm="Alice Example <alice@example.com>", to="Bob <bob@example.net>",
          body="Hello there.\n", cc=None, reply_to=None):
    m = EmailMessage()
    m["From"] = frm
    m["To"] = to
    if cc:
        m["Cc"] = cc
    if reply_to:
        m["Reply-To"] = reply_to
    m["Subject"] = subject
    m["Message-ID"] = "<%s@tern.test>" % abs(hash(subject))
    m["Date"] = "Tue, 01 Jul 2003 10:52:37 +0200"
    m.set_content(body)
    return m


def rich():
    """text + HTML + an inline image + a PDF attachment, with UTF-8 headers."""
    m = EmailMessage()
    m["From"] = "Zoë Ünicode <zoe@example.org>"
    m["To"] = "Bob <bob@example.net>, carol@example.net"
    m["Cc"] = "Dave <dave@example.com>"
    m["Subject"] = "Rapport trimestriel — été"
    m["Message-ID"] = "<rich-1@tern.test>"
    m["List-Unsubscribe"] = "<mailto:unsub@example.org>, <https://example.org/unsub?u=1>"
    m.set_content("The quarterly numbers are in.\nSee the attachment.\n")
    m.add_alternative('<p>The <b>quarterly</b> numbers</p><img src="cid:logo@tern">',
                      subtype="html")
    m.get_payload()[1].add_related(PNG, "image", "png", cid="<logo@tern>", filename="logo.png",
                                   disposition="inline")
    m.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf",
                     filename="report.pdf")
    return m


class MailpitApiTest(unittest.TestCase):
    def setUp(self):
        self.sink = start_sink(self)
        self.api = MailpitApi(self.sink.http_port)

    def send(self, msg, to_addrs=None):
        with smtplib.SMTP("127.0.0.1", self.sink.smtp_port, timeout=10) as s:
            s.send_message(msg, to_addrs=to_addrs)

    def send_many(self, n, prefix="Message"):
        with smtplib.SMTP("127.0.0.1", self.sink.smtp_port, timeout=10) as s:
            for i in range(n):
                s.send_message(plain("%s %d" % (prefix, i)))

    def assert_address(self, a, name=None, address=None):
        self.assertEqual(sorted(a), ["Address", "Name"])
        self.assertIsInstance(a["Name"], str)
        self.assertIsInstance(a["Address"], str)
        if name is not None:
            self.assertEqual(a["Name"], name)
        if address is not None:
            self.assertEqual(a["Address"], address)

    def assert_summary_types(self, s):
        self.assertEqual(sorted(s), sorted([
            "ID", "MessageID", "Read", "From", "To", "Cc", "Bcc", "ReplyTo", "Subject", "Created",
            "Username", "Tags", "Size", "Attachments", "Snippet"]))
        for k in ("ID", "MessageID", "Subject", "Created", "Username", "Snippet"):
            self.assertIsInstance(s[k], str, k)
        self.assertIsInstance(s["Read"], bool)
        self.assertIsInstance(s["Size"], int)
        self.assertIsInstance(s["Attachments"], int)
        self.assertIsInstance(s["From"], dict)
        self.assert_address(s["From"])
        for k in ("To", "Cc", "Bcc", "ReplyTo", "Tags"):
            self.assertIsInstance(s[k], list, "%s must be a list, never null" % k)
        for k in ("To", "Cc", "Bcc", "ReplyTo"):
            for a in s[k]:
                self.assert_address(a)
        self.assertRegex(s["Created"], RFC3339)

    def assert_list_types(self, j):
        self.assertEqual(sorted(j), sorted(["total", "unread", "count", "messages_count",
                                            "messages_unread", "start", "tags", "messages"]))
        for k in ("total", "unread", "count", "messages_count", "messages_unread", "start"):
            self.assertIsInstance(j[k], int, k)
            self.assertNotIsInstance(j[k], bool, k)
        self.assertIsInstance(j["tags"], list)
        self.assertIsInstance(j["messages"], list)
        for s in j["messages"]:
            self.assert_summary_types(s)

    # -- GET /api/v1/messages -----------------------------------------------------

    def test_list_empty(self):
        j = self.api.messages()
        self.assert_list_types(j)
        self.assertEqual(j["messages"], [])
        self.assertEqual((j["total"], j["count"], j["messages_count"], j["unread"]), (0, 0, 0, 0))

    def test_list_fields_and_types(self):
        self.send(plain("First", cc="Carol <carol@example.net>",
                        reply_to="Replies <replies@example.com>"))
        self.send(rich(), to_addrs=["bob@example.net", "carol@example.net", "dave@example.com",
                                    "hidden@example.net"])
        j = self.api.messages()
        self.assert_list_types(j)
        self.assertEqual((j["total"], j["count"], j["messages_count"], j["start"]), (2, 2, 2, 0))
        self.assertEqual(j["unread"], 2)
        newest, first = j["messages"]
        self.assertEqual(first["Subject"], "First")
        self.assertEqual(newest["Subject"], "Rapport trimestriel — été")
        self.assertGreater(int(newest["ID"]), int(first["ID"]))
        self.assert_address(first["From"], "Alice Example", "alice@example.com")
        self.assertEqual(first["To"], [{"Name": "Bob", "Address": "bob@example.net"}])
        self.assertEqual(first["Cc"], [{"Name": "Carol", "Address": "carol@example.net"}])
        self.assertEqual(first["ReplyTo"], [{"Name": "Replies", "Address": "replies@example.com"}])
        self.assertEqual(first["Bcc"], [])
        self.assertEqual(first["MessageID"], "%s@tern.test" % abs(hash("First")))
        self.assertEqual(first["Attachments"], 0)
        self.assertEqual(first["Snippet"], "Hello there.")
        self.assertIs(first["Read"], False)
        self.assert_address(newest["From"], "Zoë Ünicode", "zoe@example.org")
        self.assertEqual([a["Address"] for a in newest["To"]],
                         ["bob@example.net", "carol@example.net"])
        # an envelope recipient missing from the headers shows in Bcc, as in Mailpit
        self.assertEqual(newest["Bcc"], [{"Name": "", "Address": "hidden@example.net"}])
        self.assertEqual(newest["Attachments"], 1)
        self.assertIn("quarterly", newest["Snippet"])
        self.assertEqual(newest["Tags"], [])
        raw = self.api.call("GET", "/api/v1/message/%s/raw" % newest["ID"])[2]
        self.assertEqual(newest["Size"], len(raw))

    def test_pagination(self):
        self.send_many(57)
        j = self.api.messages()
        self.assertEqual(j["count"], 50, "Mailpit's default limit is 50")
        self.assertEqual(j["total"], 57)
        self.assertEqual(j["messages_count"], 57)
        self.assertEqual(j["messages"][0]["Subject"], "Message 56")
        j = self.api.messages(start=5, limit=3)
        self.assertEqual([m["Subject"] for m in j["messages"]],
                         ["Message 51", "Message 50", "Message 49"])
        self.assertEqual((j["start"], j["count"], j["total"], j["messages_count"]), (5, 3, 57, 57))
        j = self.api.messages(start=55, limit=10)
        self.assertEqual([m["Subject"] for m in j["messages"]], ["Message 1", "Message 0"])
        self.assertEqual(self.api.messages(start=100)["messages"], [])
        self.assertEqual(self.api.messages(limit=0)["count"], 57, "limit=0 lists all")
        # bad numbers are ignored, as Mailpit's getStartLimit() does
        j = self.api.messages(start="x", limit="-3")
        self.assertEqual((j["start"], j["count"]), (0, 50))
        self.assertEqual(self.api.messages(before="2000-01-01")["count"], 0)
        self.assertEqual(self.api.messages(before="2100-01-01T00:00:00Z")["count"], 50)
        # IDs across pages are distinct and newest first
        ids = [int(m["ID"]) for m in self.api.messages(limit=0)["messages"]]
        self.assertEqual(ids, sorted(ids, reverse=True))

    # -- GET /api/v1/message/{ID} and its parts -----------------------------------------

    def test_message(self):
        self.send(rich(), to_addrs=["bob@example.net", "carol@example.net", "dave@example.com"])
        mid = self.api.messages()["messages"][0]["ID"]
        m = self.api.message(mid)
        self.assertEqual(sorted(m), sorted([
            "ID", "MessageID", "From", "To", "Cc", "Bcc", "ReplyTo", "ReturnPath", "Subject",
            "ListUnsubscribe", "Date", "Tags", "Username", "Text", "HTML", "Size", "Inline",
            "Attachments"]))
        self.assertEqual(m["ID"], mid)
        self.assertEqual(m["MessageID"], "rich-1@tern.test")
        self.assert_address(m["From"], "Zoë Ünicode", "zoe@example.org")
        self.assertEqual(m["Cc"], [{"Name": "Dave", "Address": "dave@example.com"}])
        self.assertEqual(m["Bcc"], [])
        self.assertEqual(m["ReplyTo"], [])
        self.assertEqual(m["ReturnPath"], "zoe@example.org")  # the envelope sender
        self.assertEqual(m["Subject"], "Rapport trimestriel — été")
        self.assertRegex(m["Date"], RFC3339)
        self.assertEqual(m["Tags"], [])
        self.assertEqual(m["Username"], "")
        self.assertIn("quarterly numbers are in", m["Text"])
        self.assertIn("<b>quarterly</b>", m["HTML"])
        self.assertIsInstance(m["Size"], int)
        lu = m["ListUnsubscribe"]
        self.assertEqual(sorted(lu), ["Errors", "Header", "HeaderPost", "Links"])
        self.assertEqual(lu["Links"], ["mailto:unsub@example.org",
                                       "https://example.org/unsub?u=1"])
        self.assertEqual(lu["Errors"], "")
        for kind, want in (("Inline", ("logo.png", "image/png", "logo@tern", PNG)),
                           ("Attachments", ("report.pdf", "application/pdf", "",
                                            b"%PDF-1.4 fake"))):
            self.assertEqual(len(m[kind]), 1, kind)
            a = m[kind][0]
            self.assertEqual(sorted(a), ["Checksums", "ContentID", "ContentType", "FileName",
                                         "PartID", "Size"])
            self.assertIsInstance(a["PartID"], str)
            self.assertEqual((a["FileName"], a["ContentType"], a["ContentID"]), want[:3])
            self.assertEqual(a["Size"], len(want[3]))
            self.assertEqual(a["Checksums"], {"MD5": hashlib.md5(want[3]).hexdigest(),
                                              "SHA1": hashlib.sha1(want[3]).hexdigest(),
                                              "SHA256": hashlib.sha256(want[3]).hexdigest()})
            status, headers, body = self.api.call(
                "GET", "/api/v1/message/%s/part/%s" % (mid, a["PartID"]))
            self.assertEqual(status, 200)
            self.assertEqual(body, want[3])
            self.assertEqual(headers["Content-Type"], want[1])
            self.assertIn('filename="%s"' % want[0], headers["Content-Disposition"])

    def test_message_date_and_latest(self):
        self.send(plain("Dated"))
        self.send(plain("Newest"))
        m = self.api.message("latest")
        self.assertEqual(m["Subject"], "Newest")
        self.assertTrue(m["Date"].startswith("2003-07-01T08:52:37"), m["Date"])
        # latest with ?query= gives the latest match, as Mailpit's LatestID()
        status, _, body = self.api.call("GET", "/api/v1/message/latest",
                                        params={"query": "subject:Dated"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["Subject"], "Dated")

    def test_message_marks_read(self):
        self.send(plain("Older one"))
        self.send(plain("Newer one"))
        j = self.api.messages()
        self.assertEqual(j["unread"], 2)
        self.api.message(j["messages"][0]["ID"])
        j = self.api.messages()
        self.assertEqual([m["Read"] for m in j["messages"]], [True, False])
        self.assertEqual((j["unread"], j["messages_unread"]), (1, 1))
        # PUT /api/v1/messages sets the flag: by IDs, by search, for all
        unread_id = j["messages"][1]["ID"]
        self.assertEqual(self.api.call("PUT", "/api/v1/messages",
                                       {"IDs": [unread_id], "Read": True})[:1], (200,))
        self.assertEqual(self.api.messages()["unread"], 0)
        status, _, body = self.api.call("PUT", "/api/v1/messages", {"Read": False})
        self.assertEqual((status, body), (200, b"ok"))
        self.assertEqual(self.api.messages()["unread"], 2)
        self.api.call("PUT", "/api/v1/messages", {"Search": "subject:\"newer one\"", "Read": True})
        self.assertEqual([m["Read"] for m in self.api.messages()["messages"]], [True, False])
        self.assertEqual(self.api.search("is:unread")["messages_count"], 1)
        status, _, _ = self.api.call("PUT", "/api/v1/messages",
                                     {"IDs": [unread_id], "Search": "x", "Read": True})
        self.assertEqual(status, 400)

    def test_raw_headers_and_errors(self):
        msg = plain("Raw one")
        self.send(msg)
        mid = self.api.messages()["messages"][0]["ID"]
        status, headers, body = self.api.call("GET", "/api/v1/message/%s/raw" % mid)
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        self.assertIn(b"Subject: Raw one\r\n", body)
        self.assertIn(b"\r\n\r\nHello there.\r\n", body)
        status, headers, _ = self.api.call("GET", "/api/v1/message/%s/raw?dl=1" % mid)
        self.assertEqual(headers["Content-Disposition"], 'attachment; filename="%s.eml"' % mid)
        h = self.api.json("/api/v1/message/%s/headers" % mid)
        self.assertEqual(h["Subject"], ["Raw one"])
        self.assertEqual(h["Content-Type"], ['text/plain; charset="utf-8"'])
        for path in ("/api/v1/message/999999", "/api/v1/message/nope",
                     "/api/v1/message/%s/part/99" % mid, "/api/v1/message/999999/raw",
                     "/api/v1/nothing"):
            status, headers, body = self.api.call("GET", path)
            self.assertEqual(status, 404, path)
            self.assertTrue(headers["Content-Type"].startswith("text/plain"), path)
        status, headers, _ = self.api.call("POST", "/api/v1/messages", {})
        self.assertEqual(status, 405)
        self.assertIn("GET", headers["Allow"])

    def test_hostile_message(self):
        """Octets that are not UTF-8, an HTML attachment with a script, a
        Content-Type that tries to add a header: valid JSON, a sandboxed part."""
        raw = (b"From: \xff\xfe Bad <bad@example.com>\r\nTo: <a@example.net>\r\n"
               b"Subject: =?utf-8?b?/w==?= \xc3\x28\r\n"
               b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
               b"Content-Type: text/plain\r\n\r\nbody \x80\x81\r\n--b\r\n"
               b"Content-Type: text/html\r\nContent-Disposition: attachment; filename=\"x\r\n.html\"\r\n\r\n"
               b"<script>fetch('/api/v1/messages',{method:'DELETE'})</script>\r\n--b--\r\n")
        with smtplib.SMTP("127.0.0.1", self.sink.smtp_port, timeout=10) as s:
            s.sendmail("bad@example.com", ["a@example.net"], raw)
        j = self.api.messages()
        self.assert_list_types(j)
        m = self.api.message(j["messages"][0]["ID"])
        self.assertEqual(len(m["Attachments"]), 1)
        status, headers, body = self.api.call(
            "GET", "/api/v1/message/%s/part/%s" % (m["ID"], m["Attachments"][0]["PartID"]))
        self.assertEqual(status, 200)
        self.assertIn(b"<script>", body)
        self.assertEqual(headers["X-Content-Type-Options"], "nosniff")
        self.assertIn("sandbox", headers["Content-Security-Policy"])
        self.assertNotIn("\n", headers["Content-Disposition"])
        self.assertNotIn("\r", headers["Content-Disposition"])
        self.assertEqual(self.api.search("body")["messages_count"], 1)

    # -- search ----------------------------------------------------------------------------

    def fill_for_search(self):
        self.send(plain("Invoice 2024-001", frm="Billing <billing@shop.example>",
                        to="Alice <alice@example.com>", body="Total due: 42 EUR.\n"))
        self.send(plain("Weekly report", frm="Reports <reports@example.org>",
                        to="Bob <bob@example.net>", body="All systems nominal.\n",
                        cc="Alice <alice@example.com>"))
        self.send(rich())
        self.send(plain("invoice reminder", frm="Billing <billing@shop.example>",
                        to="Bob <bob@example.net>", body="Please pay the invoice.\n"))

    def subjects(self, query, **params):
        j = self.api.search(query, **params)
        self.assert_list_types(j)
        return [m["Subject"] for m in j["messages"]]

    def test_search(self):
        self.fill_for_search()
        self.assertEqual(self.subjects("invoice"), ["invoice reminder", "Invoice 2024-001"])
        self.assertEqual(self.subjects("INVOICE"), ["invoice reminder", "Invoice 2024-001"])
        self.assertEqual(self.subjects("from:billing@shop.example"),
                         ["invoice reminder", "Invoice 2024-001"])
        self.assertEqual(self.subjects("from:Reports"), ["Weekly report"])
        self.assertEqual(self.subjects("to:alice@example.com"), ["Invoice 2024-001"])
        self.assertEqual(self.subjects("cc:alice"), ["Weekly report"])
        self.assertEqual(self.subjects("addressed:alice@example.com"),
                         ["Weekly report", "Invoice 2024-001"])
        self.assertEqual(self.subjects("subject:report"), ["Weekly report"])
        self.assertEqual(self.subjects('subject:"weekly report"'), ["Weekly report"])
        self.assertEqual(self.subjects('"systems nominal"'), ["Weekly report"])
        self.assertEqual(self.subjects('"nominal systems"'), [])
        self.assertEqual(self.subjects("quarterly"), ["Rapport trimestriel — été"])  # HTML/text
        self.assertEqual(self.subjects("report.pdf"), ["Rapport trimestriel — été"])
        self.assertEqual(self.subjects("has:attachment"), ["Rapport trimestriel — été"])
        self.assertEqual(self.subjects("invoice -subject:reminder"), ["Invoice 2024-001"])
        self.assertEqual(self.subjects("invoice !from:billing"), [])
        self.assertEqual(self.subjects("from:billing to:bob"), ["invoice reminder"])
        self.assertEqual(self.subjects("été"), ["Rapport trimestriel — été"])
        j = self.api.search("invoice", limit=1, start=1)
        self.assertEqual([m["Subject"] for m in j["messages"]], ["Invoice 2024-001"])
        self.assertEqual((j["messages_count"], j["count"], j["total"], j["start"]), (2, 1, 4, 1))
        self.assertEqual((j["messages_unread"], j["unread"]), (2, 4))
        for q in ("", "   "):
            status, headers, body = self.api.call("GET", "/api/v1/search", params={"query": q})
            self.assertEqual((status, body), (400, b"Error: no search query"))
        status, _, body = self.api.call("GET", "/api/v1/search",
                                        params={"query": "x " * 100})
        self.assertEqual(status, 400, body)

    # -- deletes -----------------------------------------------------------------------------

    def test_delete_by_ids_and_all(self):
        self.send_many(5)
        ids = [m["ID"] for m in self.api.messages()["messages"]]
        status, headers, body = self.api.call("DELETE", "/api/v1/messages", {"IDs": ids[1:3]})
        self.assertEqual((status, body), (200, b"ok"))
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        self.assertEqual([m["ID"] for m in self.api.messages()["messages"]],
                         [ids[0], ids[3], ids[4]])
        self.assertEqual(self.api.call("GET", "/api/v1/message/%s" % ids[1])[0], 404)
        # an unknown ID is ignored; the others go
        self.api.call("DELETE", "/api/v1/messages", {"IDs": ["424242", ids[0]]})
        self.assertEqual(self.api.messages()["total"], 2)
        # no body: everything, as Mailpit
        status, _, body = self.api.call("DELETE", "/api/v1/messages")
        self.assertEqual((status, body), (200, b"ok"))
        self.assertEqual(self.api.messages()["total"], 0)
        self.send_many(2)
        self.api.call("DELETE", "/api/v1/messages", {"IDs": []})
        self.assertEqual(self.api.messages()["total"], 0)
        # the sink's own API sees the same store
        self.send_many(1)
        self.assertEqual(self.api.json("/api/count")["count"], 1)

    def test_delete_search(self):
        self.fill_for_search()
        status, _, body = self.api.call("DELETE", "/api/v1/search",
                                        params={"query": "from:billing"})
        self.assertEqual((status, body), (200, b"ok"))
        self.assertEqual([m["Subject"] for m in self.api.messages()["messages"]],
                         ["Rapport trimestriel — été", "Weekly report"])
        status, _, _ = self.api.call("DELETE", "/api/v1/search")
        self.assertEqual(status, 400)
        self.assertEqual(self.api.messages()["total"], 2)

    def test_info(self):
        self.send_many(3)
        self.api.message("latest")
        i = self.api.json("/api/v1/info")
        for k in ("Version", "LatestVersion", "Database"):
            self.assertIsInstance(i[k], str, k)
        self.assertEqual((i["Messages"], i["Unread"]), (3, 2))
        self.assertIsInstance(i["Tags"], dict)
        rs = i["RuntimeStats"]
        for k in ("Uptime", "Memory", "MessagesDeleted", "SMTPAccepted", "SMTPAcceptedSize",
                  "SMTPRejected", "SMTPIgnored"):
            self.assertIsInstance(rs[k], int, k)
        self.assertEqual(rs["SMTPAccepted"], 3)
        self.assertEqual(self.api.json("/api/v1/tags"), [])

    # -- a real Mailpit client ---------------------------------------------------------------

    def test_npm_mailpit_api_client(self):
        node = shutil.which("node")
        script = os.path.join(HERE, "mailpit_client.mjs")
        if not node or not os.path.isfile(os.path.join(MAILPIT_API_DIR, "package.json")):
            self.fail("node or the npm package mailpit-api is missing (scripts/install-deps)")
        self.send(plain("From the npm client", body="Sent for mailpit-api.\n"))
        self.send(rich())
        env = dict(os.environ, MAILPIT_API_DIR=MAILPIT_API_DIR)
        r = subprocess.run([node, script, self.api.base], stdout=subprocess.PIPE, env=env,
                           stderr=subprocess.STDOUT, timeout=60)
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, out)
        self.assertIn("mailpit-api client: all checks passed", out)
        self.assertEqual(self.api.messages()["total"], 0)  # the script deleted all at its end


if __name__ == "__main__":
    unittest.main()
