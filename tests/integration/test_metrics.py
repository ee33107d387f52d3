"""Metrics: tern serve's admin listener ([admin] listen), `tern sink --metrics` and
`tern send --metrics`, checked with Debian's promtool and scraped by a real Prometheus.

- after N messages sent with smtplib the counters say N; a refused AUTH is in the
  failures; a delivery is in the attempts by courier; the latency histogram counts it;
- `promtool check metrics` passes on the output of serve, sink and send;
- a real `prometheus` (temporary config and storage, loopback) scrapes tern serve every
  second and its HTTP API returns the counter;
- the admin listener refuses a non-loopback address unless [admin] allow_remote.
"""

import csv
import json
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import time
import unittest
import urllib.parse
import urllib.request

from servelib import ServeEnv, cert_paths
from ternlib import IO_TIMEOUT, TERN, free_port, message, start_sink, temp_dir, wait_until

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
N = 3


def scrape(addr):
    """The text of GET http://addr/metrics (asserting its content type)."""
    with urllib.request.urlopen("http://%s/metrics" % addr, timeout=10) as r:
        assert r.status == 200, r.status
        ctype = r.headers["Content-Type"]
        assert ctype == "text/plain; version=0.0.4; charset=utf-8", ctype
        return r.read().decode("utf-8")


def value(text, name, **labels):
    """The value of the sample name{labels} (labels exactly as given), or None."""
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    rx = re.compile(r"^%s%s (\S+)$" % (re.escape(name), re.escape("{%s}" % want) if want else ""),
                    re.M)
    m = rx.search(text)
    return float(m.group(1)) if m else None


def wait_value(addr, name, expect, **labels):
    """Scrape (bounded) until name{labels} == expect; returns the last text."""
    text = ""
    deadline = time.monotonic() + IO_TIMEOUT
    while time.monotonic() < deadline:
        text = scrape(addr)
        if value(text, name, **labels) == expect:
            return text
        time.sleep(0.1)
    raise AssertionError("%s%r never became %r:\n%s" % (name, labels, expect, text))


def promtool_check(test, text):
    test.assertIsNotNone(PROMTOOL, "promtool missing (Debian package prometheus; "
                                   "scripts/install-deps installs it)")
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    # promtool prints lint problems and exits 1 (3 for a parse error)
    test.assertEqual(p.returncode, 0, "promtool check metrics:\n%s%s\n---\n%s" %
                     (p.stdout, p.stderr, text))
    test.assertEqual(p.stdout.strip() + p.stderr.strip(), "")


def verified_context():
    ctx = ssl.create_default_context(cafile=cert_paths()[0])
    return ctx


