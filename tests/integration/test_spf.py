"""SPF (RFC 7208): tern's check_host() against an independent implementation.

A dnsmasq started here (a free port of 127.0.0.1, records on its command line,
stopped by PID) serves SPF records of every kind: plain results, include chains,
redirect, a/mx with dual CIDR, ip6, ptr, exists and %{p} macros, loops, the
10-lookup and 2-void-lookup limits, two records, garbage, exp= and a zone
forwarded to a UDP socket nobody reads (temperror).  For each (ip, sender, helo)
triple, `tern spf check` (pointed at the dnsmasq with --dns-servers) and Debian's
pyspf (python3-spf, run by /usr/bin/python3 with dnspython's default resolver
pointed at the same dnsmasq) must give the same result, and that result must be
the one the RFC gives (written next to each triple).  On fail the explanation
from exp= must be the same too.  A few records where pyspf knowingly differs
(it sets no size limit on a record) are checked against tern alone.

Environment: TERN is the tern binary (CI: an ASan build).  dnsmasq and
python3-spf are installed by scripts/install-deps; without them the test fails.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from ternlib import free_port

TERN = os.environ.get("TERN", "tern")
DEBIAN_PYTHON = "/usr/bin/python3"

ZONE = [
    "--txt-record=pass.test,v=spf1 ip4:192.0.2.0/24 -all",
    "--txt-record=pass.test,some other text",
    "--txt-record=fail.test,v=spf1 -all",
    "--txt-record=soft.test,v=spf1 ~all",
    "--txt-record=neutral.test,v=spf1 ?all",
    "--txt-record=empty.test,v=spf1",
    "--txt-record=upper.test,V=SPF1 IP4:192.0.2.0/24 -ALL",
    "--txt-record=nospf.test,hello world",
    "--txt-record=split.test,v=spf1 ip4:192.0.2.3,/32 -all",
    "--txt-record=inc.test,v=spf1 include:pass.test -all",
    "--txt-record=chain1.test,v=spf1 include:chain2.test ~all",
    "--txt-record=chain2.test,v=spf1 -include:chain3.test ?all",
    "--txt-record=chain3.test,v=spf1 ip4:192.0.2.3 -all",
    "--txt-record=incnone.test,v=spf1 include:nospf.test -all",
    "--txt-record=redirect.test,v=spf1 redirect=pass.test",
    "--txt-record=redirect2.test,v=spf1 ip4:198.51.100.0/24 redirect=fail.test",
    "--txt-record=redirnone.test,v=spf1 redirect=nospf.test",
    "--txt-record=a.test,v=spf1 a -all",
    "--host-record=a.test,192.0.2.10,2001:db8::10",
    "--txt-record=acidr.test,v=spf1 a:host.acidr.test/24//64 -all",
    "--host-record=host.acidr.test,192.0.2.200,2001:db8::1",
    "--txt-record=mx.test,v=spf1 mx/24 -all",
    "--txt-record=mxexact.test,v=spf1 mx:mx.test -all",
    "--mx-host=mx.test,mail.mx.test,10",
    "--mx-host=mx.test,mail2.mx.test,20",
    "--host-record=mail.mx.test,192.0.2.77",
    "--host-record=mail2.mx.test,198.51.100.9,2001:db8::cb01",
    "--txt-record=ip6.test,v=spf1 ip6:2001:db8::/32 -all",
    "--txt-record=ptr.test,v=spf1 ptr -all",
    "--host-record=mail.ptr.test,192.0.2.99",
    "--ptr-record=98.2.0.192.in-addr.arpa,fake.ptr.test",
    "--txt-record=exists.test,v=spf1 exists:%{ir}.%{l1+-}._spf.%{d} -all",
    "--host-record=3.2.0.192.alice._spf.exists.test,127.0.0.2",
    "--txt-record=pmacro.test,v=spf1 exists:%{p}.p.pmacro.test -all",
    "--host-record=mail.ptr.test.p.pmacro.test,127.0.0.2",
    "--txt-record=hmacro.test,v=spf1 -exists:%{h}.h.hmacro.test +all",
    "--host-record=bad.example.h.hmacro.test,127.0.0.2",
    "--txt-record=self.test,v=spf1 include:self.test -all",
    "--txt-record=loopa.test,v=spf1 include:loopb.test -all",
    "--txt-record=loopb.test,v=spf1 include:loopa.test -all",
    "--txt-record=rloop.test,v=spf1 redirect=rloop.test",
    "--txt-record=ten.test,v=spf1 " + " ".join("a:h%d.many.test" % i for i in range(1, 11))
    + " ip4:192.0.2.3 -all",
    "--txt-record=eleven.test,v=spf1 " + " ".join("a:h%d.many.test" % i for i in range(1, 12))
    + " ip4:192.0.2.3 -all",
    "--txt-record=void2.test,v=spf1 a:nx1.void.test mx:nx2.void.test ip4:192.0.2.3 -all",
    "--txt-record=void3.test,v=spf1 a:nx1.void.test mx:nx2.void.test exists:nx3.void.test "
    "ip4:192.0.2.3 -all",
    "--txt-record=mxmany.test,v=spf1 mx ip4:192.0.2.3 -all",
    "--txt-record=two.test,v=spf1 -all",
    "--txt-record=two.test,v=spf1 +all",
    "--txt-record=notspf.test,v=spf10 +all",
    "--txt-record=garbage.test,v=spf1 ip4:192.0.2.3 foo:bar -all",
    "--txt-record=badip.test,v=spf1 ip4:192.0.2.300 -all",
    "--txt-record=badmacro.test,v=spf1 a:%{q}.badmacro.test ip4:192.0.2.3",
    "--txt-record=nofqdn.test,v=spf1 a:localhost ip4:192.0.2.3",
    "--txt-record=unknownmod.test,v=spf1 ip4:192.0.2.3 foo=bar.%{d} -all",
    "--txt-record=expfail.test,v=spf1 -all exp=explain.expfail.test",
    "--txt-record=explain.expfail.test,%{i} is not one of %{d}'s designated mail servers.",
    "--txt-record=incdead.test,v=spf1 include:spf.dead.test -all",
    # IPv6 macros and ptr, CNAME chains, a redirect through a macro
    "--txt-record=exists6.test,v=spf1 exists:%{ir}.%{v}._spf.%{d2} -all",
    "--host-record=1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf."
    "exists6.test,127.0.0.2",
    "--txt-record=ptr6.test,v=spf1 ptr:ptr6.test -all",
    "--host-record=mail.ptr6.test,2001:db8::99",
    "--txt-record=cname.test,v=spf1 a:alias.cname.test -all",
    "--cname=alias.cname.test,target.cname.test",
    "--host-record=target.cname.test,192.0.2.55,2001:db8::55",
    "--txt-record=rmacro.test,v=spf1 redirect=_spf.%{d}",
    "--txt-record=_spf.rmacro.test,v=spf1 ip4:192.0.2.3 -all",
    "--txt-record=mxv6.test,v=spf1 mx:mx.test//48 -all",
    # target names with any visible octet (RFC 7208 7.1): '+' from a local part, a ':'
    "--txt-record=plus.test,v=spf1 exists:%{l}._spf.%{d} -all",
    "--host-record=first+tag._spf.plus.test,127.0.0.2",
    "--txt-record=colon.test,v=spf1 a:x:y.colon.test -all",
    "--address=/x:y.colon.test/192.0.2.3",
] + ["--host-record=h%d.many.test,198.51.100.%d" % (i, i) for i in range(1, 12)] \
  + ["--mx-host=mxmany.test,h%d.many.test,%d" % (i, i) for i in range(1, 12)]

# (ip, sender, helo, the RFC's result)
TRIPLES = [
    ("192.0.2.3", "alice@pass.test", "helo.example", "pass"),
    ("198.51.100.1", "alice@pass.test", "helo.example", "fail"),
    ("::ffff:192.0.2.3", "alice@pass.test", "helo.example", "pass"),
    ("192.0.2.3", "", "pass.test", "pass"),
    ("198.51.100.1", "", "pass.test", "fail"),
    ("192.0.2.3", "alice@fail.test", "helo.example", "fail"),
    ("192.0.2.3", "alice@soft.test", "helo.example", "softfail"),
    ("192.0.2.3", "alice@neutral.test", "helo.example", "neutral"),
    ("192.0.2.3", "alice@empty.test", "helo.example", "neutral"),
    ("192.0.2.3", "alice@upper.test", "helo.example", "pass"),
    ("192.0.2.3", "alice@nospf.test", "helo.example", "none"),
    ("192.0.2.3", "alice@missing.test", "helo.example", "none"),
    ("192.0.2.3", "alice@notspf.test", "helo.example", "none"),
    ("192.0.2.3", "alice@split.test", "helo.example", "pass"),
    ("192.0.2.4", "alice@split.test", "helo.example", "fail"),
    ("192.0.2.3", "a@inc.test", "h.example", "pass"),
    ("198.51.100.1", "a@inc.test", "h.example", "fail"),
    ("192.0.2.3", "a@chain1.test", "h.example", "softfail"),
    ("198.51.100.1", "a@chain1.test", "h.example", "softfail"),
    ("192.0.2.3", "a@incnone.test", "h.example", "permerror"),
    ("192.0.2.3", "a@redirect.test", "h.example", "pass"),
    ("198.51.100.1", "a@redirect.test", "h.example", "fail"),
    ("198.51.100.7", "a@redirect2.test", "h.example", "pass"),
    ("192.0.2.3", "a@redirect2.test", "h.example", "fail"),
    ("192.0.2.3", "a@redirnone.test", "h.example", "permerror"),
    ("192.0.2.10", "a@a.test", "h.example", "pass"),
    ("192.0.2.11", "a@a.test", "h.example", "fail"),
    ("2001:db8::10", "a@a.test", "h.example", "pass"),
    ("2001:db8::11", "a@a.test", "h.example", "fail"),
    ("192.0.2.3", "a@acidr.test", "h.example", "pass"),
    ("192.0.3.3", "a@acidr.test", "h.example", "fail"),
    ("2001:db8::cb01", "a@acidr.test", "h.example", "pass"),
    ("2001:db8:1::1", "a@acidr.test", "h.example", "fail"),
    ("192.0.2.3", "a@mx.test", "h.example", "pass"),
    ("203.0.113.1", "a@mx.test", "h.example", "fail"),
    ("192.0.2.77", "a@mxexact.test", "h.example", "pass"),
    ("192.0.2.3", "a@mxexact.test", "h.example", "fail"),
    ("2001:db8::cb01", "a@mxexact.test", "h.example", "pass"),
    ("2001:db8::cb01", "a@ip6.test", "h.example", "pass"),
    ("2001:db9::1", "a@ip6.test", "h.example", "fail"),
    ("192.0.2.3", "a@ip6.test", "h.example", "fail"),
    ("192.0.2.99", "a@ptr.test", "h.example", "pass"),
    ("192.0.2.98", "a@ptr.test", "h.example", "fail"),
    ("192.0.2.3", "alice@exists.test", "h.example", "pass"),
    ("192.0.2.3", "x+alice@exists.test", "h.example", "pass"),
    ("192.0.2.3", "bob@exists.test", "h.example", "fail"),
    ("192.0.2.99", "a@pmacro.test", "h.example", "pass"),
    ("192.0.2.98", "a@pmacro.test", "h.example", "fail"),
    ("192.0.2.3", "a@hmacro.test", "bad.example", "fail"),
    ("192.0.2.3", "a@hmacro.test", "good.example", "pass"),
    ("192.0.2.3", "a@self.test", "h.example", "permerror"),
    ("192.0.2.3", "a@loopa.test", "h.example", "permerror"),
    ("192.0.2.3", "a@rloop.test", "h.example", "permerror"),
    ("192.0.2.3", "a@ten.test", "h.example", "pass"),
    ("192.0.2.3", "a@eleven.test", "h.example", "permerror"),
    ("192.0.2.3", "a@void2.test", "h.example", "pass"),
    ("192.0.2.3", "a@void3.test", "h.example", "permerror"),
    ("192.0.2.3", "a@mxmany.test", "h.example", "permerror"),
    ("192.0.2.3", "a@two.test", "h.example", "permerror"),
    ("192.0.2.3", "a@garbage.test", "h.example", "permerror"),
    ("192.0.2.3", "a@badip.test", "h.example", "permerror"),
    ("192.0.2.3", "a@badmacro.test", "h.example", "permerror"),
    ("192.0.2.3", "a@nofqdn.test", "h.example", "permerror"),
    ("192.0.2.3", "a@unknownmod.test", "h.example", "pass"),
    ("192.0.2.3", "a@expfail.test", "h.example", "fail"),
    ("192.0.2.3", "a@incdead.test", "h.example", "temperror"),
    ("2001:db8::cb01", "a@exists6.test", "h.example", "pass"),
    ("2001:db8::cb02", "a@exists6.test", "h.example", "fail"),
    ("2001:db8::99", "a@ptr6.test", "h.example", "pass"),
    ("2001:db8::98", "a@ptr6.test", "h.example", "fail"),
    ("192.0.2.55", "a@cname.test", "h.example", "pass"),
    ("2001:db8::55", "a@cname.test", "h.example", "pass"),
    ("192.0.2.56", "a@cname.test", "h.example", "fail"),
    ("192.0.2.3", "a@rmacro.test", "h.example", "pass"),
    ("192.0.2.4", "a@rmacro.test", "h.example", "fail"),
    ("2001:db8:0:ffff::1", "a@mxv6.test", "h.example", "pass"),
    ("2001:db8:1::1", "a@mxv6.test", "h.example", "fail"),
    ("192.0.2.3", "first+tag@plus.test", "h.example", "pass"),
    ("192.0.2.3", "other+tag@plus.test", "h.example", "fail"),
    ("192.0.2.3", "a@colon.test", "h.example", "pass"),
    ("192.0.2.4", "a@colon.test", "h.example", "fail"),
]

# pyspf in Debian's python3 with dnspython's default resolver pointed at our dnsmasq:
# reads [[ip, sender, helo], ...] as JSON on stdin, prints [[result, explanation], ...].
PYSPF = r"""
import json, sys
import dns.resolver
import spf
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = int(sys.argv[1])
r.timeout = 1.0
r.lifetime = 3.0
dns.resolver.default_resolver = r
out = []
for ip, s, h in json.load(sys.stdin):
    res, exp = spf.check2(i=ip, s=s, h=h, querytime=4)
    out.append([res, exp])
