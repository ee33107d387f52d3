"""tern under systemd: the unit file (dist/tern.service), sd_notify, TLS reload on SIGHUP.

- The unit passes `systemd-analyze verify` (with ExecStart pointing at $TERN) and
  `systemd-analyze security --offline` rates it OK.
- Run as root with exactly the unit's CapabilityBoundingSet and NoNewPrivileges (setpriv),
  tern binds a port below 1024, hands over its spool, becomes its user, delivers, and starts
  again on that spool; without CAP_NET_BIND_SERVICE it cannot bind.
- Under strace, every system call tern makes (start, drop, STARTTLS, delivery, reload, stop)
  is one the unit's SystemCallFilter= allows.
- NOTIFY_SOCKET points at a datagram socket the test binds (what systemd does): READY=1
  once the port listens, STATUS= with the queue size and sessions, RELOADING=1 (with
  MONOTONIC_USEC=) then READY=1 on SIGHUP, STOPPING=1 on SIGTERM.
- TLS reload: certificate A, then a bad key (logged, A stays), then certificate B: new
  STARTTLS and implicit-TLS connections see B; a session opened under A goes on.
"""

import faulthandler
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import time
import unittest

from servelib import AS_ROOT, TERN, ServeEnv, serve_user_ids
from ternlib import IO_TIMEOUT, Daemon, message, send_raw, temp_dir, write_file

SOURCE = os.environ.get("TERN_SOURCE", os.path.join(os.path.dirname(__file__), "..", ".."))
UNIT = os.path.join(SOURCE, "dist", "tern.service")


def unit_for(test):
    """dist/tern.service copied to a temporary folder with /usr/sbin/tern replaced by $TERN
    (verify wants ExecStart's program to exist): (its path, the original text)."""
    with open(UNIT) as f:
        text = f.read()
    path = os.path.join(temp_dir(test.addCleanup, "tern-systemd-"), "tern.service")
    write_file(path, text.replace("/usr/sbin/tern", os.path.abspath(TERN)))
    return path, text


def unit_values(text, key):
    return [line.split("=", 1)[1].strip() for line in text.splitlines()
            if line.startswith(key + "=")]


