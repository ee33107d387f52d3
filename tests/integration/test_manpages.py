"""test_manpages - the man pages in man/ are valid mdoc and do not fall behind.

- `mandoc -Tlint -W warning` reports nothing for any page;
- every key of docs/CONFIG.md's key tables, and every key of the key table in
  src/conf/config.c, is described in tern.conf(5), in the section it belongs to
  (`.Ss [section]` ... `.It Ic key`), and tern.conf(5) describes no other key;
- every long option in the usage text of `tern send --help` and `tern sink
  --help`, every option of `tern sendmail --help` and every command of `tern
  --help` (run from $TERN) is described in the matching page (`Fl -name`,
  `Fl x`, `Cm command`);
- each page renders (`mandoc -Tascii`, and `man -l`, i.e. groff, without a
  warning) with its NAME line; every tern page it refers to (`.Xr`) exists.

mandoc and man-db are installed by scripts/install-deps: without them the
test fails.
"""

import os
import re
import shutil
import subprocess
import unittest

from ternlib import TERN

SRC = os.environ.get("TERN_SOURCE") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAN = os.path.join(SRC, "man")

# page file -> the NAME line it must render (one word before the dash: the whatis index, and
# lintian's bad-whatis-entry, read the name up to the first space; SYNOPSIS says `tern send`)
PAGES = {
    "tern.8": "tern - mail server, test server and mailer in one program",
    "tern.conf.5": "tern.conf - configuration file of the tern mail server",
    "tern-send.1": "tern-send - send one templated message per row of a CSV file, resumably",
    "tern-sink.1": "tern-sink - SMTP test server with an HTTP API and fault injection",
    "tern-sendmail.8": "sendmail, mailq, newaliases - submit mail to the tern mail server the "
                       "sendmail way",
}

TIMEOUT = 60


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def plain(text):
    """Rendered text without overstrike (bold x^Hx, underline _^Hx)."""
    return re.sub(".\b", "", text)


def need_mandoc(test):
    if not shutil.which("mandoc"):
        test.fail("mandoc is not installed (scripts/install-deps installs it)")


