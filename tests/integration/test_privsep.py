"""`tern serve` started as root: it binds and reads its key as root, then runs as
[server] user (servelib's SERVE_USER, `nobody`) for good, so every delivery
(Maildir, MDA command, | pipe alias) runs as that user; without a user it refuses
to start.  Also the owner and mode checks of `tern check-config` and start-up
(secrets readable by others, rules writable by others).

Every test here needs root (CI runs as root); as any other user they are skipped.

    TERN=build-asan/tern python3 -m unittest test_privsep      (from tests/integration)
"""

import os
import shutil
import smtplib
import stat
import subprocess
import unittest

from servelib import AS_ROOT, SERVE_USER, ServeEnv, cert_paths, serve_user_ids, wait_until
from ternlib import TERN, message, run

ROOT_ONLY = unittest.skipUnless(AS_ROOT, "needs root: `tern serve` only leaves root when started as root")

# records who ran it (uid gid) in FILE, reads the message; exits 75 (try later) for "later"
RECORD = """#!/bin/sh
cat >/dev/null || exit 75
[ "$2" = "later@example.test" ] && exit 75
printf '%%s %%s\\n' "$(id -u)" "$(id -g)" > '%s.tmp' && mv '%s.tmp' '%s'
"""


def record_script(env, name):
    """A script recording `id -u` `id -g` into env/NAME.out; (script path, record path)."""
    out = env.path(name + ".out")
    return env.write_script(name + ".sh", RECORD % (out, out, out)), out


def read_record(test, path):
    test.assertTrue(wait_until(lambda: os.path.exists(path), 20), "no record in %s" % path)
    with open(path) as f:
        return [int(x) for x in f.read().split()]


def send(srv, rcpt, subject):
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=30) as s:
        s.sendmail("someone@remote.test", [rcpt], message(subject=subject, to=rcpt))


def ids_of_status(path):
    """{Uid: [...], Gid: [...], Groups: [...]} from a /proc/.../status file."""
    res = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                res[k] = [int(x) for x in v.split()]
    return res


