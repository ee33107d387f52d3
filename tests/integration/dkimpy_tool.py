#!/usr/bin/python3
"""dkimpy_tool.py - the independent DKIM verifier and signer of the tests: Debian's
python3-dkim (dkimpy), run by Debian's own /usr/bin/python3 (the tests' python3 may be
another interpreter without it).  DNS is never asked: the key records are given on the
command line, as the DNS answer dkimpy's dnsfunc returns.

  dkimpy_tool.py verify --record NAME=TXT [--record ...] < message
      verifies every DKIM-Signature of the message (LF or CRLF line endings); prints one
      JSON object {"signatures": N, "results": [{"d": ..., "s": ..., "a": ..., "ok": bool,
      "error": str}]} and exits 0 when there is at least one signature and all verify,
      else 1.
  dkimpy_tool.py sign --domain D --selector S --key FILE [--algo rsa-sha256|ed25519-sha256]
                      [--headers from,to,subject] [--canon relaxed/relaxed] < message
      writes the message with a DKIM-Signature prepended.  FILE: a PEM private key
      (RSA, or Ed25519 as written by `openssl genpkey -algorithm ed25519`).

From a test (any interpreter):
    from dkimpy_tool import dkimpy_verify, dkimpy_sign
    ok, report = dkimpy_verify(message_bytes, {"sel._domainkey.example.org": "v=DKIM1; ..."})
"""
import base64
import json
import os
import subprocess
import sys

TOOL = os.path.abspath(__file__)
DEBIAN_PYTHON = "/usr/bin/python3"


def dkimpy_verify(message, records, timeout=60):
    """(ok, report dict) for message (bytes); records: {dns name: TXT value}."""
    argv = [DEBIAN_PYTHON, TOOL, "verify"]
    for name, txt in records.items():
        argv += ["--record", "%s=%s" % (name.rstrip("."), txt)]
    p = subprocess.run(argv, input=message, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    try:
        report = json.loads(p.stdout.decode())
    except ValueError:
        raise RuntimeError("dkimpy_tool verify failed: %r %r" % (p.stdout, p.stderr))
    return p.returncode == 0, report


def dkimpy_sign(message, domain, selector, keyfile, algo="rsa-sha256", headers=None,
                canon="relaxed/relaxed", timeout=60):
    """The message (bytes) with a DKIM-Signature by dkimpy prepended."""
    argv = [DEBIAN_PYTHON, TOOL, "sign", "--domain", domain, "--selector", selector,
            "--key", keyfile, "--algo", algo, "--canon", canon]
    if headers:
        argv += ["--headers", ",".join(headers)]
    p = subprocess.run(argv, input=message, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("dkimpy_tool sign failed: %s" % p.stderr.decode(errors="replace"))
    return p.stdout


def _ed25519_seed(pem):
    """The 32-octet seed of an Ed25519 PEM private key (PKCS#8: the seed ends the DER)."""
    der = subprocess.run(["openssl", "pkey", "-outform", "DER"], input=pem,
                         stdout=subprocess.PIPE, check=True).stdout
    return der[-32:]


def _main(argv):
    import argparse
    import dkim  # Debian's python3-dkim

    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify")
    v.add_argument("--record", action="append", default=[])
    s = sub.add_parser("sign")
    s.add_argument("--domain", required=True)
    s.add_argument("--selector", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--algo", default="rsa-sha256")
    s.add_argument("--headers", default="")
    s.add_argument("--canon", default="relaxed/relaxed")
    a = ap.parse_args(argv)
    msg = sys.stdin.buffer.read()

    if a.cmd == "sign":
        pem = open(a.key, "rb").read()
        if a.algo == "ed25519-sha256":
            key = base64.b64encode(_ed25519_seed(pem))
        else:
            key = pem
        hb, bb = a.canon.split("/")
        headers = [h.encode() for h in a.headers.split(",") if h] or None
        sig = dkim.sign(msg, a.selector.encode(), a.domain.encode(), key,
                        canonicalize=(hb.encode(), bb.encode()), include_headers=headers,
                        signature_algorithm=a.algo.encode(), linesep=b"\r\n")
        sys.stdout.buffer.write(sig + msg)
        return 0

    records = {}
    for r in a.record:
        name, _, txt = r.partition("=")
        records[name.lower().rstrip(".")] = txt.encode()

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return records.get(name.lower().rstrip("."))

    d = dkim.DKIM(msg, minkey=1024)
    n = len([1 for k, _ in d.headers if k.lower() == b"dkim-signature"])
    results = []
    for i in range(n):
        one = dkim.DKIM(msg, minkey=1024)
        try:
            ok = bool(one.verify(idx=i, dnsfunc=dnsfunc))
            err = ""
        except dkim.DKIMException as e:
            ok, err = False, str(e)
        f = one.signature_fields or {}
        results.append({"d": f.get(b"d", b"").decode(errors="replace"),
                        "s": f.get(b"s", b"").decode(errors="replace"),
                        "a": f.get(b"a", b"").decode(errors="replace"),
                        "h": f.get(b"h", b"").decode(errors="replace"),
                        "ok": ok, "error": err})
    print(json.dumps({"signatures": n, "results": results}))
    return 0 if n > 0 and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