print(json.dumps(out))
"""


class Dnsmasq:
    """dnsmasq in the foreground on 127.0.0.1:port; stopped by PID."""

    def __init__(self, records):
        self.dir = tempfile.mkdtemp(prefix="tern-spf-dns-")
        # a UDP socket nobody reads: queries forwarded to it time out
        self.silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.silent.bind(("127.0.0.1", 0))
        silent_port = self.silent.getsockname()[1]
        self.proc = None
        for _ in range(5):
            self.port = free_port("127.0.0.1")
            self.log_path = os.path.join(self.dir, "dnsmasq.log")
            argv = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv",
                    "--no-hosts", "--no-poll", "--port=%d" % self.port,
                    "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
                    "--cache-size=0", "--local=/test/", "--local=/in-addr.arpa/",
                    "--local=/ip6.arpa/",
                    "--server=/dead.test/127.0.0.1#%d" % silent_port] + list(records)
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT)
            if self._ready():
                return
            self.stop()
        raise RuntimeError("dnsmasq did not start:\n%s" % self.log())

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def _ready(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            p = subprocess.run([TERN, "spf", "check", "192.0.2.3", "a@fail.test", "h",
                                "--dns-servers", "127.0.0.1:%d" % self.port, "--timeout", "200"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
            if p.stdout.startswith(b"spf=fail "):
                return True
            time.sleep(0.1)
        return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def close(self):
        self.stop()
        self.silent.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def tern_check(port, ip, sender, helo):
    """(result, explanation, full output) of `tern spf check`."""
    p = subprocess.run([TERN, "spf", "check", ip, sender, helo,
                        "--dns-servers", "127.0.0.1:%d" % port, "--timeout", "500"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    out = p.stdout.decode()
    lines = out.splitlines()
    if not lines or not lines[0].startswith("spf="):
        raise AssertionError("tern spf check %s %s %s: %r %r" % (ip, sender, helo, out,
                                                                 p.stderr))
    result = lines[0].split()[0][4:]
    expected_rc = 0 if result == "pass" else 1
    if p.returncode != expected_rc:
        raise AssertionError("tern spf check exit %d for %s: %r" % (p.returncode, result, out))
    exp = ""
    for line in lines[1:]:
        if line.startswith("explanation: "):
            exp = line[len("explanation: "):]
    return result, exp, out + p.stderr.decode(errors="replace")


class SpfCrossCheckTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("dnsmasq",):
            if not shutil.which(tool):
                raise RuntimeError("%s is missing (scripts/install-deps installs it)" % tool)
        p = subprocess.run([DEBIAN_PYTHON, "-c", "import spf, dns.resolver"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            raise RuntimeError("python3-spf/python3-dnspython missing (scripts/install-deps): %s"
                               % p.stdout.decode(errors="replace"))
        cls.dns = Dnsmasq(ZONE)

    @classmethod
    def tearDownClass(cls):
        cls.dns.close()

    def pyspf(self, triples):
        p = subprocess.run([DEBIAN_PYTHON, "-c", PYSPF, str(self.dns.port)],
                           input=json.dumps([list(t[:3]) for t in triples]).encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        return json.loads(p.stdout.decode())

    def test_same_result_as_pyspf(self):
        theirs = self.pyspf(TRIPLES)
        self.assertEqual(len(theirs), len(TRIPLES))
        problems = []
        for (ip, sender, helo, want), (py_res, py_exp) in zip(TRIPLES, theirs):
            res, exp, out = tern_check(self.dns.port, ip, sender, helo)
            if res != py_res or res != want:
                problems.append("%s %r %s: RFC %s, pyspf %s, tern %s\n  %s"
                                % (ip, sender, helo, want, py_res, res, out.strip()))
            elif res == "fail" and exp and exp != py_exp:
                problems.append("%s %r: explanation %r, pyspf %r" % (ip, sender, exp, py_exp))
        self.assertEqual(problems, [], "\n".join(problems))

    def test_explanation(self):
        res, exp, out = tern_check(self.dns.port, "192.0.2.3", "a@expfail.test", "h.example")
        self.assertEqual(res, "fail", out)
        self.assertEqual(exp, "192.0.2.3 is not one of expfail.test's designated mail servers.")
        [[py_res, py_exp]] = self.pyspf([("192.0.2.3", "a@expfail.test", "h.example")])
        self.assertEqual((py_res, py_exp), (res, exp))

    def test_usage_errors(self):
        for argv in (["check"], ["check", "192.0.2.3"], ["check", "not-an-ip", "a@b.test"],
                     ["check", "192.0.2.3", "a@b.test", "h", "--timeout", "0"],
                     ["check", "192.0.2.3", "a@b.test", "h", "--bogus"], ["nothing"]):
            p = subprocess.run([TERN, "spf"] + argv, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
            self.assertEqual(p.returncode, 2, argv)
            self.assertRegex(p.stderr, rb"^(tern spf check: |usage: )", argv)


if __name__ == "__main__":
    unittest.main()
