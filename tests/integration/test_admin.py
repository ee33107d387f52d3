"""Integration tests for the administration commands of the built binary:
`tern check-config`, `tern user add|check|list|remove`, `tern alias resolve`.

Each test works in its own temporary folder (config file, data_dir) and runs
the real binary (env TERN, default /work/main/build/tern) as an administrator
would, checking exit statuses, FILE:LINE messages and the files left behind.
Standard library only.
"""

import os
import stat
import subprocess
import unittest

from ternlib import SANITIZER_RE, TERN, temp_dir


class AdminCase(unittest.TestCase):
    def setUp(self):
        self.dir = temp_dir(self.addCleanup, "tern-admin-")
        self.data = os.path.join(self.dir, "data")
        self.conf = os.path.join(self.dir, "tern.conf")
        self.write(self.conf,
                   "[server]\n"
                   "hostname = mx.example.org\n"
                   "data_dir = data\n"
                   "[listen]\n"
                   "smtp = 127.0.0.1:2525\n")

    def write(self, path, text):
        with open(path, "w") as f:
            f.write(text)

    def tern(self, *args, input=None, env=None):
        e = dict(os.environ)
        e.pop("TERN_CONFIG", None)
        if env:
            e.update(env)
        p = subprocess.run([TERN] + list(args), input=input, capture_output=True, text=True,
                           timeout=60, env=e)
        self.assertIsNone(SANITIZER_RE.search(p.stderr), p.stderr)
        return p

    def add_user(self, address, password):
        p = self.tern("user", "add", "--config", self.conf, address, input=password + "\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        return p

    # ---- check-config ---------------------------------------------------

    def test_check_config_good(self):
        p = self.tern("check-config", "--config", self.conf)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), "ok")
        # the same file found through TERN_CONFIG
        p = self.tern("check-config", env={"TERN_CONFIG": self.conf})
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_check_config_reports_every_problem_with_its_line(self):
        bad = os.path.join(self.dir, "bad.conf")
        self.write(bad,
                   "[server]\n"                  # 1
                   "hostname = mx.example.org\n"  # 2
                   "max_size = lots\n"            # 3
                   "colour = blue\n"              # 4
                   "[listen]\n"                   # 5
                   "smtp = 127.0.0.1:25\n"        # 6
                   "submission = 127.0.0.1:587\n"  # 7 (no TLS)
                   "[queue]\n"                    # 8
                   "retry = 5m 1m\n"              # 9
                   "[mystery]\n"                  # 10
                   "anything = goes\n"            # 11
                   "[local]\n"                    # 12
                   "delivery = mda\n"             # 13 (no mda_command)
                   "this line has no equals\n")   # 14
        p = self.tern("check-config", "--config", bad)
        self.assertEqual(p.returncode, 1)
        self.assertNotIn("ok", p.stdout)
        lines = p.stderr.splitlines()
        expect = {
            3: "max_size",
            4: "unknown key 'colour'",
            7: "submission needs [tls] cert and key",
            9: "must not decrease",
            10: "unknown section [mystery]",
            13: "delivery = mda needs [local] mda_command",
            14: "expected 'key = value'",
        }
        for n, part in expect.items():
            prefix = "%s:%d: " % (bad, n)
            self.assertTrue(any(l.startswith(prefix) and part in l for l in lines),
                            "no '%s' at line %d in:\n%s" % (part, n, p.stderr))
        # line 11 sits inside an unknown section: the section was reported, not each key
        self.assertFalse(any(l.startswith("%s:11: " % bad) for l in lines), p.stderr)
        self.assertEqual(len([l for l in lines if l.startswith(bad + ":")]), 7, p.stderr)

    def test_check_config_missing_file_and_bad_domain_files(self):
        p = self.tern("check-config", "--config", os.path.join(self.dir, "nope.conf"))
        self.assertEqual(p.returncode, 1)
        self.assertIn("nope.conf: cannot open: No such file or directory", p.stderr)

        dom = os.path.join(self.data, "domains", "example.org")
        os.makedirs(dom)
        self.write(os.path.join(dom, "users"), "# users\nbob:not-a-hash\n")
        self.write(os.path.join(dom, "aliases"), "list: bob,, carol\npipe: | relative/cmd\n")
        p = self.tern("check-config", "--config", self.conf)
        self.assertEqual(p.returncode, 1)
        self.assertIn(os.path.join(dom, "users") + ":2: user 'bob': not a crypt(3)", p.stderr)
        self.assertIn(os.path.join(dom, "aliases") + ":1: alias 'list': empty target", p.stderr)
        self.assertIn(os.path.join(dom, "aliases") + ":2: alias 'pipe': pipe command must",
                      p.stderr)

    # ---- users ------------------------------------------------------------

    def test_user_round_trip(self):
        p = self.add_user("Bob@Example.ORG", "correct horse")
        self.assertIn("new local domain example.org", p.stdout)
        self.assertIn("added bob@example.org", p.stdout)
        users = os.path.join(self.data, "domains", "example.org", "users")
        with open(users) as f:
            content = f.read()
        self.assertRegex(content, r"^bob:\$y\$[^\n]+\n$")
        self.assertFalse(os.stat(users).st_mode & stat.S_IROTH)

        # a comment added by hand survives the next edits
        with open(users, "a") as f:
            f.write("# hand-written note\n")
        pwfile = os.path.join(self.dir, "pw")
        self.write(pwfile, "alice pw\n")
        p = self.tern("user", "add", "--config", self.conf, "--password-file", pwfile,
                      "alice@example.org")
        self.assertEqual(p.returncode, 0, p.stderr)

        p = self.tern("user", "add", "--config", self.conf, "bob@example.org", input="x\n")
        self.assertEqual(p.returncode, 1)
        self.assertIn("already exists", p.stderr)

        p = self.tern("user", "check", "--config", self.conf, "bob@example.org",
                      input="correct horse\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), "ok")
        p = self.tern("user", "check", "--config", self.conf, "bob@example.org",
                      input="wrong horse\n")
        self.assertEqual(p.returncode, 1)
        self.assertIn("wrong password", p.stderr)
        p = self.tern("user", "check", "--config", self.conf, "--password-file", pwfile,
                      "alice@example.org")
        self.assertEqual(p.returncode, 0, p.stderr)

        p = self.tern("user", "list", "--config", self.conf)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.split(), ["bob@example.org", "alice@example.org"])

        p = self.tern("user", "remove", "--config", self.conf, "bob@example.org")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.tern("user", "remove", "--config", self.conf, "bob@example.org")
        self.assertEqual(p.returncode, 1)
        p = self.tern("user", "list", "--config", self.conf, "example.org")
        self.assertEqual(p.stdout.split(), ["alice@example.org"])
        with open(users) as f:
            content = f.read()
        self.assertIn("# hand-written note\n", content)
        self.assertNotIn("bob:", content)
        self.assertEqual(sorted(os.listdir(os.path.dirname(users))), ["users"])

        p = self.tern("user", "add", "--config", self.conf, "not an address", input="x\n")
        self.assertEqual(p.returncode, 1)
        p = self.tern("user", "frobnicate", "--config", self.conf, "a@b.c")
        self.assertEqual(p.returncode, 2)

    # ---- aliases ----------------------------------------------------------

    def test_alias_resolve(self):
        self.add_user("bob@example.org", "pw")
        self.add_user("carol@other.org", "pw")
        self.write(os.path.join(self.data, "domains", "example.org", "aliases"),
                   "list: bob, carol@other.org, dave@remote.example\n"
                   "filter: | /usr/bin/filter -a, -b\n"
                   "loop1: loop2\n"
                   "loop2: loop1\n")

        p = self.tern("alias", "resolve", "--config", self.conf, "List+tag@Example.org")
        self.assertEqual(p.returncode, 0, p.stderr)
        rows = [l.split("\t") for l in p.stdout.splitlines() if "\t" in l]
        self.assertIn(["local", "bob@example.org", "List+tag@example.org -> bob@example.org"],
                      rows)
        self.assertIn(["local", "carol@other.org", "List+tag@example.org -> carol@other.org"],
                      rows)
        self.assertIn(["remote", "dave@remote.example",
                       "List+tag@example.org -> dave@remote.example"], rows)

        p = self.tern("alias", "resolve", "--config", self.conf, "filter@example.org")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("pipe\t/usr/bin/filter -a, -b\tfilter@example.org", p.stdout)

        p = self.tern("alias", "resolve", "--config", self.conf, "loop1@example.org")
        self.assertEqual(p.returncode, 1)
        self.assertIn("alias loop: loop1@example.org -> loop2@example.org -> loop1@example.org",
                      p.stdout)

        p = self.tern("alias", "resolve", "--config", self.conf, "nobody@example.org")
        self.assertEqual(p.returncode, 1)
        self.assertIn("unknown user", p.stderr)

        p = self.tern("alias", "resolve", "--config", self.conf, "someone@remote.example")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("remote\tsomeone@remote.example", p.stdout)

        for unsafe in ("a%b@remote.example", "a!b@remote.example", '"a@b"@remote.example'):
            p = self.tern("alias", "resolve", "--config", self.conf, unsafe)
            self.assertEqual(p.returncode, 1, unsafe)
            self.assertIn("never relayed", p.stderr)

        p = self.tern("check-config", "--config", self.conf)
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    unittest.main()