class ServeMetrics(unittest.TestCase):
    def start(self, **admin):
        env = ServeEnv(self, admin=dict({"listen": "127.0.0.1:0"}, **admin))
        env.add_user("alice@example.test", "pw-alice")
        srv = env.start()
        m = re.search(r"serve info: admin listening on (\S+)", srv.log)
        self.assertIsNotNone(m, srv.log)
        return env, srv, m.group(1)

    def test_counters_after_mail_auth_and_delivery(self):
        env, srv, admin = self.start()
        text = scrape(admin)
        promtool_check(self, text)  # idle: before any traffic
        self.assertEqual(value(text, "tern_smtp_connections_total", listener="smtp"), 0)
        for i in range(N):
            with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=20) as s:
                s.sendmail("someone@remote.test", ["alice@example.test"],
                           message(subject="m%d" % i, to="alice@example.test"))
        # a refused AUTH on submission, over STARTTLS as AUTH requires
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=20) as s:
            s.starttls(context=verified_context())
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                s.login("alice@example.test", "wrong password")
        # and an accepted one
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=20) as s:
            s.starttls(context=verified_context())
            s.login("alice@example.test", "pw-alice")
        self.assertEqual(len(env.wait_maildir("alice@example.test", N)), N)
        text = wait_value(admin, "tern_delivery_attempts_total", N, courier="maildir",
                          **{"class": "ok"})
        promtool_check(self, text)
        self.assertEqual(value(text, "tern_smtp_messages_total", listener="smtp", **{"class": "2xx"}), N)
        self.assertEqual(value(text, "tern_smtp_connections_total", listener="smtp"), N)
        # smtplib's login() tries each offered mechanism: PLAIN, then LOGIN
        self.assertEqual(value(text, "tern_smtp_auth_total", listener="submission",
                               result="failure"), 2)
        self.assertEqual(value(text, "tern_smtp_auth_total", listener="submission",
                               result="success"), 1)
        self.assertEqual(value(text, "tern_smtp_sessions_total", listener="smtp", tls="no"), N)
        self.assertEqual(value(text, "tern_smtp_sessions_total", listener="submission",
                               tls="yes"), 2)
        self.assertGreater(value(text, "tern_smtp_received_bytes_total", listener="smtp"), 100)
        self.assertEqual(value(text, "tern_delivery_latency_seconds_count", courier="maildir"), N)
        self.assertEqual(value(text, "tern_delivery_latency_seconds_bucket", courier="maildir",
                               le="+Inf"), N)
        self.assertEqual(value(text, "tern_delivery_attempt_duration_seconds_count",
                               courier="maildir"), N)
        for st in ("waiting", "due", "in_flight", "held"):
            self.assertEqual(value(text, "tern_queue_items", state=st), 0, st)
        self.assertEqual(value(text, "tern_queue_oldest_item_age_seconds"), 0)
        self.assertEqual(value(text, "tern_smtp_sessions_active", listener="smtp"), 0)
        # only GET/HEAD of /metrics
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen("http://%s/nothing" % admin, timeout=10)
        self.assertEqual(cm.exception.code, 404)
        req = urllib.request.Request("http://%s/metrics" % admin, method="DELETE")
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual(cm.exception.code, 405)

    def test_queue_gauges_with_a_deferred_item(self):
        from servelib import unreachable_remote
        env = ServeEnv(self, admin={"listen": "127.0.0.1:0"},
                       remote=unreachable_remote(self.addCleanup),
                       queue={"retry": "1h", "give_up": "2h"})
        env.add_user("alice@example.test", "pw-alice")
        srv = env.start()
        admin = re.search(r"serve info: admin listening on (\S+)", srv.log).group(1)
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=20) as s:
            s.starttls(context=verified_context())
            s.login("alice@example.test", "pw-alice")
            s.sendmail("alice@example.test", ["bob@remote.test"],
                       message(frm="alice@example.test", to="bob@remote.test"))
        text = wait_value(admin, "tern_queue_items", 1, state="waiting")
        promtool_check(self, text)
        self.assertEqual(value(text, "tern_delivery_attempts_total", courier="smtp",
                               **{"class": "temp"}), 1)
        self.assertGreaterEqual(value(text, "tern_smtp_client_connect_failures_total"), 1)
        self.assertGreaterEqual(value(text, "tern_queue_oldest_item_age_seconds"), 0)
        self.assertLess(value(text, "tern_queue_oldest_item_age_seconds"), 600)

    def test_relay_with_tls_out(self):
        sink = start_sink(self, "--tls", http=None)
        env = ServeEnv(self, admin={"listen": "127.0.0.1:0"},
                       remote={"routes": "remote.test=[127.0.0.1]:%d" % sink.smtp_port,
                               "tls": "may"})
        env.add_user("alice@example.test", "pw-alice")
        srv = env.start()
        admin = re.search(r"serve info: admin listening on (\S+)", srv.log).group(1)
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=20) as s:
            s.starttls(context=verified_context())
            s.login("alice@example.test", "pw-alice")
            s.sendmail("alice@example.test", ["bob@remote.test"],
                       message(frm="alice@example.test", to="bob@remote.test"))
        text = wait_value(admin, "tern_delivery_attempts_total", 1, courier="smtp",
                          **{"class": "ok"})
        promtool_check(self, text)
        self.assertEqual(value(text, "tern_smtp_client_connections_total", tls="yes"), 1)
        self.assertIsNone(value(text, "tern_smtp_client_connections_total", tls="no"))
        self.assertGreater(value(text, "tern_smtp_client_sent_bytes_total"), 200)
        self.assertEqual(value(text, "tern_delivery_latency_seconds_count", courier="smtp"), 1)
        self.assertEqual(value(text, "tern_smtp_messages_total", listener="submission",
                               **{"class": "2xx"}), 1)

    def test_admin_listener_is_loopback_unless_allowed(self):
        env = ServeEnv(self, admin={"listen": "0.0.0.0:9425"})
        p = env.tern("check-config")
        self.assertNotEqual(p.returncode, 0)
        out = p.stdout.decode()
        self.assertRegex(out, r"tern\.conf:\d+: \[admin\] listen: 0\.0\.0\.0:9425 is not a "
                              r"loopback address")
        p = subprocess.run([TERN, "serve", "--config", env.conf_path], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("is not a loopback address", p.stderr)
        env.conf["admin"]["allow_remote"] = "yes"
        env.write_conf()
        p = env.tern("check-config")
        self.assertEqual(p.returncode, 0, p.stdout.decode())
        # off by default: no admin line at all
        env2 = ServeEnv(self)
        srv = env2.start()
        self.assertNotIn("admin listening", srv.log)

    def test_real_prometheus_scrapes_serve(self):
        self.assertIsNotNone(PROMETHEUS, "prometheus missing (Debian package prometheus)")
        env, srv, admin = self.start()
        for i in range(N):
            with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=20) as s:
                s.sendmail("someone@remote.test", ["alice@example.test"], message(subject="p%d" % i))
        d = temp_dir(self.addCleanup, "tern-prom-")
        conf = os.path.join(d, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: tern\n    static_configs:\n"
                    "      - targets: ['%s']\n" % admin)
        port = free_port("127.0.0.1")
        log = open(os.path.join(d, "prometheus.log"), "wb")
        self.addCleanup(log.close)
        prom = subprocess.Popen([PROMETHEUS, "--config.file", conf,
                                 "--storage.tsdb.path", os.path.join(d, "data"),
                                 "--web.listen-address", "127.0.0.1:%d" % port],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

        def stop():
            if prom.poll() is None:
                os.kill(prom.pid, signal.SIGTERM)
                try:
                    prom.wait(30)
                except subprocess.TimeoutExpired:
                    os.kill(prom.pid, signal.SIGKILL)
                    prom.wait(30)
        self.addCleanup(stop)

        def query(q):
            url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": q}))
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return json.load(r)
            except OSError:
                return None
        got = {}

        def seen():
            r = query('tern_smtp_messages_total{listener="smtp",class="2xx"}')
            if r and r.get("status") == "success" and r["data"]["result"]:
                got["v"] = r["data"]["result"][0]["value"][1]
                got["labels"] = r["data"]["result"][0]["metric"]
                return got["v"] == str(N)
            return False
        ok = wait_until(seen, timeout=max(60, IO_TIMEOUT * 3), step=0.5)
        with open(os.path.join(d, "prometheus.log"), "rb") as f:
            plog = f.read().decode(errors="replace")
        self.assertTrue(ok, "prometheus never saw the counter (last %r):\n%s" % (got, plog[-3000:]))
        self.assertEqual(got["labels"]["job"], "tern")
        self.assertEqual(got["labels"]["instance"], admin)
        # the target is healthy: no scrape errors
        r = query('up{job="tern"}')
        self.assertEqual(r["data"]["result"][0]["value"][1], "1")
        stop()
        self.assertEqual(prom.returncode, 0, plog[-3000:])


class SinkSendMetrics(unittest.TestCase):
    def sink(self, *args):
        sink = start_sink(self, "--metrics", "127.0.0.1:0", *args, http=None)
        m = re.search(r"sink info: metrics listening on (\S+)", sink.log)
        self.assertIsNotNone(m, sink.log)
        return sink, m.group(1)

    def test_sink(self):
        sink, addr = self.sink("--close-first", "1")
        # the first connection is cut at MAIL (421, then close): a fault
        with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=20) as s:
            with self.assertRaises(smtplib.SMTPSenderRefused) as e:
                s.sendmail("a@example.org", ["b@example.net"], message())
            self.assertEqual(e.exception.smtp_code, 421)
        for i in range(N):
            with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=20) as s:
                s.sendmail("a@example.org", ["b@example.net"], message(subject="s%d" % i))
        text = wait_value(addr, "tern_sink_messages_total", N)
        promtool_check(self, text)
        self.assertEqual(value(text, "tern_sink_faults_total", kind="close-421"), 1)
        self.assertEqual(value(text, "tern_smtp_connections_total", listener="smtp"), N + 1)
        self.assertEqual(value(text, "tern_smtp_messages_total", listener="smtp",
                               **{"class": "2xx"}), N)
        self.assertIsNone(value(text, "tern_queue_items", state="waiting"))  # serve's only

    def send(self, sink, *extra):
        """Run tern send with --metrics (lingering) to sink; (process, metrics address)."""
        d = temp_dir(self.addCleanup, "tern-send-metrics-")
        tpl = os.path.join(d, "t.txt")
        with open(tpl, "w") as f:
            f.write("From: n@example.org\nTo: {{email}}\nSubject: hi\n\nHello.\n")
        lst = os.path.join(d, "list.csv")
        with open(lst, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["email"])
            for i in range(N):
                w.writerow(["user%d@example.net" % i])
        addr = "127.0.0.1:%d" % free_port("127.0.0.1")
        p = subprocess.Popen([TERN, "send", "--to", lst, "--template", tpl, "--from",
                              "n@example.org", "--server", "127.0.0.1:%d" % sink.smtp_port,
                              "--reconnect-base", "20ms", "--metrics", addr,
                              "--metrics-linger", "60s", "--quiet"] + list(extra),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)

        def stop():
            if p.poll() is None:  # lingering: SIGTERM ends it like any batch job
                os.kill(p.pid, signal.SIGTERM)
                p.wait(30)
            p.stdout.close()
        self.addCleanup(stop)
        self.assertTrue(wait_until(lambda: _connects(addr), timeout=IO_TIMEOUT))
        return p, addr

    def test_send(self):
        sink, _ = self.sink("--tls")
        p, addr = self.send(sink, "--tls-opportunistic")
        text = wait_value(addr, "tern_send_messages_total", N, result="sent")
        promtool_check(self, text)
        self.assertEqual(value(text, "tern_send_messages_total", result="failed"), 0)
        self.assertEqual(value(text, "tern_send_retries_total"), 0)
        self.assertEqual(value(text, "tern_smtp_client_connections_total", tls="yes"), 1)
        self.assertGreater(value(text, "tern_smtp_client_sent_bytes_total"), 100)
        self.assertIsNone(value(text, "tern_smtp_connections_total", listener="smtp"))
        self.assertIsNone(p.poll())  # --metrics-linger: still up for a last scrape

    def test_send_retries_and_failures(self):
        sink, _ = self.sink("--fail", "RCPT:451:100")
        p, addr = self.send(sink, "--attempts", "2")
        text = wait_value(addr, "tern_send_messages_total", N, result="failed")
        promtool_check(self, text)
        self.assertEqual(value(text, "tern_send_messages_total", result="sent"), 0)
        self.assertEqual(value(text, "tern_send_retries_total"), N)  # each tried twice


def _connects(addr):
    try:
        scrape(addr)
        return True
    except OSError:
        return False


if __name__ == "__main__":
    unittest.main()
