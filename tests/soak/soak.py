#!/usr/bin/env python3
"""The soak: a plain and a TLS redirector in front of a flapping, misbehaving
fake Consul (chaos_consul.py), under load (clients.py and wrk), with the TLS
certificate reloaded every ~10 s and logging toggled by SIGUSR1/SIGUSR2,
for SECONDS; then the checks. Run by tests/soak/run.sh, which makes the
certificates and builds the binary.

Usage: soak.py --bin BINARY --tls-dir DIR --seconds N [--warm-up N]
DIR holds ca.pem and two leaf pairs (1.pem 1.key, 2.pem 2.key) for 127.0.0.1.

Phases: start both daemons (cold figures); a warm-up with the same load
and chaos, after which every client is closed (baseline figures: the memory
a loaded redirector keeps, its descriptors when idle); the soak; every client
closed again (final figures). Prints "SOAK ..." lines and PASS or FAIL with
the reasons; exits 1 on FAIL."""
import argparse
import collections
import hashlib
import http.client
import json
import multiprocessing
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos_consul  # noqa: E402
import clients  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NODES = [(name, port) for name, _, port in chaos_consul.NODES]

# The load, per daemon.
WRK_CONNECTIONS = 50
IDLE_CLIENTS, SLOW_CLIENTS = 500, 100
NEW_TLS_PER_SECOND = 20

# The chaos the orchestrator adds (the Consul side is in chaos_consul.py).
RELOAD_EVERY = 10.0
TOGGLE_LOGGING_EVERY = 15.0

# The bounds.
FOLLOW_BOUND_S = 1.5
RELOAD_SEEN_BOUND_S = 3.0
RSS_BOUND_KIB = 512
LOG_LINES_PER_MINUTE_BOUND = 150
SETTLE_BOUND_S = 20.0  # for the descriptors to come back once clients close

fork = multiprocessing.get_context("fork")


