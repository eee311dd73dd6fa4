"""The soak's Consul agent: serves /v1/health/service/vault with blocking
queries, as the real one does, while a schedule flaps the active node every
few seconds and, once a cycle, misbehaves for less than the redirector's
grace period: 500s, garbage, or queries that hang. Every switch and episode
is written to EVENTS (JSON lines, CLOCK_MONOTONIC seconds, comparable with
the other processes' clocks) for the checks.

Used by soak.py: serve(port, events_path, stop) in a process of its own."""
import http.server
import json
import sys
import threading
import time
import urllib.parse

# name, address, port of the fake Vault nodes; the Location must name one.
NODES = [("vault-a", "10.0.0.1", 8200), ("vault-b", "10.0.0.2", 8200), ("vault-c", "10.0.0.3", 8200)]

# One cycle (seconds from its start): switch at 0, 4 and 8; an episode from
# 10 to 13; quiet until 20. The episode (3 s) is shorter than the grace
# period at the default poll interval (2 x 5 s), and the next switch comes 7 s
# after it, past the longest back-off (one poll interval), so that every
# switch can be held to "followed within 1.5 s".
SWITCHES_AT = (0.0, 4.0, 8.0)
EPISODE_AT, EPISODE_FOR = 10.0, 3.0
CYCLE = 20.0
EPISODES = ("500", "garbage", "hang")

GARBAGE = b'[{"Node":{"Node":"vault-a","Address":"10.0.0.1"},"Service":{"Tags":["act\x00\xff{{{'


def entry(index, active):
    name, address, port = NODES[index]
    role = "active" if index == active else "standby"
    sid = f"vault:{address}:{port}"
    return {
        "Node": {"Node": name, "Address": address, "Datacenter": "dc1"},
        "Service": {"ID": sid, "Service": "vault", "Tags": [role, "initialized"], "Address": "",
                    "Port": port},
        "Checks": [{"CheckID": "serfHealth", "Status": "passing"},
                   {"CheckID": f"{sid}:vault-sealed-check", "Status": "passing"}],
    }


def wait_seconds(text):
    try:
        if text.endswith("ms"):
            return float(text[:-2]) / 1000
        return float(text.rstrip("s"))
    except ValueError:
        return 5.0


class World:
    """The agent's state, shared by the schedule and the handler threads."""

    def __init__(self, events_path):
        self.cond = threading.Condition()
        self.active = 0
        self.index = 100
        self.episode = None  # kind of the episode under way, or None
        self.changes = 0  # bumped by every switch and episode start/end
        self.events = open(events_path, "a", buffering=1)

    def record(self, **event):
        event["t"] = time.monotonic()
        self.events.write(json.dumps(event) + "\n")

    def switch(self):
        with self.cond:
            self.active = (self.active + 1) % len(NODES)
            self.index += 1
            self.changes += 1
            self.record(event="switch", node=NODES[self.active][0])
            self.cond.notify_all()

    def set_episode(self, kind):
        with self.cond:
            self.episode = kind
            self.changes += 1
            self.record(event="episode", kind=kind or "end")
            self.cond.notify_all()

    def schedule(self, stop):
        start = time.monotonic()
        cycle = 0
        while not stop.is_set():
            base = start + cycle * CYCLE
            steps = [(at, self.switch) for at in SWITCHES_AT]
            kind = EPISODES[cycle % len(EPISODES)]
            steps += [(EPISODE_AT, lambda k=kind: self.set_episode(k)),
                      (EPISODE_AT + EPISODE_FOR, lambda: self.set_episode(None))]
            for at, action in steps:
                if stop.wait(max(0.0, base + at - time.monotonic())):
                    return
                action()
            cycle += 1
            stop.wait(max(0.0, base + CYCLE - time.monotonic()))


def handler_for(world):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
            if not url.path.startswith("/v1/health/service/"):
                return self.answer(404, b"not found", "text/plain")
            with world.cond:
                asked = query.get("index", [""])[0]
                if asked == str(world.index) and world.episode is None:
                    # A blocking query: held until something changes.
                    seen = world.changes
                    world.cond.wait_for(lambda: world.changes != seen,
                                        timeout=min(wait_seconds(query.get("wait", ["5s"])[0]), 60))
                while world.episode == "hang":
                    world.cond.wait()
                    if world.episode != "hang":
                        # The hang ends with the connection closed unanswered.
                        self.close_connection = True
                        return
                episode, active, index = world.episode, world.active, world.index
            if episode == "500":
                return self.answer(500, b"rpc error making call: No cluster leader", "text/plain", index)
            if episode == "garbage":
                return self.answer(200, GARBAGE, "application/json", index)
            entries = [entry(i, active) for i in range(len(NODES))]
            tag = query.get("tag", [None])[0]
            if tag:
                entries = [e for e in entries if tag in e["Service"]["Tags"]]
            self.answer(200, json.dumps(entries).encode(), "application/json", index)

        def answer(self, status, body, kind, index=None):
            self.send_response(status)
            self.send_header("Content-Type", kind)
            if index is not None:
                self.send_header("X-Consul-Index", str(index))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A redirector that stops mid-query (the soak's end) is no news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve(port, events_path, stop):
    """Serve on 127.0.0.1:port until stop (a multiprocessing Event) is set;
    the schedule starts at once."""
    world = World(events_path)
    server = Server(("127.0.0.1", port), handler_for(world))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    world.schedule(stop)
    with world.cond:
        world.episode = None
        world.changes += 1
        world.cond.notify_all()
    server.shutdown()