@ROOT_ONLY
class DropTest(unittest.TestCase):
    """One server as root with user = nobody: Maildir and pipe deliveries."""

    @classmethod
    def setUpClass(cls):
        cls.uid, cls.gid = serve_user_ids()
        env = cls.env = ServeEnv(cleanup=cls.addClassCleanup)
        env.add_user("alice@example.test", "alice-pw")
        cls.pipe, cls.pipe_out = record_script(env, "pipe")
        env.write_aliases("example.test", "pipe: | %s x pipe@example.test\n" % cls.pipe)
        cls.srv = env.start()

    def test_process_has_no_root_left(self):
        self.assertIn("running as user %s (uid %d, gid %d)" % (SERVE_USER, self.uid, self.gid), self.srv.log)
        tasks = os.listdir("/proc/%d/task" % self.srv.pid)
        self.assertGreater(len(tasks), 1, "the worker threads too")
        for tid in [int(t) for t in tasks]:
            ids = ids_of_status("/proc/%d/task/%d/status" % (self.srv.pid, tid))
            self.assertEqual(ids["Uid"], [self.uid] * 4, "real, effective, saved, fs uid of %d" % tid)
            self.assertEqual(ids["Gid"], [self.gid] * 4, "real, effective, saved, fs gid of %d" % tid)
            self.assertEqual(ids["Groups"], [self.gid], "supplementary groups of %d" % tid)

    def test_maildir_delivery_as_user(self):
        send(self.srv, "alice@example.test", "privsep maildir")
        msgs = self.env.wait_maildir("alice@example.test", 1, subject="privsep maildir")
        self.assertEqual(len(msgs), 1)
        md = self.env.maildir_path("alice@example.test")
        names = os.listdir(os.path.join(md, "new")) + os.listdir(os.path.join(md, "cur"))
        self.assertTrue(names)
        for sub in ("new", "cur"):
            for n in os.listdir(os.path.join(md, sub)):
                st = os.stat(os.path.join(md, sub, n))
                self.assertEqual((st.st_uid, st.st_gid), (self.uid, self.gid), n)
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, n)
        for d in (md, os.path.join(md, "new"), os.path.join(md, "tmp"), os.path.join(md, "cur")):
            st = os.stat(d)
            self.assertEqual(st.st_uid, self.uid, d)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o700, d)

    def test_spool_folders_belong_to_user(self):
        for name in ("queue", "pickup", "mail"):
            st = os.stat(os.path.join(self.env.data_dir, name))
            self.assertEqual((st.st_uid, st.st_gid), (self.uid, self.gid), name)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o700, name)
        with open(os.path.join(self.env.data_dir, "tern.pid")) as f:
            self.assertEqual(int(f.read()), self.srv.pid)

    def test_pipe_alias_runs_as_user(self):
        send(self.srv, "pipe@example.test", "privsep pipe")
        self.assertEqual(read_record(self, self.pipe_out), [self.uid, self.gid])

    def test_sendmail_as_root_reaches_the_user_server(self):
        msg = "Subject: from root's cron\n\nhello\n"
        p = subprocess.run([TERN, "sendmail", "--config", self.env.conf_path, "alice@example.test"],
                           input=msg.encode(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout)
        msgs = self.env.wait_maildir("alice@example.test", 1, subject="from root's cron")
        self.assertEqual(len(msgs), 1)


@ROOT_ONLY
class MdaDropTest(unittest.TestCase):
    def test_mda_runs_as_user_and_queue_is_private(self):
        uid, gid = serve_user_ids()
        env = ServeEnv(self, local={"delivery": "mda", "mda_timeout": "10s"},
                       queue={"retry": "1h", "give_up": "2h"})
        mda, out = record_script(env, "mda")
        env.conf["local"]["mda_command"] = "%s %%from%% %%to%%" % mda
        env.write_conf()
        env.add_user("bob@example.test", "bob-pw")
        env.add_user("later@example.test", "later-pw")
        srv = env.start()
        send(srv, "bob@example.test", "privsep mda")
        self.assertEqual(read_record(self, out), [uid, gid])
        # an item the MDA defers stays queued: its files are the user's, 0600, in 0700 folders
        send(srv, "later@example.test", "privsep later")
        self.assertTrue(wait_until(lambda: "later@example.test" in srv.log and "75" in srv.log, 20), srv.log)
        files = []
        for root, dirs, names in os.walk(env.queue_dir):
            for d in dirs:
                st = os.stat(os.path.join(root, d))
                self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (uid, 0o700), os.path.join(root, d))
            for n in names:
                st = os.stat(os.path.join(root, n))
                self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (uid, 0o600), os.path.join(root, n))
                files.append(n)
        self.assertTrue(files, "the deferred item is in the queue")


@ROOT_ONLY
class RefuseTest(unittest.TestCase):
    def test_root_without_user_refuses_to_start(self):
        env = ServeEnv(self, server={"user": None})
        p = run([TERN, "serve", "--config", env.conf_path], timeout=30)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 2, out)
        self.assertIn("tern serve: running as root needs [server] user = ... (deliveries never run as root)",
                      out)
        self.assertNotIn("listening", out)
        self.assertFalse(os.path.exists(os.path.join(env.data_dir, "queue")), "nothing prepared")

    def test_unknown_user_is_a_config_error(self):
        env = ServeEnv(self, server={"user": "no-such-tern-user"})
        p = env.tern("check-config")
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stdout.decode(), r"%s:\d+: \[server\] user: no such user 'no-such-tern-user'"
                         % env.conf_path)
        p = run([TERN, "serve", "--config", env.conf_path], timeout=30)
        self.assertEqual(p.returncode, 2, p.stdout)
        self.assertIn("no such user", p.stdout.decode())

    def test_readable_tls_key_refuses_to_start(self):
        env = ServeEnv(self)
        cert, key = cert_paths()
        mykey = env.path("key.pem")
        shutil.copy(key, mykey)
        os.chmod(mykey, 0o644)
        env.conf["tls"]["key"] = mykey
        env.write_conf()
        want = "%s: mode 0644 lets other users read this secret; chmod 600" % mykey
        p = env.tern("check-config")
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn(want, p.stdout.decode())
        p = run([TERN, "serve", "--config", env.conf_path], timeout=30)
        self.assertEqual(p.returncode, 2, p.stdout)
        self.assertIn(want, p.stdout.decode())
        self.assertIn("refusing to start", p.stdout.decode())
        os.chmod(mykey, 0o600)
        self.assertEqual(env.tern("check-config").returncode, 0)