def say(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class Daemon:
    """One redirector process: its stderr read into timestamped lines."""

    def __init__(self, name, argv, tls_client):
        self.name, self.tls_client = name, tls_client
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        self.lines = []  # (monotonic, line)
        self.port = None
        listening = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    listening.set()
            listening.set()

        threading.Thread(target=read, daemon=True).start()
        if not listening.wait(15) or self.port is None:
            self.proc.kill()
            raise SystemExit(f"{name}: did not start:\n" + "\n".join(l for _, l in self.lines))

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def get(self, path):
        conn = (http.client.HTTPSConnection(*self.addr, context=self.tls_client, timeout=5)
                if self.tls_client else http.client.HTTPConnection(*self.addr, timeout=5))
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def settled(self, fds):
        """(RSS, descriptors) once the daemon holds at most `fds`
        descriptors, or after SETTLE_BOUND_S."""
        deadline = time.monotonic() + SETTLE_BOUND_S
        while self.fds() > fds and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.rss_kib(), self.fds()


def first_cert_der(path):
    text = open(path).read()
    block = text[:text.index("-----END CERTIFICATE-----") + 25]
    return ssl.PEM_cert_to_DER_cert(block)


class Certificates:
    """Swaps the TLS daemon's certificate between two leaves and reloads."""

    def __init__(self, tls_dir, live_dir):
        self.tls_dir, self.live_dir = tls_dir, live_dir
        self.fingerprints = {n: hashlib.sha256(first_cert_der(f"{tls_dir}/{n}.pem")).hexdigest()[:16]
                             for n in ("1", "2")}
        self.current = "1"
        self.install("1")
        self.reloads = []  # (monotonic, fingerprint expected from then on)

    @property
    def cert(self):
        return f"{self.live_dir}/cert.pem"

    @property
    def key(self):
        return f"{self.live_dir}/key.pem"

    def install(self, n):
        for src, dst in ((f"{n}.pem", self.cert), (f"{n}.key", self.key)):
            shutil.copyfile(f"{self.tls_dir}/{src}", dst + ".new")
            os.replace(dst + ".new", dst)
        self.current = n

    def reload(self, daemon):
        self.install("2" if self.current == "1" else "1")
        self.reloads.append((time.monotonic(), self.fingerprints[self.current]))
        daemon.proc.send_signal(signal.SIGHUP)


def start_load(seconds, plain, tls, tls_client):
    """Every client of one phase; returns (stop, jobs) for finish_load."""
    stop = fork.Event()
    jobs = {}

    def process(name, target, *args):
        out = fork.Queue()
        p = fork.Process(target=target, args=(*args, stop, out), daemon=True)
        p.start()
        jobs[name] = (p, out)

    for d in (plain, tls):
        client_tls = tls_client if d is tls else None
        scheme = "https" if d is tls else "http"
        process(f"hold {d.name}", clients.hold, d.addr, client_tls, IDLE_CLIENTS, SLOW_CLIENTS)
        process(f"probe {d.name}", clients.probe, d.addr, client_tls, scheme, NODES)
        prefixes = [f"{scheme}://{name}:{port}/" for name, port in NODES]
        url = f"{scheme}://127.0.0.1:{d.port}/v1/secret/soak"
        # wrk at a lower priority: the redirector, Consul and the checking
        # clients come first on a shared machine.
        jobs[f"wrk {d.name}"] = subprocess.Popen(
            ["nice", "-n", "10", "wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s",
             "-s", f"{HERE}/wrk_check.lua", url, "--", *prefixes],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    process("new_tls", clients.new_tls, tls.addr, tls_client, "https", NODES, NEW_TLS_PER_SECOND)
    return stop, jobs


def finish_load(stop, jobs):
    stop.set()
    figures = {}
    for name, job in jobs.items():
        if isinstance(job, subprocess.Popen):
            out, _ = job.communicate(timeout=60)
            m = re.search(r"^WRK (.*)$", out, re.M)
            figures[name] = ({k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
                             if m else {"error": out.strip()[-500:]})
        else:
            p, q = job
            try:
                figures[name] = q.get(timeout=30)
            except Exception:  # queue.Empty: the process died
                figures[name] = {"error": f"no figures (exit code {p.exitcode})"}
            p.join(10)
    return figures


def run_phase(seconds, plain, tls, tls_client, certs):
    """Load and chaos for `seconds`, with a line of figures every minute;
    returns the clients' figures and the phase's start and end."""
    start = time.monotonic()
    stop, jobs = start_load(seconds, plain, tls, tls_client)
    next_reload = start + RELOAD_EVERY
    next_toggle = start + TOGGLE_LOGGING_EVERY
    next_sample = start
    logging_on = True
    while time.monotonic() < start + seconds:
        time.sleep(0.1)
        now = time.monotonic()
        if now >= next_reload:
            next_reload += RELOAD_EVERY
            certs.reload(tls)
        if now >= next_toggle:
            next_toggle += TOGGLE_LOGGING_EVERY
            logging_on = not logging_on
            for d in (plain, tls):
                d.proc.send_signal(signal.SIGUSR1 if logging_on else signal.SIGUSR2)
        if now >= next_sample:
            next_sample += 60
            say("  t=%4.0fs  " % (now - start) + "  ".join(
                f"{d.name}: RSS {d.rss_kib()} KiB, {d.fds()} fds" for d in (plain, tls)))
    if not logging_on:
        for d in (plain, tls):
            d.proc.send_signal(signal.SIGUSR1)
    figures = finish_load(stop, jobs)
    return figures, start, time.monotonic()


def follow_times(switches, seen, window):
    """Seconds from each switch (within window) until the probe first saw
    its node; None for a switch it never saw follow."""
    start, end = window
    times = []
    for t0, node in switches:
        if not start <= t0 <= end - FOLLOW_BOUND_S - 1:
            continue
        times.append(next((t - t0 for t, n in seen if t >= t0 and n == node), None))
    return times


def most_lines_in_a_minute(lines, window):
    stamps = [t for t, _ in lines if window[0] <= t <= window[1]]
    most, j = 0, 0
    for i, t in enumerate(stamps):
        while stamps[j] < t - 60:
            j += 1
        most = max(most, i - j + 1)
    return most


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--tls-dir", required=True)
    parser.add_argument("--seconds", type=int, required=True)
    parser.add_argument("--warm-up", type=int, default=20)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    work = tempfile.mkdtemp(prefix="vault-redirector-soak.")
    stop_consul = fork.Event()
    failures = []
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            consul_port = s.getsockname()[1]
        events = f"{work}/consul-events.jsonl"
        consul = fork.Process(target=chaos_consul.serve, args=(consul_port, events, stop_consul),
                              daemon=True)
        consul.start()
        certs = Certificates(args.tls_dir, work)
        tls_client = ssl.create_default_context(cafile=f"{args.tls_dir}/ca.pem")
        common = ["-P", "0", "--bind", "127.0.0.1"]
        consul_addr = f"127.0.0.1:{consul_port}"
        deadline = time.monotonic() + 10
        while True:  # Consul's socket is up once a connection is taken
            try:
                socket.create_connection(("127.0.0.1", consul_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        plain = Daemon("plain", [args.bin, *common, consul_addr], None)
        tls = Daemon("tls", [args.bin, *common, "-S", "-c", certs.cert, "-k", certs.key, consul_addr],
                     tls_client)
        daemons = (plain, tls)
        cold = {d.name: (d.rss_kib(), d.fds()) for d in daemons}
        say("cold: " + ", ".join(f"{n} RSS {r} KiB, {f} fds" for n, (r, f) in cold.items()))

        say(f"warm-up: {args.warm_up} s of the same load and chaos")
        run_phase(args.warm_up, plain, tls, tls_client, certs)
        base = {d.name: d.settled(cold[d.name][1]) for d in daemons}
        say("baseline after the warm-up, clients closed: " + ", ".join(
            f"{n} RSS {r} KiB, {f} fds" for n, (r, f) in base.items()))

        say(f"soak: {args.seconds} s")
        lines_before = {d.name: len(d.lines) for d in daemons}
        figures, start, end = run_phase(args.seconds, plain, tls, tls_client, certs)
        after = {d.name: d.settled(base[d.name][1]) for d in daemons}

        # --- the checks
        def check(ok, what):
            say(("ok    " if ok else "FAIL  ") + what)
            if not ok:
                failures.append(what)

        print()
        for name, f in figures.items():
            print(f"SOAK {name}: " + json.dumps({k: v for k, v in f.items() if k not in ("seen", "certs")}))
        for d in daemons:
            w = figures[f"wrk {d.name}"]
            errors = sum(w.get(k, 1) for k in ("connect", "read", "write", "timeout", "status"))
            check("error" not in w and w["requests"] > 0 and errors == 0 and w["not307"] == 0
                  and w["badloc"] == 0,
                  f"{d.name}: wrk keep-alive {w.get('requests', 0):.0f} requests, {errors:.0f} errors, "
                  f"{w.get('not307', 0):.0f} not 307, {w.get('badloc', 0):.0f} Locations outside the cluster")
            p = figures[f"probe {d.name}"]
            check(p.get("requests", 0) > 0 and p.get("failures", 1) == 0,
                  f"{d.name}: probe {p.get('requests', 0)} requests, {p.get('failures')} failures "
                  f"{p.get('first_failure', p.get('error', ''))}")
            h = figures[f"hold {d.name}"]
            check(h.get("connect_failures", 1) == 0,
                  f"{d.name}: {IDLE_CLIENTS} idle + {SLOW_CLIENTS} slow clients, {h.get('connects')} "
                  f"connections, {h.get('connect_failures')} failed to connect "
                  f"{h.get('first_failure', h.get('error', ''))}")
        n = figures["new_tls"]
        check(n.get("requests", 0) > 0 and n.get("failures", 1) == 0,
              f"tls: new connections {n.get('requests', 0)}, {n.get('failures')} failures "
              f"{n.get('first_failure', n.get('error', ''))}")

        switches = [(e["t"], e["node"]) for e in map(json.loads, open(events))
                    if e["event"] == "switch"]
        for d in daemons:
            times = follow_times(switches, figures[f"probe {d.name}"].get("seen", []), (start, end))
            late = [t for t in times if t is None or t > FOLLOW_BOUND_S]
            got = sorted(t for t in times if t is not None)
            check(bool(times) and not late,
                  f"{d.name}: Location followed {len(got)} of {len(times)} switches within "
                  f"{FOLLOW_BOUND_S} s (median {got[len(got) // 2] if got else 0:.3f} s, "
                  f"slowest {got[-1] if got else 0:.3f} s)")

        seen_certs = figures["new_tls"].get("certs", [])
        reloads = [(t, fp) for t, fp in certs.reloads if start <= t <= end - RELOAD_SEEN_BOUND_S]
        missed = [t for t, fp in reloads
                  if not any(t <= s <= t + RELOAD_SEEN_BOUND_S and c == fp for s, c in seen_certs)]
        check(bool(reloads) and not missed,
              f"tls: {len(reloads) - len(missed)} of {len(reloads)} certificate reloads served to new "
              f"connections within {RELOAD_SEEN_BOUND_S} s")

        for d in daemons:
            (rss0, fds0), (rss1, fds1) = base[d.name], after[d.name]
            check(abs(rss1 - rss0) <= RSS_BOUND_KIB,
                  f"{d.name}: RSS {rss0} KiB before, {rss1} KiB after ({rss1 - rss0:+d} KiB, "
                  f"bound ±{RSS_BOUND_KIB}; cold start {cold[d.name][0]} KiB)")
            check(fds1 == fds0, f"{d.name}: open descriptors {fds0} before, {fds1} after")
            status, body = d.get("/vault-redirector-health")
            check(d.proc.poll() is None and status == 200, f"{d.name}: health {status} at the end")
            _, metrics = d.get("/vault-redirector-metrics")
            codes = dict(re.findall(r'vault_redirector_requests_total\{code="(\d+)"\} (\d+)', metrics))
            check(codes.get("503", "0") == "0",
                  f"{d.name}: answers by status since start: {codes} (no 503)")
            lines = d.lines[lines_before[d.name]:]
            most = most_lines_in_a_minute(lines, (start, end))
            check(most <= LOG_LINES_PER_MINUTE_BOUND,
                  f"{d.name}: {len(lines)} log lines in the soak, at most {most} in a minute "
                  f"(bound {LOG_LINES_PER_MINUTE_BOUND})")
            kinds = collections.Counter(re.sub(r"[0-9a-f.:]{6,}|\d+", "N", line.split(" ", 3)[-1])[:70]
                                        for _, line in lines)
            for kind, count in kinds.most_common(8):
                print(f"SOAK {d.name} log x{count}: {kind}")
        for d in daemons:
            d.proc.terminate()
        for d in daemons:
            d.proc.wait(10)
    finally:
        stop_consul.set()
        shutil.rmtree(work, ignore_errors=True)
    print()
    if failures:
        print(f"SOAK FAIL ({len(failures)}): " + "; ".join(failures))
        sys.exit(1)
    print(f"SOAK PASS: {args.seconds} s")


if __name__ == "__main__":
    main()
