"""test_limits - `tern serve` under attack: every connection, time and memory limit.

Standard library only; loopback only (127.0.0.0/8 gives several client
addresses).  Each test starts its own server with small limits and ends it by
its PID (servelib's cleanup checks a clean exit and no sanitizer report).

- per address (421 4.7.0 and close, before any hook), per /24 (four times the
  address's share), connection rate per minute, max_sessions in all;
- command_timeout against slowloris (one octet every half second), data_timeout,
  session_timeout: 421 4.4.2 and close;
- accept errors: with RLIMIT_NOFILE 128 (prlimit on the server's PID) and 200
  idle clients the listener pauses instead of spinning (few log lines, little
  CPU), and serves again once the clients leave;
- the listen backlog is the one intended (ss shows it as Send-Q);
- body_memory: several concurrent large bodies against a small budget get
  452 4.3.1, the sessions go on, and the server's RSS stays bounded.

Environment: TERN is the tern binary (default /work/main/build/tern).
"""

import os
import re
import socket
import subprocess
import threading
import time
import unittest

from servelib import TERN, Serve, ServeEnv, wait_until
from ternlib import ConnectionClosed, Daemon, Dialogue, message

NO_CLIENT_LIMITS = {"max_sessions_per_ip": "0", "max_connect_rate_per_ip": "0"}