def usage(*args):
    """Text of `tern ARGS --help` (stdout and stderr)."""
    p = subprocess.run([TERN, *args, "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)
    return p.returncode, p.stdout + p.stderr


def conf_sections(page):
    """{section: {key, ...}} of tern.conf.5: `.It Ic key` under `.Ss [section]`."""
    out, cur = {}, None
    for line in page.splitlines():
        m = re.match(r"\.S[sh] (.*)$", line)
        if m:
            sm = re.fullmatch(r"(?:\\&)?\[([a-z_]+)\](?:\\&)?", m.group(1).strip())
            cur = sm.group(1) if sm else None
            if cur:
                out.setdefault(cur, set())
            continue
        m = re.match(r"\.It Ic ([a-z_]+)\b", line)
        if m and cur:
            out[cur].add(m.group(1))
    return out


def config_md_keys():
    """(section, key) pairs of every `| section | key | ...` table of docs/CONFIG.md."""
    keys, in_table, section = set(), False, None
    for line in read(os.path.join(SRC, "docs", "CONFIG.md")).splitlines():
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].lower() == "section" and cells[1].lower() == "key":
            in_table, section = True, None
            continue
        if not in_table or re.fullmatch(r"[-: ]+", cells[0]):
            continue
        m = re.fullmatch(r"`\[([a-z_]+)\]`", cells[0])
        if m:
            section = m.group(1)
        for k in re.findall(r"`([a-z_]+)`", cells[1]):
            keys.add((section, k))
    return keys


def config_c_keys():
    """(section, key) pairs of the key table of src/conf/config.c."""
    text = read(os.path.join(SRC, "src", "conf", "config.c"))
    return {(s.lower(), k) for s, k in re.findall(r'\{SEC_([A-Z_]+),\s*"([a-z_]+)"', text)}


class ManPages(unittest.TestCase):
    def test_pages_exist(self):
        for page in PAGES:
            self.assertTrue(os.path.isfile(os.path.join(MAN, page)), page)

    def test_lint(self):
        need_mandoc(self)
        for page in PAGES:
            with self.subTest(page=page):
                p = subprocess.run(["mandoc", "-Tlint", "-W", "warning", os.path.join(MAN, page)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   timeout=TIMEOUT)
                self.assertEqual(p.stdout, "", page)
                self.assertEqual(p.returncode, 0, page)

    def test_render_mandoc(self):
        need_mandoc(self)
        for page, name in PAGES.items():
            with self.subTest(page=page):
                p = subprocess.run(["mandoc", "-Tascii", os.path.join(MAN, page)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   timeout=TIMEOUT)
                self.assertEqual(p.returncode, 0, p.stderr)
                text = plain(p.stdout)
                m = re.search(r"^NAME\n(.*?)\n\n", text, re.M | re.S)
                self.assertIsNotNone(m, text)
                self.assertEqual(" ".join(m.group(1).split()), name)
                self.assertRegex(text, r"(?m)^DESCRIPTION$")

    def test_render_man(self):
        # man-db's man(1) (groff) is how users read the installed pages
        man = shutil.which("man")
        if not man:
            self.fail("man is not installed (scripts/install-deps installs man-db)")
        env = dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80", LANG="C.UTF-8")
        for page, name in PAGES.items():
            with self.subTest(page=page):
                p = subprocess.run([man, "--warnings", "-l", os.path.join(MAN, page)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=env, timeout=TIMEOUT)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(p.stderr, "", page)  # groff warnings, as lintian checks them
                text = re.sub("[\u2010\u2212\u2013\u2014]", "-", plain(p.stdout))
                self.assertIn(name, " ".join(text.split()))
                if page == "tern.conf.5":
                    self.assertIn("max_connect_rate_per_ip", text)

    def test_conf_keys_from_config_md(self):
        documented = conf_sections(read(os.path.join(MAN, "tern.conf.5")))
        keys = config_md_keys()
        self.assertGreater(len(keys), 40, "docs/CONFIG.md key table not found")
        missing = sorted("[%s] %s" % sk for sk in keys if sk[1] not in documented.get(sk[0], ()))
        self.assertEqual(missing, [], "keys of docs/CONFIG.md missing from man/tern.conf.5")

    def test_conf_keys_from_config_c(self):
        documented = conf_sections(read(os.path.join(MAN, "tern.conf.5")))
        keys = config_c_keys()
        self.assertGreater(len(keys), 40, "key table of src/conf/config.c not found")
        missing = sorted("[%s] %s" % sk for sk in keys if sk[1] not in documented.get(sk[0], ()))
        self.assertEqual(missing, [], "keys of src/conf/config.c missing from man/tern.conf.5")
        extra = sorted("[%s] %s" % (s, k) for s, ks in documented.items() for k in ks
                       if (s, k) not in keys)
        self.assertEqual(extra, [], "man/tern.conf.5 describes keys tern does not know")

    def check_long_options(self, args, page):
        rc, text = usage(*args)
        self.assertEqual(rc, 0, text)
        opts = set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", text))
        self.assertGreater(len(opts), 5, text)
        body = read(os.path.join(MAN, page))
        missing = sorted("--" + o for o in opts
                         if not re.search(r"\bFl -%s(?![\w-])" % re.escape(o), body))
        self.assertEqual(missing, [], "options of tern %s missing from man/%s" % (args[0], page))

    def test_send_options(self):
        self.check_long_options(["send"], "tern-send.1")

    def test_sink_options(self):
        self.check_long_options(["sink"], "tern-sink.1")

    def test_sendmail_options(self):
        rc, text = usage("sendmail")
        self.assertEqual(rc, 0, text)
        opts = set(re.findall(r"(?<![\w-])-(-?[A-Za-z][A-Za-z0-9-]*)", text))
        self.assertGreater(len(opts), 10, text)
        body = read(os.path.join(MAN, "tern-sendmail.8"))

        def documented(o):
            fl = r"\bFl (?:\\&)?"
            if re.search(fl + re.escape(o) + r"(?![\w-])", body):
                return True
            # -oX, -qINTERVAL: written .Fl o Ns Ar x; -A: written as -Ac and -Am
            m = re.fullmatch(r"([a-z])[A-Z]+", o)
            if m and re.search(fl + m.group(1) + r" Ns Ar ", body):
                return True
            return len(o) == 1 and o.isupper() and re.search(fl + o + r"[a-z]\b", body)

        missing = sorted("-" + o for o in opts if not documented(o))
        self.assertEqual(missing, [], "options of tern sendmail missing from man/tern-sendmail.8")

    def test_commands(self):
        rc, text = usage()
        self.assertEqual(rc, 0, text)
        cmds = re.findall(r"^  ([a-z][a-z-]+)\s", text, re.M)
        self.assertIn("serve", cmds)
        body = read(os.path.join(MAN, "tern.8"))
        missing = [c for c in cmds if not re.search(r"\bCm %s(?![\w-])" % re.escape(c), body)]
        self.assertEqual(missing, [], "commands of tern missing from man/tern.8")
        rc, text = usage("serve")
        self.assertEqual(rc, 0, text)
        for o in set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", text)):
            self.assertRegex(body, r"\bFl -%s\b" % re.escape(o))

    def test_cross_references(self):
        names = {re.sub(r"\.(\d)$", r"(\1)", p) for p in PAGES}
        for page in PAGES:
            body = read(os.path.join(MAN, page))
            for name, sec in re.findall(r"^\.Xr (tern[\w.-]*) (\d)", body, re.M):
                self.assertIn("%s(%s)" % (name, sec), names,
                              "%s refers to %s(%s)" % (page, name, sec))


if __name__ == "__main__":
    unittest.main()
