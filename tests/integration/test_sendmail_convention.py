"""The whole sendmail convention (Postfix's sendmail(1)) against a real `tern serve`.

tern is linked as `sendmail` and `mailq`, `newaliases`; the real programs that call
sendmail -- Debian's cron, bsd-mailx's mail(1), git send-email -- are run against it.
cron and mail(1) have /usr/sbin/sendmail compiled in: they run in a private mount
namespace (unshare -m) where a wrapper is bind-mounted over /usr/sbin/sendmail; the
wrapper records its argv and execs the tern link with TERN_CONFIG set.

Runs as root (unshare, mount, cron); the tools come from scripts/install-deps
(cron, bsd-mailx, git-email): a missing one fails the test.
"""

import os
import re
import select
import shutil
import subprocess
import time
import unittest

from servelib import AS_ROOT, TERN, ServeEnv, temp_dir, write_file

CRON = "/usr/sbin/cron"
MAILX = "/usr/bin/bsd-mailx"


def need(test, path):
    if not (shutil.which(path) if "/" not in path else os.access(path, os.X_OK)):
        test.fail("%s is missing: run scripts/install-deps" % path)


class SendmailConventionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # remote.test goes to a port where nothing listens: its mail stays queued
        cls.env = ServeEnv(cleanup=cls.addClassCleanup,
                           remote={"routes": "remote.test=[127.0.0.1]:9", "timeout": "2s"})
        env = cls.env
        env.add_user("alice@example.test", "pw")
        env.write_aliases("example.test", "root: alice\nme: alice\n")
        cls.serve = env.start()
        # the links and the /usr/sbin/sendmail wrapper live outside the served folder
        # (root's, as on a real system: ServeEnv hands its folder to the server's user)
        cls.bin = temp_dir(cls.addClassCleanup, "tern-sm-bin-")
        os.chmod(cls.bin, 0o755)
        for name in ("sendmail", "mailq", "newaliases"):
            os.symlink(TERN, os.path.join(cls.bin, name))
        cls.link = os.path.join(cls.bin, "sendmail")
        cls.calls = os.path.join(cls.bin, "calls")
        os.mkdir(cls.calls)
        cls.wrapper = write_file(os.path.join(cls.bin, "sendmail-wrapper"),
                                 "#!/bin/sh\n"
                                 "printf '%%s\\0' \"$@\" >'%s'/$$\n"
                                 "TERN_CONFIG='%s' exec '%s' \"$@\"\n"
                                 % (cls.calls, env.conf_path, cls.link), 0o755)

    def run_tern(self, argv0, args, text="", env=None, timeout=60):
        e = dict(os.environ, TERN_CONFIG=self.env.conf_path)
        e.update(env or {})
        return subprocess.run([os.path.join(self.bin, argv0)] + args, input=text.encode(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                              timeout=timeout)

    def wait_subject(self, subject, timeout=20):
        msgs = self.env.wait_maildir("alice@example.test", 1, timeout=timeout, subject=subject)
        self.assertEqual(len(msgs), 1, "no message %r for alice" % subject)
        return msgs[0]

    def recorded_calls(self, old=()):
        """The argv of each call of the wrapper (but those recorded in `old`, a set of names)."""
        out = []
        for name in sorted(set(os.listdir(self.calls)) - set(old)):
            with open(os.path.join(self.calls, name), "rb") as f:
                out.append(f.read().decode().split("\0")[:-1])
        return out

    def in_namespace(self, script, **kw):
        """Run sh -c script in a private mount namespace where the wrapper is
        /usr/sbin/sendmail."""
        self.assertTrue(AS_ROOT, "unshare and mount need root")
        return subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-ec",
                                 "mount --bind '%s' /usr/sbin/sendmail\n%s" % (self.wrapper, script)],
                                **kw)

    # -- the command line -------------------------------------------------------------

    def test_cron_call_and_ignored_options(self):
        p = self.run_tern("sendmail", ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "-v", "root"],
                          "Subject: cron's call\n\n.\nline after a dot\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        err = p.stderr.decode()
        self.assertIn("8BITMIME", err)  # -B recorded in the envelope
        self.assertIn("to <root@example.test>", err)  # bare name: the host name's local domain
        m = self.wait_subject("cron's call")
        self.assertEqual(m["From"], '"CronDaemon" <root@example.test>')
        self.assertEqual(m.get_payload(), ".\nline after a dot\n")  # -i
        # every Sendmail option that does not apply: accepted, ignored; clustered flags too
        p = self.run_tern("sendmail", ["-odb", "-odi", "-om", "-oi", "-o7", "-o8", "-oee", "-U",
                                       "-n", "-m", "-Am", "-G", "-L", "label", "-h", "7",
                                       "-O", "DeliveryMode=b", "-X", "/dev/null", "-bh", "-ti",
                                       "-N", "failure,delay", "-R", "hdrs", "-V", "env+2Did",
                                       "-B", "7BIT", "-f", "me"],
                          "To: me\nSubject: ignored options\n\nbody\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        m = self.wait_subject("ignored options")
        self.assertEqual(m["Return-Path"], "<me@example.test>")

    def test_refusals_name_the_option(self):
        for args, what in ((["-Z", "root"], "-Z"), (["-bd"], "-bd"), (["-bv", "root"], "-bv"),
                           (["-B", "9BIT", "root"], "-B"), (["-N", "sometimes", "root"], "-N"),
                           (["-R", "body", "root"], "-R"), (["-bx"], "-bx"),
                           (["--frobnicate"], "--frobnicate"), (["-f"], "-f"),
                           (["-bp", "root"], "root")):
            p = self.run_tern("sendmail", args, "x\n")
            self.assertEqual(p.returncode, 64, (args, p.stderr))
            self.assertIn(what, p.stderr.decode(), args)
        p = self.run_tern("sendmail", ["root@"], "x\n")
        self.assertEqual(p.returncode, 65, p.stderr)

    def test_default_domain(self):
        """Bare names: [local] default_domain, else the host name's local domain, else the
        only local domain, else the host name.  Checked without a server (pickup only)."""
        cases = (({"default_domain": "other.test"}, ["example.test"], "other.test"),
                 ({}, ["example.test", "zz.test"], "example.test"),
                 ({}, ["aa.test", "bb.test"], "mx.example.test"),
                 ({}, ["only.test"], "only.test"))
        for local, domains, want in cases:
            env = ServeEnv(self, local=local)
            for d in domains:
                env.add_domain(d)
            p = subprocess.run([self.link, "-v", "--config", env.conf_path, "me"], input=b"x\n",
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("to <me@%s>" % want, p.stderr.decode(), (local, domains))
        env = ServeEnv(self, local={"default_domain": "not a domain"})
        p = subprocess.run([self.link, "--config", env.conf_path, "me"], input=b"x\n",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 75)
        self.assertIn("default_domain", p.stderr.decode())

    def test_bs_smtp_over_a_pipe(self):
        p = subprocess.Popen([self.link, "-bs"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE,
                             env=dict(os.environ, TERN_CONFIG=self.env.conf_path))

        def stop():
            if p.poll() is None:
                p.kill()
                p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                f.close()
        self.addCleanup(stop)
        buf = b""

        def reply():
            nonlocal buf
            deadline = time.monotonic() + 20
            while True:
                m = re.search(rb"(?m)^(\d{3}) [^\r\n]*\r\n", buf)
                if m:
                    out, buf = buf[:m.end()], buf[m.end():]
                    return out.decode()
                left = deadline - time.monotonic()
                self.assertGreater(left, 0, "no reply: %r" % buf)
                r, _, _ = select.select([p.stdout], [], [], left)
                if r:
                    chunk = os.read(p.stdout.fileno(), 4096)
                    self.assertTrue(chunk, "sendmail -bs closed: %r" % buf)
                    buf += chunk

        def cmd(line, code, enh=None):
            p.stdin.write(line.encode() + b"\r\n")
            p.stdin.flush()
            r = reply()
            self.assertTrue(r.split("\r\n")[-2].startswith(str(code)), (line, r))
            if enh:
                self.assertIn(" %s " % enh, r.split("\r\n")[-2], (line, r))
            return r

        self.assertTrue(reply().startswith("220 "))
        self.assertIn("ENHANCEDSTATUSCODES", cmd("EHLO client.example", 250))
        cmd("RCPT TO:<alice@example.test>", 503, "5.5.1")
        cmd("FROOB", 500, "5.5.2")
        cmd("MAIL FROM:<script@example.test>", 250, "2.1.0")
        cmd("RCPT TO:<alice@example.test>", 250, "2.1.5")
        cmd("DATA", 354)
        r = cmd("Subject: over a pipe\r\n\r\n..dot-stuffed\r\nbody\r\n.", 250, "2.0.0")
        self.assertIn("queued as", r)
        cmd("QUIT", 221, "2.0.0")
        self.assertEqual(p.wait(timeout=20), 0, p.stderr.read())
        m = self.wait_subject("over a pipe")
        self.assertEqual(m["Return-Path"], "<script@example.test>")
        self.assertEqual(m.get_payload(), ".dot-stuffed\nbody\n")
        self.assertIn("tern sendmail", m["Received"])

    def test_bp_and_mailq_list_a_queued_item(self):
        p = self.run_tern("sendmail", ["-f", "me", "bob@remote.test"], "Subject: stays\n\nx\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.serve.wait_log(r"to=<bob@remote.test> via=smtp.*deferred")
        for argv0, args in (("sendmail", ["-bp"]), ("mailq", [])):
            p = self.run_tern(argv0, args)
            self.assertEqual(p.returncode, 0, p.stderr)
            out = p.stdout.decode()
            self.assertRegex(out, r"(?m)^\S+ +\d+s +<me@example.test> +pending 1, sent 0", argv0)
        qid = [ln.split()[0] for ln in out.splitlines() if "<me@example.test>" in ln][0]
        self.assertEqual(self.env.tern("queue", "delete", qid).returncode, 0)

    def test_bi_and_newaliases_say_no_op(self):
        for argv0, args in (("sendmail", ["-bi"]), ("sendmail", ["-I"]), ("newaliases", [])):
            p = self.run_tern(argv0, args)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("nothing to do", p.stdout.decode())
            self.assertIn("aliases", p.stdout.decode())

    def test_q_wakes_the_queue_run(self):
        before = self.serve.log.count("SIGUSR1")
        p = self.run_tern("sendmail", ["-q"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.serve.wait_log(r"SIGUSR1", count=before + 1)
        p = self.run_tern("sendmail", ["-q30m"])  # a daemon's interval: ignored
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("ignored", p.stdout.decode())

    # -- the real programs ----------------------------------------------------------

    def test_debian_cron(self):
        """Debian's cron runs `* * * * * root echo ...` from a private /etc/crontab and
        mails the output through /usr/sbin/sendmail (the wrapper): delivered to root's
        alias within ~70 s (cron runs jobs on the minute)."""
        need(self, CRON)
        d = temp_dir(self.addCleanup, "tern-sm-cron-")
        os.chmod(d, 0o755)
        os.mkdir(os.path.join(d, "cron.d"))
        os.mkdir(os.path.join(d, "crontabs"))
        crontab = write_file(os.path.join(d, "crontab"),
                             "SHELL=/bin/sh\nMAILTO=root\n"
                             "* * * * * root echo hello from cron\n", 0o644)
        script = ("mount -t tmpfs tmpfs /run\n"  # cron's pid file, away from any system cron
                  "mount --bind '%s' /etc/crontab\n"
                  "mount --bind '%s/cron.d' /etc/cron.d\n"
                  "mount --bind '%s/crontabs' /var/spool/cron/crontabs\n"
                  "exec %s -f -L 15\n" % (crontab, d, d, CRON))
        before = os.listdir(self.calls)
        log = os.path.join(d, "cron.log")
        with open(log, "wb") as f:
            cron = self.in_namespace(script, stdout=f, stderr=subprocess.STDOUT)

        def stop():
            if cron.poll() is None:
                cron.terminate()
                try:
                    cron.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    cron.kill()
                    cron.wait()
        self.addCleanup(stop)
        msgs = self.env.wait_maildir("alice@example.test", 1, timeout=75,
                                     subject="Cron <root@%s> echo hello from cron" % os.uname().nodename)
        if not msgs:
            msgs = [m for m in self.env.maildir("alice@example.test")
                    if (m["Subject"] or "").startswith("Cron <root@")]
        stop()
        with open(log, "rb") as f:
            self.assertTrue(msgs, "no mail from cron; cron said: %r" % f.read())
        m = msgs[0]
        self.assertIn("hello from cron", m.get_payload())
        self.assertIn("Cron Daemon", m["From"])
        calls = self.recorded_calls(before)
        self.assertIn(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"], calls)

    def test_bsd_mailx(self):
        need(self, MAILX)
        before = os.listdir(self.calls)
        p = self.in_namespace("echo 'body from mailx' | %s -s 'subject from mailx' root" % MAILX,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=dict(os.environ, HOME=self.bin))
        out = p.communicate(timeout=60)[0]
        self.assertEqual(p.returncode, 0, out)
        m = self.wait_subject("subject from mailx")
        self.assertEqual(m.get_payload().strip(), "body from mailx")
        calls = self.recorded_calls(before)
        self.assertEqual(calls, [["-i", "-t"]])  # bsd-mailx: recipients from "To: root"
        self.assertEqual(m["To"], "root")

    def test_git_send_email(self):
        need(self, "git")
        p = subprocess.run(["git", "--exec-path"], stdout=subprocess.PIPE, timeout=60)
        self.assertTrue(os.access(os.path.join(p.stdout.decode().strip(), "git-send-email"), os.X_OK),
                        "git send-email is missing (package git-email)")
        d = temp_dir(self.addCleanup, "tern-sm-git-")
        genv = dict(os.environ, HOME=d, GIT_CONFIG_NOSYSTEM="1", TERN_CONFIG=self.env.conf_path,
                    GIT_AUTHOR_NAME="Pat Coder", GIT_AUTHOR_EMAIL="pat@example.test",
                    GIT_COMMITTER_NAME="Pat Coder", GIT_COMMITTER_EMAIL="pat@example.test")
        repo = os.path.join(d, "repo")

        def git(*args, cwd=repo):
            r = subprocess.run(["git"] + list(args), cwd=cwd, env=genv, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            self.assertEqual(r.returncode, 0, (args, r.stdout))
            return r.stdout.decode()

        git("init", "-q", repo, cwd=d)
        write_file(os.path.join(repo, "README"), "hello\n")
        git("add", "README")
        git("commit", "-q", "-m", "first")
        write_file(os.path.join(repo, "README"), "hello, world\n")
        git("commit", "-q", "-a", "-m", "Say hello to the world")
        patch = git("format-patch", "-1", "-o", d).strip().splitlines()[-1]
        git("send-email", "--smtp-server=" + self.link, "--to=alice@example.test",
            "--from=Pat Coder <pat@example.test>", "--confirm=never", "--suppress-cc=all",
            "--no-chain-reply-to", patch)
        m = self.wait_subject("[PATCH] Say hello to the world")
        self.assertIn("+hello, world", m.get_payload())
        self.assertEqual(m["From"], "Pat Coder <pat@example.test>")


if __name__ == "__main__":
    unittest.main(verbosity=2)
