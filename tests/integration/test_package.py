"""The Debian package (debian/, scripts/build-deb): lintian, its contents, and
`dpkg -i` on a throw-away Debian 12 root that then serves mail.

The package is built once per run by scripts/build-deb into the folder of the
tern under test (TERN_DEB=FILE uses a .deb built already, e.g. by `make deb`).
The Debian 12 root is made by `debootstrap --variant=minbase bookworm` with the
package's dependencies included, and kept as a tarball in
~/.cache/tern/ (TERN_CACHE) keyed by that list: a run downloads it at most
once, later runs only unpack it. In the root: dpkg -i, the files, the user
tern, the links, the generated certificate, then `tern serve` from the package
in a private network namespace (unshare -n -m, lo up) answering on 25 and 587
and delivering a message sent over SMTP and one given to `sendmail` (a bare
name, as cron gives) into the Maildir of a user made with `tern user add`;
`newaliases` and `mailq` work; stopped by PID; `dpkg -i` again (an upgrade)
keeps the data, key and changed conffile; then `dpkg --purge` removes the data
folder, the certificate and the user.

Needs root (chroot, unshare) and debootstrap, dpkg-dev, debhelper, fakeroot,
lintian (scripts/install-deps); without them the test fails.
"""

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

from ternlib import TERN, Daemon, temp_dir, wait_until, write_file

SOURCE = os.environ.get("TERN_SOURCE", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
MIRROR = os.environ.get("TERN_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CACHE = os.environ.get("TERN_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "tern"))
SUITE = "bookworm"

# lintian's errors and warnings fail the test (debian/tern.lintian-overrides holds
# the package's overrides, each with its reason)
LINTIAN_FAIL = re.compile(r"^[EW]: ", re.M)


def run(argv, timeout=300, check=True, **kw):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, **kw)
    out = p.stdout.decode("utf-8", "replace")
    if check and p.returncode != 0:
        raise AssertionError("%r exited %d:\n%s" % (argv, p.returncode, out[-6000:]))
    return out


_deb = None


def package():
    """The .deb under test: TERN_DEB, or built (once per process) by scripts/build-deb."""
    global _deb
    if _deb is None:
        if os.environ.get("TERN_DEB"):
            _deb = os.environ["TERN_DEB"]
        else:
            out_dir = os.path.join(os.path.dirname(os.path.abspath(TERN)), "deb")
            out = run([os.path.join(SOURCE, "scripts", "build-deb"), out_dir], timeout=900)
            _deb = out.strip().splitlines()[-1]
    return _deb


def deb_field(deb, field):
    return run(["dpkg-deb", "-f", deb, field]).strip()


def dependency_names(deb):
    """The packages named by Depends (the first of each alternative, no versions)."""
    names = []
    for part in deb_field(deb, "Depends").split(","):
        name = part.split("|")[0].strip().split(" ")[0].split(":")[0]
        if name:
            names.append(name)
    return sorted(set(names))


