#!/usr/bin/env python3
"""Open N connections to a redirector and hold them, for memory and latency
measurements. Usage: hold_connections.py HOST:PORT N MODE SECONDS
  MODE idle  each connection completes one keep-alive request, then idles
  MODE slow  each connection sends a request head one byte per second
Prints 'holding N' once all are open, then holds for SECONDS and exits."""
import resource
import socket
import sys
import time

host, port = sys.argv[1].rsplit(":", 1)
count, mode, seconds = int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

conns = []
for _ in range(count):
    s = socket.create_connection((host, int(port)))
    if mode == "idle":
        s.sendall(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
    conns.append(s)
print(f"holding {len(conns)}", flush=True)

slow_head = b"GET /v1/slow HTTP/1.1\r\nX-Slow: " + b"a" * 1000
deadline = time.time() + seconds
i = 0
while time.time() < deadline:
    if mode == "slow":
        for s in conns:
            try:
                s.send(slow_head[i % len(slow_head):i % len(slow_head) + 1])
            except OSError:
                pass
        i += 1
    time.sleep(1)
