#!/usr/bin/env python3
"""A quiet fake Consul agent for benchmarks: serves one fixture for every
/v1/health/service/... query, with X-Consul-Index, and holds blocking
queries (index=current) for their `wait`, as Consul does when nothing
changes. Usage: fake_consul.py PORT FIXTURE.json"""
import http.server
import re
import sys
import time
import urllib.parse

PORT, FIXTURE = int(sys.argv[1]), sys.argv[2]
BODY = open(FIXTURE, "rb").read()
INDEX = 42


def wait_seconds(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text or "")
    if not m:
        return 0.0
    n, unit = float(m.group(1)), m.group(2) or "s"
    return n / 1000 if unit == "ms" else n * 60 if unit == "m" else n


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        if query.get("index", [""])[0] == str(INDEX):
            time.sleep(min(wait_seconds(query.get("wait", ["5s"])[0]), 600))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Consul-Index", str(INDEX))
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
