"""The soak's clients, each run in a process of its own by soak.py until its
stop Event is set; each puts one dict of figures on its queue at the end.

- hold:     N idle clients (one keep-alive request, then silence) and M slow
            ones (a request head at one byte a second), reconnecting when the
            redirector closes them (idle and head timeouts).
- new_tls:  new TLS connections at a steady rate, one request each; records
            which certificate each one was served.
- probe:    one keep-alive client asking every 20 ms, recording each change
            of the Location's node.
The well-behaved ones (new_tls, probe) count every failure, non-307 and
Location outside the fake cluster."""
import hashlib
import http.client
import selectors
import socket
import ssl
import time

SLOW_HEAD = b"GET /v1/slow HTTP/1.1\r\nHost: soak\r\nX-Slow: " + b"s" * 1000
PROBE_EVERY = 0.02


def location_node(location, scheme, nodes):
    """The node a Location names, if it is scheme://<node>:<port>/<path>
    for one of nodes (name, port) and the path we asked for; else None."""
    for name, port in nodes:
        prefix = f"{scheme}://{name}:{port}/"
        if location.startswith(prefix):
            return name
    return None


def connect(addr, tls, timeout=5.0):
    sock = socket.create_connection(addr, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=addr[0])
    return sock


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the answer's head")
        data += chunk
    return data


def failed(figures, error):
    """Count a well-behaved client's failure; the first one is kept."""
    figures["failures"] += 1
    figures["first_failure"] = figures["first_failure"] or repr(error)


def changed(figures, key, value):
    """Append (now, value) to figures[key] when value differs from the last."""
    if not figures[key] or figures[key][-1][1] != value:
        figures[key].append((time.monotonic(), value))


def hold(addr, tls, idle, slow, stop, out):
    """Keep `idle` idle and `slow` slow connections open until stop."""
    figures = {"connects": 0, "connect_failures": 0, "closed_by_server": 0, "first_failure": ""}
    sel = selectors.DefaultSelector()
    pending = ["idle"] * idle + ["slow"] * slow  # kinds waiting to (re)connect
    slow_socks = {}  # sock -> bytes of the head sent so far

    def open_one(kind):
        try:
            sock = connect(addr, tls)
            if kind == "idle":
                sock.sendall(b"GET /v1/sys/health HTTP/1.1\r\nHost: soak\r\n\r\n")
                read_head(sock)
            sock.setblocking(False)
        except (OSError, ConnectionError) as e:
            figures["connect_failures"] += 1
            figures["first_failure"] = figures["first_failure"] or f"{kind}: {e!r}"
            return False
        figures["connects"] += 1
        sel.register(sock, selectors.EVENT_READ, kind)
        if kind == "slow":
            slow_socks[sock] = 0
        return True

    def drop(sock, kind):
        sel.unregister(sock)
        slow_socks.pop(sock, None)
        sock.close()
        pending.append(kind)

    next_trickle = time.monotonic()
    while not stop.is_set():
        # Reconnect a bounded number per turn, so one turn stays short.
        for _ in range(min(len(pending), 50)):
            kind = pending.pop(0)
            if not open_one(kind):
                pending.append(kind)
                break
        for key, _ in sel.select(timeout=0.2):
            sock, kind = key.fileobj, key.data
            try:
                if sock.recv(65536):
                    continue  # a slow client's 408, read before the close
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            except OSError:
                pass
            figures["closed_by_server"] += 1
            drop(sock, kind)
        if time.monotonic() >= next_trickle:
            next_trickle += 1.0
            for sock in list(slow_socks):
                at = slow_socks[sock]
                try:
                    sock.send(SLOW_HEAD[at % len(SLOW_HEAD):at % len(SLOW_HEAD) + 1])
                    slow_socks[sock] = at + 1
                except (ssl.SSLWantWriteError, BlockingIOError):
                    pass
                except OSError:
                    figures["closed_by_server"] += 1
                    drop(sock, "slow")
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    out.put(figures)


def new_tls(addr, tls, scheme, nodes, rate, stop, out):
    """A new TLS connection every 1/rate s, one request on each."""
    figures = {"requests": 0, "failures": 0, "first_failure": "", "certs": []}
    due = time.monotonic()
    n = 0
    while not stop.is_set():
        stop.wait(max(0.0, due - time.monotonic()))
        due += 1.0 / rate
        n += 1
        try:
            with connect(addr, tls) as sock:
                cert = hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()[:16]
                sock.sendall(f"GET /v1/secret/soak-{n} HTTP/1.1\r\nHost: soak\r\n\r\n".encode())
                head = read_head(sock).decode("latin-1")
            status = head.split(" ", 2)[1]
            location = next((line.split(":", 1)[1].strip() for line in head.split("\r\n")
                             if line.lower().startswith("location:")), "")
            if status != "307" or location_node(location, scheme, nodes) is None:
                raise ValueError(f"{status} Location={location!r}")
            if not location.endswith(f"/v1/secret/soak-{n}"):
                raise ValueError(f"path lost: {location!r}")
        except (OSError, ValueError, ConnectionError, IndexError) as e:
            failed(figures, e)
            continue
        figures["requests"] += 1
        changed(figures, "certs", cert)
    out.put(figures)


def probe(addr, tls, scheme, nodes, stop, out):
    """Ask every PROBE_EVERY s on one keep-alive connection; record when
    the Location's node changes."""
    figures = {"requests": 0, "failures": 0, "first_failure": "", "seen": []}
    conn = None
    while not stop.wait(PROBE_EVERY):
        try:
            if conn is None:
                conn = (http.client.HTTPSConnection(addr[0], addr[1], context=tls, timeout=5)
                        if tls else http.client.HTTPConnection(addr[0], addr[1], timeout=5))
            conn.request("GET", "/v1/sys/leader")
            response = conn.getresponse()
            response.read()
            node = location_node(response.getheader("Location") or "", scheme, nodes)
            if response.status != 307 or node is None:
                raise ValueError(f"{response.status} Location={response.getheader('Location')!r}")
        except (OSError, ValueError, http.client.HTTPException) as e:
            failed(figures, e)
            if conn is not None:
                conn.close()
            conn = None
            continue
        figures["requests"] += 1
        changed(figures, "seen", node)
    out.put(figures)