def debian_root(include):
    """A tarball of a minbase Debian 12 root with `include` installed: from the cache,
    else made by debootstrap and cached (under a lock: two runs make it once)."""
    key = hashlib.sha256(("%s %s %s" % (SUITE, MIRROR, " ".join(include))).encode()).hexdigest()[:16]
    os.makedirs(CACHE, exist_ok=True)
    tarball = os.path.join(CACHE, "debian-%s-minbase-%s.tar" % (SUITE, key))
    with open(os.path.join(CACHE, "debootstrap.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(tarball):
            return tarball
        work = tempfile.mkdtemp(prefix="tern-debootstrap-", dir=CACHE)
        try:
            root = os.path.join(work, "root")
            run(["debootstrap", "--variant=minbase", "--include=" + ",".join(include),
                 SUITE, root, MIRROR], timeout=600)
            run(["chroot", root, "apt-get", "clean"])  # the downloaded .debs: not kept
            run(["tar", "-C", root, "-cf", tarball + ".tmp", "."], timeout=300)
            os.rename(tarball + ".tmp", tarball)
        finally:
            shutil.rmtree(work, True)
    return tarball


class PackageFiles(unittest.TestCase):
    """The .deb itself: lintian, control fields, the files, the maintainer scripts."""

    @classmethod
    def setUpClass(cls):
        cls.deb = package()

    def test_lintian(self):
        out = run(["lintian", "--allow-root", "--pedantic", "--fail-on", "none", self.deb],
                  timeout=300)
        bad = [line for line in out.splitlines() if LINTIAN_FAIL.match(line)]
        self.assertEqual(bad, [], "lintian errors and warnings:\n" + out)

    def test_control(self):
        self.assertEqual(deb_field(self.deb, "Package"), "tern")
        self.assertIn("mail-transport-agent", deb_field(self.deb, "Provides"))
        self.assertIn("mail-transport-agent", deb_field(self.deb, "Conflicts"))
        self.assertIn("mail-transport-agent", deb_field(self.deb, "Replaces"))
        deps = dependency_names(self.deb)
        for d in ("adduser", "openssl", "libevent-2.1-7", "libssl3"):
            self.assertIn(d, deps)
        info = run(["dpkg-deb", "--info", self.deb])
        self.assertIn("conffiles", info)
        d = temp_dir(self.addCleanup)
        run(["dpkg-deb", "-e", self.deb, d])
        with open(os.path.join(d, "conffiles")) as f:
            self.assertIn("/etc/tern/tern.conf", f.read().split())
        for script in ("postinst", "postrm"):
            run(["sh", "-n", os.path.join(d, script)])

    def test_files(self):
        listing = run(["dpkg-deb", "-c", self.deb])
        entries = {}
        for line in listing.splitlines():
            f = line.split(None, 5)
            name = f[5].split(" -> ")
            entries[name[0].lstrip(".")] = (f[0], name[1] if len(name) > 1 else None)
        self.assertTrue(entries["/usr/sbin/tern"][0].startswith("-rwxr-xr-x"))
        self.assertTrue(entries["/etc/tern/tern.conf"][0].startswith("-rw-r--r--"))
        self.assertEqual(entries["/usr/sbin/sendmail"][1], "tern")
        self.assertEqual(entries["/usr/sbin/newaliases"][1], "tern")
        self.assertEqual(entries["/usr/bin/mailq"][1], "../sbin/tern")
        self.assertEqual(entries["/usr/lib/sendmail"][1], "../sbin/sendmail")
        if os.path.exists(os.path.join(SOURCE, "dist", "tern.service")):
            self.assertIn("/lib/systemd/system/tern.service", entries)
        for page in os.listdir(os.path.join(SOURCE, "man")) if os.path.isdir(
                os.path.join(SOURCE, "man")) else []:
            m = re.match(r"^(.*)\.([158])$", page)
            if m:
                self.assertIn("/usr/share/man/man%s/%s.gz" % (m.group(2), page), entries)


class MakeInstall(unittest.TestCase):
    """`make install`'s commands and the install() rules of the build under test."""

    def test_make_install_commands(self):
        out = run(["make", "-n", "-C", SOURCE, "install", "BUILD=/nonexistent-build",
                   "PREFIX=/opt/tern", "DESTDIR=/stage", "SYSCONFDIR=/etc"])
        self.assertIn("-DCMAKE_INSTALL_PREFIX=/opt/tern", out)
        self.assertIn('DESTDIR="/stage" cmake --install /nonexistent-build', out)
        self.assertIn("--target tern", out)
        self.assertNotIn("ctest", out)
        self.assertNotIn("install-deps", out)

    def test_install_rules(self):
        build = os.path.dirname(os.path.abspath(TERN))
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            cache = f.read()
        prefix = re.search(r"^CMAKE_INSTALL_PREFIX:PATH=(.*)$", cache, re.M).group(1)
        sysconf = re.search(r"^CMAKE_INSTALL_SYSCONFDIR:PATH=(.*)$", cache, re.M).group(1)
        if not sysconf.startswith("/"):
            sysconf = os.path.join(prefix, sysconf)
        if prefix == "/usr" and sysconf == "/usr/etc":
            sysconf = "/etc"  # GNUInstallDirs' special case
        stage = temp_dir(self.addCleanup, "tern-install-")
        env = dict(os.environ, DESTDIR=stage)
        run(["cmake", "--install", build], env=env)

        def staged(p):
            return os.path.join(stage, p.lstrip("/"))
        self.assertTrue(os.access(staged(prefix + "/sbin/tern"), os.X_OK))
        conf = staged(sysconf + "/tern/tern.conf")
        with open(conf) as f, open(os.path.join(SOURCE, "dist", "tern.conf")) as g:
            self.assertEqual(f.read(), g.read())
        man = os.path.join(SOURCE, "man")
        for page in os.listdir(man) if os.path.isdir(man) else []:
            m = re.match(r"^(.*)\.([158])$", page)
            if m:
                self.assertTrue(os.path.exists(staged("%s/share/man/man%s/%s"
                                                      % (prefix, m.group(2), page))), page)
        if os.path.exists(os.path.join(SOURCE, "dist", "tern.service")):
            with open(staged(prefix + "/lib/systemd/system/tern.service")) as f:
                self.assertIn("ExecStart=%s/sbin/tern " % prefix, f.read())
        # an existing tern.conf is kept
        write_file(conf, "; mine\n")
        out = run(["cmake", "--install", build], env=env)
        self.assertIn("Kept:", out)
        with open(conf) as f:
            self.assertEqual(f.read(), "; mine\n")


class PackageInstall(unittest.TestCase):
    """dpkg -i on a clean Debian 12 root, and the server it gives."""

    @classmethod
    def setUpClass(cls):
        cls.deb = package()

    def chroot(self, *argv, **kw):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
               "LC_ALL": "C"}
        return run(["chroot", self.root] + list(argv), env=env, **kw)

    def test_install_serve_purge(self):
        tarball = debian_root(dependency_names(self.deb))
        self.root = root = os.path.join(temp_dir(self.addCleanup, "tern-pkg-root-"), "root")
        os.mkdir(root)
        run(["tar", "-C", root, "-xf", tarball], timeout=300)
        shutil.copy(self.deb, os.path.join(root, "tmp", "tern.deb"))

        # ---- install: every dependency is in the root already (no network needed) --
        out = self.chroot("dpkg", "-i", "/tmp/tern.deb", check=False)
        if "dependency problems" in out:  # a dependency the cached root lacks
            self.chroot("apt-get", "-q", "update")
            self.chroot("apt-get", "-q", "-y", "-f", "install")
        self.assertIn("install ok installed",
                      self.chroot("dpkg-query", "-W", "-f=${Status}", "tern"), out)

        def path(p):
            return os.path.join(root, p.lstrip("/"))

        self.assertTrue(os.access(path("/usr/sbin/tern"), os.X_OK))
        self.assertEqual(os.readlink(path("/usr/sbin/sendmail")), "tern")
        self.assertEqual(os.readlink(path("/usr/sbin/newaliases")), "tern")
        self.assertEqual(os.readlink(path("/usr/bin/mailq")), "../sbin/tern")
        with open(path("/etc/tern/tern.conf")) as f, open(os.path.join(SOURCE, "dist", "tern.conf")) as g:
            self.assertEqual(f.read(), g.read())
        self.assertIn("/etc/tern/tern.conf",
                      self.chroot("dpkg-query", "-W", "-f=${Conffiles}", "tern"))

        # the system user and its folders
        pw = self.chroot("getent", "passwd", "tern").strip().split(":")
        self.assertEqual(pw[0], "tern")
        uid, gid = int(pw[2]), int(pw[3])
        self.assertLess(uid, 1000, "a system user")
        self.assertEqual(pw[5], "/var/lib/tern")
        self.assertEqual(pw[6], "/usr/sbin/nologin")
        st = os.stat(path("/var/lib/tern"))
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o7777), (uid, gid, 0o750))
        domains = os.listdir(path("/var/lib/tern/domains"))
        self.assertEqual(len(domains), 1, domains)
        domain = domains[0]
        # the mail name: the root's /etc/mailname (none in minbase), FQDN or host name
        names = (self.chroot("hostname", "--fqdn", check=False).strip().lower(),
                 self.chroot("hostname").strip().lower())
        self.assertIn(domain, names)
        st = os.stat(path("/etc/tern/tls/key.pem"))
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (uid, 0o600))  # read on SIGHUP as tern
        if os.path.exists(path("/lib/systemd/system/tern.service")):
            wants = [os.path.join(d, f) for d, _, fs in os.walk(path("/etc/systemd/system"))
                     for f in fs if f == "tern.service"]
            self.assertTrue(wants, "tern.service is not enabled (no link in /etc/systemd/system)")

        self.assertIn("ok", self.chroot("tern", "check-config", "--config", "/etc/tern/tern.conf"))
        write_file(path("/tmp/pw"), "secret-pw\n", 0o600)
        self.chroot("tern", "user", "add", "--config", "/etc/tern/tern.conf", "--password-file",
                    "/tmp/pw", "alice@" + domain)

        # ---- serve: the package's tern, as root, in a private network namespace --
        class Serve(Daemon):
            name = "serve"
            kinds = ("smtp", "submission", "submissions")

        srv = Serve(["unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-c",
                     'ip link set lo up && mount -t proc proc "$1/proc" && '
                     'exec chroot "$1" /usr/sbin/tern serve --config /etc/tern/tern.conf',
                     "sh", root])
        self.addCleanup(srv.stop)
        ports = sorted({p for kind in ("smtp", "submission") for _, p in srv.listeners[kind]})
        self.assertEqual(ports, [25, 587], srv.log)

        # an SMTP client inside that namespace: the host's Python, entered with nsenter
        client = r'''
import smtplib, ssl, sys
domain = sys.argv[1]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", 587, timeout=20)
s.ehlo("client.test")
assert s.has_extn("starttls"), s.esmtp_features
s.starttls(context=ctx); s.ehlo("client.test")
assert "PLAIN" in s.esmtp_features.get("auth", ""), s.esmtp_features
s.quit()
s = smtplib.SMTP("127.0.0.1", 25, timeout=20)
s.sendmail("someone@example.org", ["alice@" + domain],
           "From: someone@example.org\r\nSubject: over smtp\r\n\r\nhello over port 25\r\n")
s.quit()
print("sent")
'''
        out = run(["nsenter", "--target", str(srv.pid), "--net", sys.executable, "-c", client, domain],
                  timeout=60)
        self.assertIn("sent", out)
        # the MTA way for local programs: /usr/sbin/sendmail is tern; cron gives a bare
        # name, which is of the host name's local domain
        self.chroot("sh", "-c", "printf 'Subject: by sendmail\\n\\nhello from cron\\n' | "
                    "/usr/sbin/sendmail -i alice")
        # other packages' maintainer scripts run newaliases; admins run mailq
        self.chroot("newaliases")
        self.chroot("mailq")
        new = path("/var/lib/tern/mail/%s/alice/Maildir/new" % domain)

        def delivered():
            try:
                return len(os.listdir(new)) >= 2
            except FileNotFoundError:
                return False
        self.assertTrue(wait_until(delivered, 30), srv.log)
        texts = []
        for name in os.listdir(new):
            st = os.stat(os.path.join(new, name))
            self.assertEqual(st.st_uid, uid, "delivered as the user tern")
            with open(os.path.join(new, name), "rb") as f:
                texts.append(f.read())
        self.assertTrue(any(b"hello over port 25" in t for t in texts), texts)
        self.assertTrue(any(b"hello from cron" in t for t in texts), texts)
        srv.check_clean_exit()

        # ---- an upgrade (the same package again) keeps the data, key and config ----
        with open(path("/etc/tern/tls/key.pem"), "rb") as f:
            key = f.read()
        with open(path("/etc/tern/tern.conf"), "a") as f:
            f.write("; changed by the admin\n")
        self.chroot("dpkg", "-i", "/tmp/tern.deb")
        with open(path("/etc/tern/tls/key.pem"), "rb") as f:
            self.assertEqual(f.read(), key)
        with open(path("/etc/tern/tern.conf")) as f:
            self.assertIn("; changed by the admin", f.read())
        self.assertEqual(len(os.listdir(new)), 2)
        self.assertIn("alice", self.chroot("tern", "user", "list", "--config", "/etc/tern/tern.conf"))

        # ---- purge: the data, the certificate and the user go --------------------
        self.chroot("dpkg", "--purge", "tern")
        self.assertFalse(os.path.exists(path("/var/lib/tern")))
        self.assertFalse(os.path.exists(path("/etc/tern")))
        self.assertFalse(os.path.lexists(path("/usr/sbin/sendmail")))
        self.assertEqual(self.chroot("getent", "passwd", "tern", check=False).strip(), "")


if __name__ == "__main__":
    unittest.main()
