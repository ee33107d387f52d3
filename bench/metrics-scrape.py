#!/usr/bin/env python3
"""metrics-scrape - the cost of an idle scrape of `tern serve`'s /metrics.

Starts tern serve (TERN, default build/tern) in a temporary folder with
[admin] listen = 127.0.0.1:0 and an empty queue, scrapes /metrics N times
(default 2000) one connection each, and prints the body size, the wall time
per scrape (the Python client included) and the server's CPU time per scrape
(utime + stime from /proc/PID/stat).  Results: docs/BENCHMARKS.md.

    TERN=build/tern python3 bench/metrics-scrape.py [N]
"""
import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from servelib import ServeEnv  # noqa: E402


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    cleanups = []
    try:
        env = ServeEnv(cleanup=lambda f, *a: cleanups.append((f, a)),
                       admin={"listen": "127.0.0.1:0"})
        srv = env.start(check_exit=False)
        url = "http://%s/metrics" % re.search(r"admin listening on (\S+)", srv.log).group(1)
        tick = os.sysconf("SC_CLK_TCK")

        def cpu():
            with open("/proc/%d/stat" % srv.pid) as f:
                x = f.read().rsplit(")", 1)[1].split()
            return (int(x[11]) + int(x[12])) / tick

        body = urllib.request.urlopen(url).read()
        c0, t0 = cpu(), time.monotonic()
        for _ in range(n):
            urllib.request.urlopen(url).read()
        wall, used = time.monotonic() - t0, cpu() - c0
        print("body %d bytes; %d scrapes: %.3f ms wall, %.3f ms server CPU per scrape" %
              (len(body), n, wall * 1000 / n, used * 1000 / n))
    finally:
        for f, a in reversed(cleanups):
            f(*a)


if __name__ == "__main__":
    main()
