#!/usr/bin/env python3
"""Measure a failover through the redirector, sampling every 20 ms.

Usage: failover.py REDIRECTOR_URL OLD_NODE_URL LIMIT_S NEW(0|1) CA_FILE|- NODE_URL... -- TRIGGER...

Samples the truth (every node's /v1/sys/health) and the redirector's answer
for a target, runs TRIGGER (a command) after a short baseline, and stops
when the redirector has pointed at an active node (with NEW=1: not OLD) for
a second, or after LIMIT_S. Prints shell assignments:
  WRONG    seconds clients were sent to a node not answering 200
  DEAD     seconds clients were sent to OLD while it did not answer 200
  REFUSED  seconds of 503 (no active node known)
  SERVED   seconds from the moment the new active first answered 200 (after
           a moment with no node answering 200) to the redirector sending
           clients to it; "never" if it did not happen
  ELECTION seconds from the trigger to the new active's first 200
"""
import http.client
import ssl
import subprocess
import sys
import time
import urllib.parse

SAMPLE_GAP = 0.02
BASELINE = 0.3
STABLE = 1.0


def connection(url, ctx):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=0.5, context=ctx)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=0.5)


def status(url, ctx):
    try:
        c = connection(url, ctx)
        c.request("GET", "/v1/sys/health")
        code = c.getresponse().status
        c.close()
        return code
    except (OSError, http.client.HTTPException):
        return None


def redirected_to(redirector, nodes):
    """The listed node the redirector sends clients to, 503, or None."""
    try:
        c = connection(redirector, None)
        c.request("GET", "/v1/sys/health")
        r = c.getresponse()
        location = r.getheader("Location") or ""
        c.close()
    except (OSError, http.client.HTTPException):
        return None
    if r.status == 503:
        return 503
    for node in nodes:
        if location.startswith(node + "/"):
            return node
    return None


def main():
    sep = sys.argv.index("--")
    redirector, old, limit, new, ca = sys.argv[1:6]
    nodes = sys.argv[6:sep]
    trigger = sys.argv[sep + 1:]
    limit, new = float(limit), new == "1"
    ctx = ssl.create_default_context(cafile=ca) if ca != "-" else None
    wrong = dead = refused = 0.0
    start = time.monotonic()
    triggered = None
    prev = start
    gap_seen = False
    first_200 = {}
    served = None
    stable = 0.0
    while time.monotonic() - start < limit:
        now = time.monotonic()
        if triggered is None and now - start >= BASELINE:
            subprocess.run(trigger, check=True, stdout=subprocess.DEVNULL)
            triggered = time.monotonic()
            now = prev = triggered
        truth = {n: status(n, ctx) for n in nodes}
        target = redirected_to(redirector, nodes)
        dt = now - prev
        prev = now
        if triggered is not None:
            if target in truth and truth[target] != 200:
                wrong += dt
                if target == old:
                    dead += dt
            elif target == 503:
                refused += dt
            actives = [n for n, c in truth.items() if c == 200 and not (new and n == old)]
            if not any(c == 200 for c in truth.values()):
                gap_seen = True
            if gap_seen or new:
                for n in actives:
                    first_200.setdefault(n, now)
            if target in actives and (gap_seen or new or target != old):
                if served is None:
                    served = (target, now)
                stable += dt
                if stable >= STABLE:
                    break
            else:
                stable = 0.0
        time.sleep(SAMPLE_GAP)
    if served is None:
        print(f"WRONG={wrong:.2f} DEAD={dead:.2f} REFUSED={refused:.2f} SERVED=never ELECTION=never")
        return
    node, at = served
    born = first_200.get(node, at)
    election = born - triggered
    print(f"WRONG={wrong:.2f} DEAD={dead:.2f} REFUSED={refused:.2f} "
          f"SERVED={max(at - born, 0):.2f} ELECTION={election:.2f}")


if __name__ == "__main__":
    main()