@ROOT_ONLY
class CheckModesTest(unittest.TestCase):
    def test_each_bad_mode_is_reported(self):
        env = ServeEnv(self)
        env.add_user("alice@example.test", "alice-pw")
        env.write_aliases("example.test", "postmaster: alice\n")
        self.assertEqual(env.tern("check-config").returncode, 0)
        dom = os.path.join(env.data_dir, "domains", "example.test")
        users, aliases = os.path.join(dom, "users"), os.path.join(dom, "aliases")
        pwfile = env.path("smarthost.pw")
        with open(pwfile, "w") as f:
            f.write("secret\n")
        os.chmod(pwfile, 0o640)
        env.conf["remote"] = {"smarthost": "[127.0.0.1]:2", "smarthost_user": "u",
                              "smarthost_password_file": pwfile}
        env.write_conf()
        os.chmod(env.conf_path, 0o664)
        os.chmod(aliases, 0o666)
        os.chmod(dom, 0o777)
        os.chmod(users, 0o644)
        p = env.tern("check-config")
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 1, out)
        change = "lets other users change it (anyone could add `x: | /cmd`); chmod go-w"
        for line in ("%s: mode 0664 %s" % (env.conf_path, change),
                     "%s: mode 0666 %s" % (aliases, change),
                     "%s: mode 0777 %s" % (dom, change),
                     "%s: mode 0640 lets other users read this secret; chmod 600" % pwfile,
                     "warning: %s: mode 0644 lets every user read the password hashes; chmod 640" % users):
            self.assertIn(line + "\n", out)
        p = run([TERN, "serve", "--config", env.conf_path], timeout=30)
        self.assertEqual(p.returncode, 2, p.stdout)
        self.assertIn("%s: mode 0664 %s" % (env.conf_path, change), p.stdout.decode())
        # fixed: only the warning is left, which does not stop anything
        os.chmod(env.conf_path, 0o644)
        os.chmod(aliases, 0o644)
        os.chmod(dom, 0o755)
        os.chmod(pwfile, 0o600)
        p = env.tern("check-config")
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertIn("warning: %s: mode 0644" % users, p.stdout.decode())

    def test_owner_must_be_root_or_the_user(self):
        env = ServeEnv(self)
        env.write_aliases("example.test", "postmaster: root@remote.test\n")
        aliases = os.path.join(env.data_dir, "domains", "example.test", "aliases")
        os.chown(aliases, 12345, 12345)
        p = env.tern("check-config")
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("%s: owned by uid 12345: must be owned by root or %s" % (aliases, SERVE_USER),
                      p.stdout.decode())
        uid, gid = serve_user_ids()
        os.chown(aliases, uid, gid)
        self.assertEqual(env.tern("check-config").returncode, 0)

    def test_files_made_by_tern_user_add_are_readable_after_the_drop(self):
        """tern user add (as root) gives its new folder and users file to the user's group,
        so a SIGHUP reload by the unprivileged server can read them."""
        env = ServeEnv(self)
        env.add_user("alice@example.test", "alice-pw")
        srv = env.start()
        env.add_user("carol@newdomain.test", "carol-pw")
        srv.proc.send_signal(1)
        self.assertTrue(srv.wait_log(r"reloaded .*: 2 local domains", 20), srv.log)
        send(srv, "carol@newdomain.test", "after reload")
        self.assertEqual(len(env.wait_maildir("carol@newdomain.test", 1, subject="after reload")), 1)
        st = os.stat(os.path.join(env.data_dir, "domains", "newdomain.test", "users"))
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (0, serve_user_ids()[1], 0o640))


if __name__ == "__main__":
    unittest.main()
