#!/usr/bin/env python3
"""Step 4 of tests/scale: ask the active OpenBao node to step down, and
measure when each replica, and HAProxy, first redirect to another node.
Usage: switch.py ACTIVE_API ROOT_TOKEN CONSUL_API URL...   (URLs: replicas, then HAProxy)
Prints one line per URL, and one for Consul (when its passing active node
changed): "SWITCH <what> <seconds after the step-down>", or "SWITCH <what>
none" if it never switched within the bound."""
import json
import http.client
import sys
import threading
import time
import urllib.parse
import urllib.request

BOUND_S = 30.0
ACTIVE_API, TOKEN, CONSUL, URLS = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]


def location(url):
    if url == CONSUL:
        return consul_active()
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=2)
    try:
        conn.request("GET", "/v1/sys/health")
        return conn.getresponse().getheader("Location") or ""
    except OSError:
        return ""
    finally:
        conn.close()


def consul_active():
    try:
        with urllib.request.urlopen(f"{CONSUL}/v1/health/service/vault?passing&tag=active", timeout=2) as r:
            nodes = json.load(r)
    except (OSError, ValueError):
        return ""
    return ",".join(sorted(f"{n['Service']['Address'] or n['Node']['Address']}:{n['Service']['Port']}"
                           for n in nodes))


def watch(url, before, start, results):
    while time.monotonic() - start < BOUND_S:
        now = location(url)
        if now and now != before:
            results[url] = time.monotonic() - start
            return
        time.sleep(0.01)


def main():
    URLS.insert(0, CONSUL)
    before = {url: location(url) for url in URLS}
    results = {}
    req = urllib.request.Request(f"{ACTIVE_API}/v1/sys/step-down", method="PUT",
                                 headers={"X-Vault-Token": TOKEN})
    start = time.monotonic()
    threads = [threading.Thread(target=watch, args=(u, before[u], start, results)) for u in URLS]
    for t in threads:
        t.start()
    urllib.request.urlopen(req, timeout=10).read()
    for t in threads:
        t.join()
    for url in URLS:
        got = results.get(url)
        print(f"SWITCH {url} {got:.3f}" if got is not None else f"SWITCH {url} none")


main()