class UnitFile(unittest.TestCase):
    def test_verify(self):
        path, text = unit_for(self)
        # Documentation= names man pages: verify runs man(1) on each; give it the project's
        # (man/) in a MANPATH, as they are once installed
        manpath = os.path.join(os.path.dirname(path), "man")
        docs = " ".join(unit_values(text, "Documentation")).split()
        self.assertTrue(docs)
        for doc in docs:
            m = re.fullmatch(r"man:([a-z.-]+)\(([1-8])\)", doc)
            self.assertIsNotNone(m, doc)
            page = "%s.%s" % (m.group(1), m.group(2))
            os.makedirs(os.path.join(manpath, "man" + m.group(2)), exist_ok=True)
            shutil.copyfile(os.path.join(SOURCE, "man", page),
                            os.path.join(manpath, "man" + m.group(2), page))
        p = subprocess.run(["systemd-analyze", "verify", path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60,
                           env=dict(os.environ, MANPATH=manpath))
        out = p.stdout.decode(errors="replace")
        self.assertEqual(p.returncode, 0, out)
        self.assertNotIn("tern.service", out, out)  # no warning about the unit
        for key, want in (("Type", "notify"), ("ExecReload", "/bin/kill -HUP $MAINPID"),
                          ("Restart", "on-failure"), ("ProtectSystem", "strict"),
                          ("ReadWritePaths", "/var/lib/tern"), ("NoNewPrivileges", "yes"),
                          ("PrivateTmp", "yes")):
            self.assertEqual(unit_values(text, key), [want], key)
        self.assertEqual(unit_values(text, "ExecStart"),
                         ["/usr/sbin/tern serve --config /etc/tern/tern.conf"])
        self.assertTrue(unit_values(text, "CapabilityBoundingSet"))

    def test_security_exposure(self):
        path, _ = unit_for(self)
        p = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode(errors="replace")
        m = re.search(r"Overall exposure level for tern.service: ([0-9.]+) (\w+)", out)
        self.assertIsNotNone(m, out)
        self.assertLess(float(m.group(1)), 4.0, out[-3000:])


# ---- the unit's capability set, for real --------------------------------------------


def privileged_port():
    """A loopback TCP port below 1024 that is free now (root only)."""
    for port in range(940, 1020):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no loopback port free below 1024")


class SandboxedServe(Daemon):
    name = "serve"
    kinds = ("smtp", "submission", "submissions")

    def __init__(self, caps, conf_path, wrap=()):
        """caps: the bounding set (None: as it is); wrap: a program to run tern under."""
        pre = []
        if caps is not None:
            bset = "-all" + "".join(",+" + c.lower()[len("cap_"):] for c in caps)
            pre = ["setpriv", "--no-new-privs", "--bounding-set", bset, "--inh-caps", "-all"]
        super().__init__(pre + list(wrap) + [TERN, "serve", "--config", conf_path])

    def port(self, kind="smtp"):
        return self.listeners[kind][0][1]


@unittest.skipUnless(AS_ROOT, "the capability bounding set matters only to a start as root")
class Capabilities(unittest.TestCase):
    def caps(self):
        with open(UNIT) as f:
            v = unit_values(f.read(), "CapabilityBoundingSet")
        self.assertEqual(len(v), 1)
        return v[0].split()

    def test_start_drop_deliver_restart(self):
        if not shutil.which("setpriv"):
            self.fail("setpriv (util-linux) is missing: scripts/install-deps")
        port = privileged_port()
        env = ServeEnv(self, listen={"smtp": "127.0.0.1:%d" % port})
        env.add_domain("example.test")
        env.add_user("alice@example.test", "pw-alice")
        env.hand_over()
        for n in (1, 2):  # the second start walks a spool the user owns already
            srv = SandboxedServe(self.caps(), env.conf_path)
            self.addCleanup(srv.check_clean_exit)
            self.assertEqual(srv.port(), port)
            self.assertRegex(srv.log, r"running as user nobody")
            send_raw(port, "x@remote.test", ["alice@example.test"], message(subject="cap %d" % n))
            self.assertEqual(len(env.wait_maildir("alice@example.test", n)), n, srv.log)
            self.assertEqual(srv.stop(), 0, srv.log)
        st = os.stat(os.path.join(env.data_dir, "queue"))
        self.assertEqual((st.st_uid, st.st_gid), serve_user_ids())

    def test_without_net_bind_service_no_low_port(self):
        port = privileged_port()
        env = ServeEnv(self, listen={"smtp": "127.0.0.1:%d" % port})
        caps = [c for c in self.caps() if c != "CAP_NET_BIND_SERVICE"]
        with self.assertRaises(RuntimeError) as cm:
            SandboxedServe(caps, env.conf_path)
        self.assertIn("cannot listen", str(cm.exception))


# ---- the unit's system call filter, against what tern calls --------------------------


def syscall_set(spec):
    """The system calls a SystemCallFilter= group (or call) allows, groups expanded."""
    out = set()
    todo, seen = [spec], set()
    while todo:
        g = todo.pop()
        if g in seen:
            continue
        seen.add(g)
        if not g.startswith("@"):
            out.add(g)
            continue
        p = subprocess.run(["systemd-analyze", "syscall-filter", g], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("systemd-analyze syscall-filter %s: %s" % (g, p.stdout))
        for line in p.stdout.decode().splitlines()[1:]:
            w = line.strip()
            if w and not w.startswith("#"):
                todo.append(w)
    return out


class SyscallFilter(unittest.TestCase):
    def test_calls_within_filter(self):
        """Under strace -f: start (as root: hand over, drop), STARTTLS, a delivery, sd_notify,
        SIGHUP, SIGTERM; every system call made is one the unit's SystemCallFilter= allows."""
        if not shutil.which("strace"):
            self.fail("strace is missing: scripts/install-deps")
        with open(UNIT) as f:
            filt = unit_values(f.read(), "SystemCallFilter")
        self.assertEqual(len(filt), 1)
        allowed = set()
        for spec in filt[0].split():
            allowed |= syscall_set(spec)
        self.assertIn("execve", allowed)

        env = ServeEnv(self)
        env.add_user("alice@example.test", "pw-alice")
        env.hand_over()
        notify = NotifySocket(self, env.dir)
        trace = os.path.join(temp_dir(self.addCleanup, "tern-strace-"), "calls")
        saved = dict(os.environ)
        os.environ["NOTIFY_SOCKET"] = notify.path
        # LeakSanitizer cannot run under ptrace (the ASan build): no leak check here
        os.environ["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                             "detect_leaks=0"]))
        try:
            d = SandboxedServe(None, env.conf_path, ["strace", "-f", "-qq", "-o", trace])
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.addCleanup(d.check_clean_exit)
        with open(os.path.join(env.data_dir, "tern.pid")) as f:
            pid = int(f.read())  # tern, under strace (which leaves it running if stopped)

        def kill():  # after a failure: tern (then strace ends), whatever strace's state
            if d.running():
                d.killed = True
            try:  # only if that pid is still our tern (a pid may be reused)
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    ours = env.conf_path.encode() in f.read()
            except OSError:
                ours = False
            if ours:
                os.kill(pid, signal.SIGKILL)
        self.addCleanup(kill)
        notify.wait(lambda m: m.get("READY") == "1")
        starttls_cert(d.port())
        send_raw(d.port(), "x@remote.test", ["alice@example.test"], message())
        self.assertEqual(len(env.wait_maildir("alice@example.test", 1)), 1, d.log)
        os.kill(pid, signal.SIGHUP)
        notify.wait(lambda m: m.get("RELOADING") == "1")
        notify.wait(lambda m: m.get("READY") == "1")
        os.kill(pid, signal.SIGTERM)
        d.proc.wait(IO_TIMEOUT)
        self.assertEqual(d.stop(), 0, d.log)
        used = set()
        with open(trace) as f:
            for line in f:
                m = re.match(r"\d+ +(?:<\.\.\. )?([a-z0-9_]+)[( ]", line)
                if m and not line.split(None, 1)[1].startswith(("+++", "---")):
                    used.add(m.group(1))
        self.assertIn("execve", used)
        self.assertGreater(len(used), 30)
        self.assertEqual(sorted(used - allowed), [], "calls outside SystemCallFilter=%s" % filt[0])


# ---- sd_notify ------------------------------------------------------------------------


class NotifySocket:
    """A unix datagram socket standing in for systemd's notify socket."""

    def __init__(self, test, folder):
        self.path = os.path.join(folder, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)  # the server sends after becoming its user
        test.addCleanup(self.sock.close)
        self.msgs = []

    def wait(self, pred, timeout=IO_TIMEOUT):
        """Receive until a message (a dict of its NAME=value lines) satisfies pred; it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no such sd_notify message; got %r" % self.msgs)
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            d = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            self.msgs.append(d)
            if pred(d):
                return d


def start_notified(test, env, notify):
    old = os.environ.get("NOTIFY_SOCKET")
    os.environ["NOTIFY_SOCKET"] = notify.path
    try:
        return env.start()
    finally:
        if old is None:
            del os.environ["NOTIFY_SOCKET"]
        else:
            os.environ["NOTIFY_SOCKET"] = old


class Notify(unittest.TestCase):
    def test_ready_status_reload_stop(self):
        env = ServeEnv(self, local={"delivery": "mda"})
        env.conf["local"]["mda_command"] = env.write_script(
            "tempfail", "#!/bin/sh\ncat >/dev/null; exit 75\n")
        env.write_conf()
        env.add_user("alice@example.test", "pw-alice")
        notify = NotifySocket(self, env.dir)
        srv = start_notified(self, env, notify)
        ready = notify.wait(lambda m: m.get("READY") == "1")
        with socket.create_connection(("127.0.0.1", srv.port()), timeout=IO_TIMEOUT):
            pass  # listening by then
        self.assertEqual(ready.get("STATUS"), "queue 0 items, 0 sessions")

        # a session open, then a message deferred (the MDA says 75, try later): STATUS follows
        with socket.create_connection(("127.0.0.1", srv.port()), timeout=IO_TIMEOUT) as s:
            s.recv(512)
            notify.wait(lambda m: m.get("STATUS") == "queue 0 items, 1 session")
        send_raw(srv.port(), "x@remote.test", ["alice@example.test"], message())
        notify.wait(lambda m: m.get("STATUS") == "queue 1 item, 0 sessions")

        srv.signal(signal.SIGHUP)
        rel = notify.wait(lambda m: m.get("RELOADING") == "1")
        self.assertRegex(rel.get("MONOTONIC_USEC", ""), r"^[0-9]+$")
        usec = int(rel["MONOTONIC_USEC"])
        self.assertLess(abs(usec / 1e6 - time.clock_gettime(time.CLOCK_MONOTONIC)), 60)
        again = notify.wait(lambda m: m.get("READY") == "1")
        self.assertEqual(again.get("STATUS"), "queue 1 item, 0 sessions")
        self.assertTrue(srv.wait_log(r"serve info: reloaded "), srv.log)

        srv.signal(signal.SIGTERM)
        notify.wait(lambda m: m.get("STOPPING") == "1")
        self.assertEqual(srv.stop(), 0, srv.log)

    def test_notify_socket_gone(self):
        """A NOTIFY_SOCKET nobody listens on: one warning, the server works on."""
        env = ServeEnv(self)
        env.add_domain("example.test")
        env.add_user("alice@example.test", "pw-alice")
        notify = NotifySocket(self, env.dir)
        notify.sock.close()
        os.unlink(notify.path)
        srv = start_notified(self, env, notify)
        self.assertTrue(srv.wait_log(r"serve warning: sd_notify: "), srv.log)
        send_raw(srv.port(), "x@remote.test", ["alice@example.test"], message())
        self.assertEqual(len(env.wait_maildir("alice@example.test", 1)), 1)
        srv.signal(signal.SIGHUP)
        self.assertTrue(srv.wait_log(r"serve info: reloaded "), srv.log)
        self.assertEqual(srv.count_log(r"sd_notify: ", 1), 1)


# ---- TLS certificates reloaded on SIGHUP ----------------------------------------------


def make_cert(folder, name):
    """A self-signed P-256 certificate for NAME: (cert path, key path, DER)."""
    cert, key = os.path.join(folder, name + ".crt"), os.path.join(folder, name + ".key")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=%s" % name],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl req: %s" % p.stdout.decode(errors="replace"))
    with open(cert) as f:
        return cert, key, ssl.PEM_cert_to_DER_cert(f.read())


def install(src, dst):
    """Put src in place of dst the way certbot does (a new file, renamed over); readable by
    the server's user (as a group-readable key is on a real system)."""
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o600)
    if AS_ROOT:
        os.chown(tmp, *serve_user_ids())
    os.rename(tmp, dst)


def client_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def starttls_cert(port):
    with smtplib.SMTP("127.0.0.1", port, timeout=IO_TIMEOUT) as c:
        c.starttls(context=client_context())
        return c.sock.getpeercert(binary_form=True)


def implicit_cert(port):
    with smtplib.SMTP_SSL("127.0.0.1", port, timeout=IO_TIMEOUT, context=client_context()) as c:
        return c.sock.getpeercert(binary_form=True)


class TlsReload(unittest.TestCase):
    def test_renewal(self):
        certs = temp_dir(self.addCleanup, "tern-certs-")
        a_crt, a_key, a_der = make_cert(certs, "a.example.test")
        b_crt, b_key, b_der = make_cert(certs, "b.example.test")
        env = ServeEnv(self, tls={"cert": None, "key": None})
        os.makedirs(env.path("tls"))
        live_crt, live_key = env.path("tls", "cert.pem"), env.path("tls", "key.pem")
        install(a_crt, live_crt)
        install(a_key, live_key)
        env.conf["tls"] = {"cert": live_crt, "key": live_key}
        env.write_conf()
        srv = env.start()
        self.assertEqual(starttls_cert(srv.port()), a_der)
        self.assertEqual(implicit_cert(srv.port("submissions")), a_der)

        # a session in TLS under A, kept open through both reloads
        old = smtplib.SMTP("127.0.0.1", srv.port(), timeout=IO_TIMEOUT)
        self.addCleanup(old.close)
        old.starttls(context=client_context())
        self.assertEqual(old.sock.getpeercert(binary_form=True), a_der)

        # a bad new key (B's certificate, a key that is not PEM): logged, A stays
        install(b_crt, live_crt)
        write_file(live_key + ".new", "-----BEGIN PRIVATE KEY-----\nnot a key\n")
        if AS_ROOT:
            os.chown(live_key + ".new", *serve_user_ids())
        os.rename(live_key + ".new", live_key)
        srv.signal(signal.SIGHUP)
        self.assertTrue(srv.wait_log(r"serve error: reload: TLS: .*old certificate stays"),
                        srv.log)
        self.assertEqual(starttls_cert(srv.port()), a_der)
        self.assertEqual(old.noop()[0], 250)

        if AS_ROOT:  # a key only root may read (the server reads it as its user): logged
            install(b_key, live_key)
            os.chown(live_key, 0, 0)
            srv.signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log(r"serve error: reload: TLS: .*key.pem: Permission "
                                         r"denied: the server's user must be able to read the key"),
                            srv.log)
            self.assertEqual(starttls_cert(srv.port()), a_der)

        # certificate B whole: new connections see it, the old session goes on
        install(b_key, live_key)
        srv.signal(signal.SIGHUP)
        self.assertTrue(srv.wait_log(r"serve info: reload: TLS certificate .* loaded"), srv.log)
        self.assertEqual(starttls_cert(srv.port()), b_der)
        self.assertEqual(starttls_cert(srv.port("submission")), b_der)
        self.assertEqual(implicit_cert(srv.port("submissions")), b_der)
        self.assertEqual(old.noop()[0], 250)
        self.assertEqual(old.sock.getpeercert(binary_form=True), a_der)
        old.quit()


if __name__ == "__main__":
    # a hang anywhere shows where, well before ctest's timeout ends the run without a word
    faulthandler.dump_traceback_later(300, exit=True)
    unittest.main()