def connect(port, source="127.0.0.1", timeout=10):
    """A raw socket from the loopback address `source`."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0))


def first_line(sock):
    """The first reply line, or "" when the server closed without one."""
    buf = b""
    while b"\n" not in buf:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            break
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n")[0].decode(errors="replace").rstrip("\r")


def closed(sock, timeout=10):
    sock.settimeout(timeout)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


class NofileServe(Serve):
    """`tern serve` started under `prlimit --nofile=N` (prlimit execs it: same PID)."""

    def __init__(self, conf_path, nofile):
        Daemon.__init__(self, ["prlimit", "--nofile=%d:%d" % (nofile, nofile), "--", TERN,
                               "serve", "--config", conf_path])


def server(test, nofile=None, **server_keys):
    env = ServeEnv(test, server=server_keys)
    env.add_user("alice@example.test", "pw-alice")
    if nofile is None:
        return env, env.start()
    env.hand_over()
    srv = NofileServe(env.conf_path, nofile)
    test.addCleanup(srv.check_clean_exit)
    return env, srv


class ClientLimitsTest(unittest.TestCase):
    def test_per_address(self):
        env, srv = server(self, max_sessions_per_ip="3", max_connect_rate_per_ip="0")
        port = srv.port()
        held = [connect(port) for _ in range(3)]
        self.addCleanup(lambda: [s.close() for s in held])
        for s in held:
            self.assertTrue(first_line(s).startswith("220 "))
        over = connect(port)
        self.assertEqual(first_line(over),
                         "421 4.7.0 mx.example.test Too many connections from your address")
        self.assertTrue(closed(over))
        over.close()
        # another address has its own share; the submission port shares the count
        other = connect(port, "127.0.0.2")
        self.assertTrue(first_line(other).startswith("220 "))
        other.close()
        sub = connect(srv.port("submission"))
        self.assertTrue(first_line(sub).startswith("421 4.7.0 "))
        sub.close()
        # a client that leaves frees its place
        held.pop().close()

        def admitted():
            s = connect(port)
            ok = first_line(s).startswith("220 ")
            if ok:
                held.append(s)
            else:
                s.close()
            return ok
        self.assertTrue(wait_until(admitted, timeout=10, step=0.2))
        self.assertTrue(srv.wait_log(r"refused a connection from 127\.0\.0\.1:\d+: Too many connections"))

    def test_per_network(self):
        # one session per address, four per /24
        env, srv = server(self, max_sessions_per_ip="1", max_connect_rate_per_ip="0")
        port = srv.port()
        held = [connect(port, "127.0.0.%d" % i) for i in range(1, 5)]
        self.addCleanup(lambda: [s.close() for s in held])
        for s in held:
            self.assertTrue(first_line(s).startswith("220 "))
        over = connect(port, "127.0.0.5")
        self.assertTrue(first_line(over).startswith("421 4.7.0 "))
        over.close()
        other = connect(port, "127.0.1.1")  # another /24
        self.assertTrue(first_line(other).startswith("220 "))
        other.close()

    def test_rate(self):
        env, srv = server(self, max_sessions_per_ip="0", max_connect_rate_per_ip="5")
        port = srv.port()
        for _ in range(5):
            with Dialogue(port) as d:
                d.expect(220)
                d.cmd("QUIT", 221)
        s = connect(port)
        self.assertEqual(first_line(s), "421 4.7.0 mx.example.test Too many connections "
                         "per minute from your address")
        self.assertTrue(closed(s))
        s.close()
        with Dialogue(port, host="127.0.0.1") as d:  # still refused: the rate is per minute
            r = d.reply()
            self.assertEqual((r.code, r.enh), (421, "4.7.0"))
        s = connect(port, "127.0.0.9")  # another address is not slowed down
        self.assertTrue(first_line(s).startswith("220 "))
        s.close()

    def test_max_sessions(self):
        env, srv = server(self, max_sessions="4", **NO_CLIENT_LIMITS)
        port = srv.port()
        held = [connect(port, "127.0.0.%d" % (i + 1)) for i in range(4)]
        self.addCleanup(lambda: [s.close() for s in held])
        for s in held:
            self.assertTrue(first_line(s).startswith("220 "))
        over = connect(port, "127.0.2.1")
        self.assertEqual(first_line(over),
                         "421 4.7.0 mx.example.test Too many connections, try again later")
        over.close()
        self.assertIn("at most 4 sessions", srv.log)


class DeadlineTest(unittest.TestCase):
    def test_slowloris_command(self):
        env, srv = server(self, command_timeout="2s", idle_timeout="5m")
        with Dialogue(srv.port()) as d:
            d.expect(220)
            d.cmd("EHLO slow.test", 250)
            start = time.monotonic()
            got = None
            for ch in b"NOOP NOOP NOOP NOOP NOOP\r\n":
                try:
                    d.send(bytes([ch]))
                except OSError:
                    break
                time.sleep(0.5)
                d.settimeout(0.01)
                try:
                    got = d.reply()
                    break
                except (socket.timeout, TimeoutError):
                    pass
                except ConnectionClosed:
                    break
            if got is None:
                d.settimeout(10)
                got = d.reply()
            took = time.monotonic() - start
            self.assertEqual((got.code, got.enh), (421, "4.4.2"))
            self.assertIn("timeout exceeded", got.text)
            self.assertGreaterEqual(took, 1.9)
            self.assertLess(took, 6)
            self.assertTrue(d.is_closed())
        self.assertTrue(srv.wait_log(r"session \d+: command timeout"))

    def test_commands_in_time_are_fine(self):
        env, srv = server(self, command_timeout="2s")
        with Dialogue(srv.port()) as d:
            d.expect(220)
            for _ in range(3):
                time.sleep(1.2)  # idle between commands is idle_timeout's business
                d.cmd("NOOP", 250)

    def test_data_timeout(self):
        env, srv = server(self, data_timeout="2s")
        with Dialogue(srv.port()) as d:
            d.expect(220)
            d.cmd("EHLO slow.test", 250)
            d.cmd("MAIL FROM:<a@remote.test>", 250)
            d.cmd("RCPT TO:<alice@example.test>", 250)
            d.cmd("DATA", 354)
            start = time.monotonic()
            d.settimeout(0.5)
            got = None
            while got is None and time.monotonic() - start < 10:
                try:
                    d.send(b"a line of a slow message\r\n")
                    got = d.reply()
                except (socket.timeout, TimeoutError):
                    pass
                except (ConnectionClosed, OSError):
                    break
            self.assertIsNotNone(got)
            self.assertEqual((got.code, got.enh), (421, "4.4.2"))
            self.assertLess(time.monotonic() - start, 6)

    def test_session_timeout(self):
        env, srv = server(self, session_timeout="3s")
        with Dialogue(srv.port()) as d:
            start = time.monotonic()
            d.expect(220)
            d.cmd("EHLO busy.test", 250)
            d.settimeout(10)
            while True:
                r = d.cmd("NOOP")
                if r.code != 250:
                    break
                time.sleep(0.3)
            self.assertEqual((r.code, r.enh), (421, "4.4.2"))
            self.assertGreaterEqual(time.monotonic() - start, 2.9)
            self.assertLess(time.monotonic() - start, 8)
        self.assertTrue(srv.wait_log(r"session \d+: session timeout"))


class ListenerTest(unittest.TestCase):
    def test_backlog(self):
        env, srv = server(self)
        out = subprocess.run(["ss", "-ltnH", "sport = :%d" % srv.port()], capture_output=True,
                             text=True, check=True).stdout.split()
        self.assertEqual(out[0], "LISTEN")
        with open("/proc/sys/net/core/somaxconn") as f:
            self.assertEqual(int(out[2]), min(1024, int(f.read())))

    def test_accept_errors_pause(self):
        """EMFILE: no spin, bounded log, and service again once the clients leave."""
        env, srv = server(self, nofile=128, max_sessions="1000", **NO_CLIENT_LIMITS)
        port = srv.port()
        clients = []
        self.addCleanup(lambda: [s.close() for s in clients])
        for _ in range(200):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            clients.append(s)
        self.assertTrue(srv.wait_log(r"accept on .*Too many open files; pausing"))
        time.sleep(0.5)
        log0, cpu0, t0 = srv.log_size(), cpu_seconds(srv.pid), time.monotonic()
        time.sleep(4)
        cpu = (cpu_seconds(srv.pid) - cpu0) / (time.monotonic() - t0)
        grown = srv.log.encode()[log0:].decode(errors="replace")
        pauses = len(re.findall(r"accept on .*pausing", grown))
        self.assertLess(cpu, 0.25, "the server spins at %.0f %% CPU" % (cpu * 100))
        self.assertLessEqual(pauses, 6, "%d pause lines in 4 s" % pauses)
        self.assertGreaterEqual(pauses, 2)  # still paused and retrying: the clients stay
        for s in clients:
            s.close()
        clients.clear()

        def served():
            try:
                with Dialogue(srv.port(), timeout=3) as d:
                    d.expect(220)
                    d.cmd("NOOP", 250)
                    return True
            except (OSError, ConnectionClosed, AssertionError):
                return False
        self.assertTrue(wait_until(served, timeout=20, step=0.5))


class BodyMemoryTest(unittest.TestCase):
    def test_budget(self):
        # a sanitizer build keeps freed memory in quarantine: keep it small so that the RSS
        # shows what is live (no effect on a normal build)
        asan = os.environ.get("ASAN_OPTIONS")
        os.environ["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "quarantine_size_mb=1"
        try:
            env, srv = server(self, body_memory="4M", max_size="20M", **NO_CLIENT_LIMITS)
        finally:
            if asan is None:
                del os.environ["ASAN_OPTIONS"]
            else:
                os.environ["ASAN_OPTIONS"] = asan
        port = srv.port()
        body = ("x" * 998 + "\r\n").encode() * (12 * 1024)  # 12 MiB
        rss0 = rss_kib(srv.pid)
        peak = [rss0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], rss_kib(srv.pid))
                except OSError:
                    return
                time.sleep(0.02)
        sampler = threading.Thread(target=sample)
        sampler.start()
        results = []

        def client(i):
            with Dialogue(port, timeout=60) as d:
                d.expect(220)
                d.cmd("EHLO c%d.test" % i, 250)
                r = d.transaction("a@remote.test", ["alice@example.test"],
                                  message(subject="big %d" % i, body="") + body)
                after = d.cmd("NOOP").code  # the session goes on
                results.append((r.code, r.enh, after))
        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        done.set()
        sampler.join()
        self.assertEqual(len(results), 8, results)
        self.assertTrue(all(r in ((250, "2.0.0", 250), (452, "4.3.1", 250)) for r in results),
                        results)
        self.assertGreaterEqual(sum(r[0] == 452 for r in results), 4, results)
        # 8 x 12 MiB unbudgeted would be over 96 MiB of buffers (192 with the doubling)
        grown = (peak[0] - rss0) / 1024
        self.assertLess(grown, 64, "RSS grew by %.0f MiB" % grown)
        self.assertTrue(srv.wait_log(r"body memory budget exhausted"))
        # a small message still passes
        with Dialogue(port) as d:
            d.expect(220)
            d.cmd("EHLO small.test", 250)
            r = d.transaction("a@remote.test", ["alice@example.test"], message())
            self.assertEqual(r.code, 250)


if __name__ == "__main__":
    unittest.main()
