#!/usr/bin/python3
"""The web inbox of `tern sink` (src/sink/web/, web.c, events.c) in a real browser:
Debian's chromium, headless, driven by python3-selenium through chromedriver.

Mail is sent with smtplib; the page must show it without a reload (server-sent
events), open it (headers, text, the HTML part inside an <iframe sandbox>), keep a
<script> in the mail from running and keep remote images from loading (a local HTTP
listener plays the remote host and must see no request), search, delete one and
all, change a fault setting (checked with GET /api/faults), and stay usable with
10,000 stored messages.  /api/events is also checked at the HTTP level (stream
format, the 64-client cap, closed clients freed).

selenium is a Debian module: when the tests' python3 cannot import it, this file
re-runs itself with /usr/bin/python3.  A missing chromium, chromedriver or selenium
FAILS the tests (scripts/install-deps installs them); it never skips.

TERN_SCREENSHOT=FILE saves a screenshot of the inbox with a message open (this is
how docs/sink-inbox.png is made).
"""

import os
import sys

DEBIAN_PYTHON = "/usr/bin/python3"
try:
    import selenium  # noqa: F401
    SELENIUM_ERROR = None
except ImportError as e:  # the tests' python3 (pyenv) has no Debian modules
    if os.path.realpath(sys.executable) != os.path.realpath(DEBIAN_PYTHON) and os.path.exists(DEBIAN_PYTHON):
        os.execv(DEBIAN_PYTHON, [DEBIAN_PYTHON] + sys.argv)
    SELENIUM_ERROR = str(e)

import http.server  # noqa: E402
import smtplib  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import unittest  # noqa: E402
from email.message import EmailMessage  # noqa: E402

from ternlib import (IO_TIMEOUT, api_count, api_json, http_get, start_sink,  # noqa: E402
                     wait_until)

import base64  # noqa: E402

PNG = base64.b64decode(  # 1x1
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
UI_TIMEOUT = 15.0


class RemoteHost:
    """A local HTTP listener standing in for a remote host that a mail's HTML
    links to: it records every request it gets."""

    def __init__(self):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.end_headers()
                self.wfile.write(b"GIF89a")

            do_POST = do_GET

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def start_browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if SELENIUM_ERROR or missing:
        raise AssertionError("the web inbox test needs Debian's chromium, chromium-driver and "
                             "python3-selenium (scripts/install-deps): missing %s"
                             % (", ".join(missing) or SELENIUM_ERROR))
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="tern-chromium-")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1200,760", "--user-data-dir=" + profile, "--no-first-run",
              "--no-proxy-server", "--disable-extensions", "--disable-background-networking"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(UI_TIMEOUT)
    driver.set_script_timeout(UI_TIMEOUT)
    return driver, profile


def html_mail(subject, marker_port, frm="Alice Example <alice@example.com>"):
    m = EmailMessage()
    m["From"] = frm
    m["To"] = "Bob <bob@example.com>"
    m["Subject"] = subject
    m.set_content("Plain text part of %s.\n" % subject)
    m.add_alternative(
        "<html><head><style>p.x{color:#a33}</style>"
        "<link rel=stylesheet href='http://127.0.0.1:%d/style.css'></head><body>"
        "<p id='hello' class='x'>Hello from the HTML part</p>"
        "<img src='http://127.0.0.1:%d/pixel.gif' alt='remote'>"
        "<script>document.getElementById('hello').textContent='script ran';"
        "document.body.setAttribute('data-ran','1');"
        "document.title='pwned';try{parent.document.title='pwned'}catch(e){}"
        "new Image().src='http://127.0.0.1:%d/script-ran';"
        "fetch('http://127.0.0.1:%d/script-fetch')</script>"
        "<img src=x onerror=\"new Image().src='http://127.0.0.1:%d/onerror'\">"
        "<img id='logo' src='cid:logo@tern.test' alt='logo'>"
        "</body></html>" % ((marker_port,) * 5), subtype="html")
    m.get_payload()[1].add_related(PNG, maintype="image", subtype="png", cid="<logo@tern.test>")
    m.add_attachment(b"col1,col2\r\n1,2\r\n", maintype="text", subtype="csv", filename="data.csv")
    return m


class WebInboxTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.driver, cls.profile = start_browser()

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()
        import shutil
        shutil.rmtree(cls.profile, ignore_errors=True)

    def setUp(self):
        self.sink = start_sink(self, "--quiet")
        self.port = self.sink.http_port
        self.remote = RemoteHost()
        self.addCleanup(self.remote.close)

    # ---- helpers ----

    def send(self, msg):
        with smtplib.SMTP("127.0.0.1", self.sink.smtp_port, timeout=IO_TIMEOUT) as s:
            s.send_message(msg, "sender@example.com", ["bob@example.com"])

    def send_plain(self, subject, n=1):
        with smtplib.SMTP("127.0.0.1", self.sink.smtp_port, timeout=IO_TIMEOUT) as s:
            for i in range(n):
                m = EmailMessage()
                m["From"] = "carol@example.com"
                m["To"] = "dave@example.com"
                m["Subject"] = subject if n == 1 else "%s %d" % (subject, i)
                m.set_content("body %d\n" % i)
                s.send_message(m, "carol@example.com", ["dave@example.com"])

    def open_page(self):
        self.driver.get("http://127.0.0.1:%d/" % self.port)
        self.driver.execute_script("window.__noReload = 42;")
        self.wait_js("return document.getElementById('live').textContent === 'live'")

    def wait_js(self, script, timeout=UI_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            v = self.driver.execute_script(script)
            if v:
                return v
            if time.monotonic() > deadline:
                self.fail("timed out waiting for: %s" % script)
            time.sleep(0.05)

    def list_subjects(self):
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll('#list li .subj')).map(e => e.textContent)")

    def wait_list(self, pred, what):
        deadline = time.monotonic() + UI_TIMEOUT
        while not pred(self.list_subjects()):
            if time.monotonic() > deadline:
                self.fail("list never became %s: %r" % (what, self.list_subjects()))
            time.sleep(0.05)

    def by_id(self, id_):
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.ID, id_)

    def click_message(self, subject):
        """Click the list entry with that subject (again if a live refresh
        replaced it under the click) and wait for the message view."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By
        deadline = time.monotonic() + UI_TIMEOUT
        while time.monotonic() < deadline:
            try:
                for li in self.driver.find_elements(By.CSS_SELECTOR, "#list li"):
                    if li.find_element(By.CSS_SELECTOR, ".subj").text == subject:
                        mid = li.get_attribute("data-id")
                        li.click()
                        self.wait_js("return !document.getElementById('message').hidden && "
                                     "document.getElementById('view-subject').textContent === %r"
                                     % subject)
                        return mid
            except StaleElementReferenceException:
                pass
            time.sleep(0.05)
        self.fail("no %r in the list" % subject)

    # ---- tests ----

    def test_page_headers(self):
        r = http_get(self.port, "/")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/html"))
        csp = r.headers["content-security-policy"]
        self.assertIn("default-src 'none'", csp)
        self.assertIn("script-src 'self'", csp)
        self.assertNotIn("unsafe-inline'; img", csp.split("script-src")[1][:30])
        self.assertIn(b"/app.js", r.body)
        js = http_get(self.port, "/app.js")
        self.assertEqual(js.status, 200)
        self.assertTrue(js.headers["content-type"].startswith("text/javascript"))
        for sink in (b"innerHTML", b"outerHTML", b"insertAdjacentHTML", b"document.write", b"eval("):
            self.assertNotIn(sink, js.body.replace(b"never innerHTML", b""))
        self.assertNotIn(b"<script>", r.body)  # no inline script: the CSP would block it
        self.assertNotIn(b"http://", r.body + js.body)
        self.assertNotIn(b"https://", r.body + js.body)
        self.assertEqual(http_get(self.port, "/app.css").status, 200)
        self.assertEqual(http_get(self.port, "/nope.js").status, 404)
        self.assertEqual(http_get(self.port, "/api/nope").status, 404)

    def test_live_view_sandbox(self):
        self.open_page()
        self.assertEqual(self.list_subjects(), [])
        self.send(html_mail("First HTML mail", self.remote.port))
        self.wait_list(lambda s: s == ["First HTML mail"], "the new message")
        self.send_plain("Second plain mail")
        self.wait_list(lambda s: s == ["Second plain mail", "First HTML mail"], "newest first")
        self.assertEqual(self.driver.execute_script("return window.__noReload"), 42,
                         "the page was reloaded")

        mid = self.click_message("First HTML mail")
        # opening marks it read (Mailpit's flag), the other stays unread
        self.assertTrue(wait_until(lambda: [m["Read"] for m in api_json(
            self.port, "/api/v1/messages")["messages"]] == [False, True]))
        summary = self.by_id("view-summary").text
        self.assertIn("Alice Example <alice@example.com>", summary)
        self.assertIn("Bob <bob@example.com>", summary)
        self.by_id("tab-text").click()
        self.assertIn("Plain text part of First HTML mail.", self.by_id("view-text").text)
        self.by_id("tab-headers").click()
        self.assertIn("Subject", self.by_id("view-headers").text)
        self.assertIn("First HTML mail", self.by_id("view-headers").text)
        # attachments: a link to /api/messages/ID/part/N that gives the octets
        from selenium.webdriver.common.by import By
        links = self.driver.find_elements(By.CSS_SELECTOR, "#view-attachments a")
        self.assertEqual(len(links), 2)  # the inline image is listed too
        self.assertIn("inline", links[0].text + links[1].text)
        links = [a for a in links if "data.csv" in a.text]
        self.assertEqual(len(links), 1)
        href = links[0].get_attribute("href")
        self.assertRegex(href, r"/api/messages/%s/part/\d+$" % mid)
        self.assertEqual(http_get(self.port, href.split(str(self.port), 1)[1]).body,
                         b"col1,col2\r\n1,2\r\n")
        self.by_id("tab-raw").click()
        self.wait_js("return document.getElementById('raw').textContent.indexOf("
                     "'Subject: First HTML mail') >= 0")
        self.assertTrue(self.by_id("download").get_attribute("href").endswith(
            "/api/messages/%s/raw" % mid))

        # the HTML part renders inside the sandboxed frame ...
        self.by_id("tab-html").click()
        frame = self.by_id("html-frame")
        self.assertEqual(frame.get_attribute("sandbox"), "")
        self.wait_js("return document.getElementById('html-frame').getAttribute('srcdoc')"
                     ".indexOf('data:image/png;base64,') >= 0")
        self.driver.switch_to.frame(frame)
        try:
            hello = self.driver.find_element(By.ID, "hello")
            self.assertEqual(hello.text, "Hello from the HTML part")  # the script would change it
            self.assertIsNone(self.driver.find_element(By.TAG_NAME, "body").get_attribute("data-ran"))
            # the inline (cid:) image is shown, as a data: URL
            logo = self.driver.find_element(By.ID, "logo")
            self.assertTrue(logo.get_attribute("src").startswith("data:image/png;base64,"))
        finally:
            self.driver.switch_to.default_content()
        # ... and its script did not run, nor did anything load from the "remote" host
        time.sleep(1.0)
        self.assertEqual(self.driver.title, "tern sink")
        self.assertEqual(self.remote.hits, [], "the mail's HTML reached the network")
        if os.environ.get("TERN_SCREENSHOT"):
            self.screenshot(os.environ["TERN_SCREENSHOT"])

    def screenshot(self, path):
        """The inbox with a few messages and the HTML one open (docs/sink-inbox.png)."""
        for subject, frm in (("Your invoice #2041", "Billing <billing@shop.example>"),
                             ("Welcome to Example!", "Example Team <hello@example.com>")):
            m = EmailMessage()
            m["From"] = frm
            m["To"] = "Bob <bob@example.com>"
            m["Subject"] = subject
            m.set_content("Hello Bob,\n\nthanks for signing up.\n")
            m.add_alternative(
                "<div style='font-family:sans-serif;max-width:520px'>"
                "<h2 style='color:#1f3a5f'>%s</h2><p>Hello Bob,</p><p>Thanks for signing up. "
                "Your account is ready; this HTML part is shown in a sandboxed frame, with no "
                "scripts and no remote images.</p><p style='background:#eef2f8;padding:10px'>"
                "<b>Plan:</b> Free &middot; <b>Seats:</b> 3</p><script>document.title='x'</script>"
                "<p style='color:#888;font-size:12px'>Example Inc.</p></div>" % subject,
                subtype="html")
            m.add_attachment(b"%PDF-1.4\n%%EOF\n", maintype="application", subtype="pdf",
                             filename="welcome.pdf")
            self.send(m)
        self.send_plain("Password reset requested")
        self.wait_list(lambda s: len(s) == 5, "5 messages")
        self.click_message("Welcome to Example!")
        self.by_id("tab-html").click()
        time.sleep(0.5)
        self.driver.save_screenshot(path)

    def test_search(self):
        self.send_plain("apple pie")
        self.send_plain("banana bread")
        self.send_plain("cherry tart")
        self.open_page()
        self.wait_list(lambda s: len(s) == 3, "3 messages")
        box = self.by_id("search")
        box.send_keys("subject:banana")
        self.wait_list(lambda s: s == ["banana bread"], "the search result")
        self.assertIn("1\u20131 of 1", self.by_id("pager-info").text)
        box.clear()
        box.send_keys("tart")  # free text
        self.wait_list(lambda s: s == ["cherry tart"], "the free-text result")
        self.driver.execute_script("var b=document.getElementById('search'); b.value='';"
                                   "b.dispatchEvent(new Event('input'))")
        self.wait_list(lambda s: len(s) == 3, "all 3 again")

    def test_delete(self):
        self.send_plain("keep me")
        self.send_plain("delete me")
        self.send_plain("also keep")
        self.open_page()
        self.wait_list(lambda s: len(s) == 3, "3 messages")
        mid = self.click_message("delete me")
        self.by_id("delete-one").click()
        self.wait_list(lambda s: s == ["also keep", "keep me"], "without the deleted one")
        self.assertEqual(http_get(self.port, "/api/messages/%s" % mid).status, 404)
        self.assertEqual(api_count(self.port), 2)
        self.assertTrue(self.by_id("message").get_attribute("hidden"))
        # delete all: two clicks (no modal dialog)
        self.by_id("delete-all").click()
        self.assertEqual(api_count(self.port), 2)
        self.by_id("delete-all").click()
        self.wait_list(lambda s: s == [], "empty")
        self.assertEqual(api_count(self.port), 0)
        # deletes by another client show up live too
        self.send_plain("from outside")
        self.wait_list(lambda s: s == ["from outside"], "the new message")
        from ternlib import http_delete
        self.assertEqual(http_delete(self.port, "/api/messages").status, 200)
        self.wait_list(lambda s: s == [], "empty after DELETE /api/messages")

    def test_faults(self):
        self.open_page()
        self.by_id("faults-toggle").click()
        self.wait_js("return document.getElementById('f-close-chance').value === '0'")
        cc = self.by_id("f-close-chance")
        cc.clear()
        cc.send_keys("12.5")
        fail = self.by_id("f-fail")
        fail.clear()
        fail.send_keys("RCPT:451:100")
        self.by_id("f-save").click()
        self.wait_js("return document.getElementById('f-status').textContent === 'saved'")
        f = api_json(self.port, "/api/faults")
        self.assertEqual(f["close_chance"], 12.5)
        self.assertEqual(f["fail"], ["RCPT:451:100"])
        # a bad value is refused with the API's reason, and nothing changes
        fail.clear()
        fail.send_keys("NOPE:1:1")
        self.by_id("f-save").click()
        self.wait_js("return document.getElementById('f-status').classList.contains('err')")
        self.assertEqual(api_json(self.port, "/api/faults")["fail"], ["RCPT:451:100"])
        # a change made elsewhere appears in the page (event "faults")
        from ternlib import http_put
        self.driver.execute_script("document.activeElement.blur()")
        self.assertEqual(http_put(self.port, "/api/faults", {"close_first": 3, "fail": []}).status, 200)
        self.wait_js("return document.getElementById('f-close-first').value === '3'")

    def test_ten_thousand(self):
        n = 10000
        body = b"Subject: bulk %d\r\nFrom: bulk@example.com\r\nTo: r@example.com\r\n\r\nx\r\n"
        t0 = time.monotonic()
        with smtplib.SMTP("127.0.0.1", self.sink.smtp_port, timeout=IO_TIMEOUT) as s:
            for i in range(n):
                s.sendmail("bulk@example.com", ["r@example.com"], body % i)
                self.assertLess(time.monotonic() - t0, 300, "sending 10,000 messages took too long")
        self.assertEqual(api_count(self.port), n)
        t0 = time.monotonic()
        self.open_page()
        self.wait_js("return document.getElementById('pager-info').textContent === '1\u201350 of 10000'")
        self.assertEqual(self.list_subjects()[0], "bulk 9999")
        load = time.monotonic() - t0
        self.assertLess(load, 10, "the first page took %.1f s" % load)
        # page through the list: each page in bounded time
        for p in range(1, 4):
            t0 = time.monotonic()
            self.by_id("pager-next").click()
            self.wait_js("return document.getElementById('pager-info').textContent === '%d\u2013%d of 10000'"
                         % (p * 50 + 1, p * 50 + 50))
            self.assertEqual(self.list_subjects()[0], "bulk %d" % (9999 - p * 50))
            self.assertLess(time.monotonic() - t0, 5)
        self.driver.execute_script("var l=document.getElementById('list'); l.scrollTop=l.scrollHeight")
        self.by_id("pager-prev").click()
        self.wait_js("return document.getElementById('pager-info').textContent === '101\u2013150 of 10000'")
        # a search over all of them, and opening one
        self.by_id("search").send_keys("subject:\"bulk 1234\"")
        self.wait_list(lambda s: s == ["bulk 1234"], "one search hit")
        self.click_message("bulk 1234")
        # a new message arriving while 10,000 are stored still shows up live
        self.driver.execute_script("var b=document.getElementById('search'); b.value='';"
                                   "b.dispatchEvent(new Event('input'))")
        self.wait_js("return document.getElementById('pager-info').textContent.indexOf('of 10000') > 0")
        self.send_plain("the 10001st")
        self.wait_list(lambda s: s and s[0] == "the 10001st", "the newest on top")


def sse_open(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    s.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return s


def sse_read_until(s, needle, timeout=IO_TIMEOUT):
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        data = s.recv(65536)
        if not data:
            break
        buf += data
    return buf


class EventsTest(unittest.TestCase):
    """GET /api/events at the HTTP level (no browser needed)."""

    def setUp(self):
        self.sink = start_sink(self, "--quiet")
        self.port = self.sink.http_port

    def test_stream(self):
        s = sse_open(self.port)
        self.addCleanup(s.close)
        head = sse_read_until(s, b"tern sink events")
        self.assertIn(b"200 OK", head)
        self.assertIn(b"Content-Type: text/event-stream", head)
        with smtplib.SMTP("127.0.0.1", self.sink.smtp_port, timeout=IO_TIMEOUT) as c:
            c.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\nx\r\n")
        self.assertIn(b'event: new\ndata: {"id": 1}\n\n', sse_read_until(s, b'"id": 1}\n\n'))
        from ternlib import http_delete, http_put
        http_delete(self.port, "/api/messages/1")
        self.assertIn(b"event: clear", sse_read_until(s, b"event: clear"))
        http_put(self.port, "/api/faults", {"seed": 7})
        self.assertIn(b"event: faults", sse_read_until(s, b"event: faults"))
        self.assertEqual(http_request_status(self.port, "POST", "/api/events"), 405)

    def test_client_cap_and_close(self):
        socks = [sse_open(self.port) for _ in range(64)]
        for s in socks:
            self.assertIn(b"200 OK", sse_read_until(s, b"tern sink events"))
        extra = sse_open(self.port)
        self.assertIn(b"503", sse_read_until(extra, b"\r\n\r\n"))
        extra.close()
        for s in socks:
            s.close()
        # closed streams are freed: 64 new ones fit again
        def fits():
            t = sse_open(self.port)
            ok = b"200 OK" in sse_read_until(t, b"\r\n\r\n")
            t.close()
            return ok
        self.assertTrue(wait_until(fits, timeout=IO_TIMEOUT))
        again = [sse_open(self.port) for _ in range(63)]
        for s in again:
            self.assertIn(b"200 OK", sse_read_until(s, b"tern sink events"))
            s.close()


class SlowClientTest(unittest.TestCase):
    def test_slow_client_dropped(self):
        """A stream nobody reads is cut once 256 KiB wait for it; the others go on."""
        sink = start_sink(self, "--quiet", "--max-messages", "100")
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", sink.http_port))
        self.addCleanup(slow.close)
        slow.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        good = sse_open(sink.http_port)
        self.addCleanup(good.close)
        sse_read_until(good, b"tern sink events")
        t0 = time.monotonic()
        sent = 0
        with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=IO_TIMEOUT) as s:
            while "dropping a slow client" not in sink.log:
                for _ in range(200):
                    s.sendmail("a@example.com", ["b@example.com"], b"Subject: s\r\n\r\nx\r\n")
                sent += 200
                good.settimeout(0.001)
                try:  # the good client keeps reading
                    while good.recv(1 << 20):
                        pass
                except (socket.timeout, BlockingIOError):
                    pass
                self.assertLess(time.monotonic() - t0, 120, "no drop after %d events" % sent)
        # the slow one gets what was queued, then EOF; the good one still gets events
        slow.settimeout(IO_TIMEOUT)
        while slow.recv(1 << 16):
            pass
        with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=IO_TIMEOUT) as s:
            s.sendmail("a@example.com", ["b@example.com"], b"Subject: last\r\n\r\nx\r\n")
        last = api_json(sink.http_port, "/api/messages/latest")["id"]
        self.assertIn(b'"id": %d}' % last, sse_read_until(good, b'"id": %d}' % last))


def http_request_status(port, method, path):
    from ternlib import http_request
    return http_request(port, method, path).status


if __name__ == "__main__":
    unittest.main()
