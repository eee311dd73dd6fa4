#!/usr/bin/env python3
"""A TCP relay in front of the Consul agent that counts the HTTP requests
passing through it (every "GET /v1/" at the start of a request line), so
that the suite can say how many queries N replicas send Consul.
Usage: consul_counter.py LISTEN_PORT CONSUL_PORT COUNT_FILE
The count is rewritten to COUNT_FILE after every request."""
import socket
import sys
import threading

LISTEN, UPSTREAM, COUNT_FILE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
count = 0


def record(n):
    global count
    with lock:
        count += n
        with open(COUNT_FILE, "w") as f:
            f.write(f"{count}\n")


def pipe(src, dst, counting):
    tail = b""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if counting:
                seen = tail + data
                record(seen.count(b"GET /v1/"))
                tail = seen[-8:]
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    record(0)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", LISTEN))
    server.listen(64)
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(("127.0.0.1", UPSTREAM))
        threading.Thread(target=pipe, args=(client, upstream, True), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, client, False), daemon=True).start()


main()
