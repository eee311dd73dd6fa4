"""Starting and stopping what the benchmark measures: the fake Consul, the
redirector (plain and TLS), nginx (plain and TLS), the floor and the Python
original. Every process is started here, pinned to SERVER_CPU, on a free
loopback port, and stopped by its own PID in stop_all()."""
import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
NGINX_TEMPLATE = os.path.join(HERE, "nginx.conf.in")

SERVER_CPU = "1"
LOOPBACK = "127.0.0.1"
# How long a server may take to start listening (the Python original and
# nginx on a loaded machine are the slow ones).
START_TIMEOUT_SECONDS = 30
# How long a server may take to exit after SIGTERM before it is SIGKILLed.
STOP_TIMEOUT_SECONDS = 5
# Timeout of the one-request check of each server before measuring.
CHECK_TIMEOUT_SECONDS = 5


class ServerFailed(Exception):
    pass


@dataclass
class Target:
    """A server to measure: its label in the table, its base URL, the PIDs
    whose CPU and RSS count as its cost, the label of the baseline its ratios
    are computed against, and its scenarios."""

    label: str
    url: str
    pids: list
    baseline: str
    scenarios: list
    family: str = "http"  # rows of one family are printed together


@dataclass
class Processes:
    """The processes this benchmark started; nothing else is ever signalled."""

    log_dir: str
    started: list = field(default_factory=list)  # (name, Popen)
    # Children the started processes forked (nginx workers): signalled only
    # if they outlive their parent and still run the same program.
    forked: list = field(default_factory=list)  # (pid, command name)

    def start(self, name, argv, pinned=True, cwd=None):
        log = open(os.path.join(self.log_dir, f"{name}.log"), "wb")
        prefix = ["taskset", "-c", SERVER_CPU] if pinned else []
        # taskset execs the program: the PID is the server's own.
        proc = subprocess.Popen(
            prefix + argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd
        )
        log.close()
        self.started.append((name, proc))
        return proc

    def log_tail(self, name, lines=20):
        try:
            with open(os.path.join(self.log_dir, f"{name}.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def check_running(self):
        """Raises ServerFailed when a server has exited: every later run
        against it would only measure a refused connection."""
        for name, proc in self.started:
            if proc.poll() is not None:
                raise ServerFailed(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def stop_all(self):
        for _, proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for _, proc in self.started:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid, comm in self.forked:
            if command_name(pid) == comm:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.started.clear()
        self.forked.clear()


def command_name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def children_of(parent):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            found.append(int(entry))
    return found


def free_port():
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_listening(procs, name, proc, port):
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerFailed(f"{name} exited with {proc.returncode}:\n{procs.log_tail(name)}")
        try:
            socket.create_connection((LOOPBACK, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise ServerFailed(f"{name} does not listen on {port} after {START_TIMEOUT_SECONDS} s")


def get(url, path):
    """(status, headers, body, tls) of one GET, for the checks before
    measuring; tls names the protocol and cipher negotiated, or is None."""
    scheme, _, hostport = url.partition("://")
    host, port = hostport.rsplit(":", 1)
    if scheme == "https":
        conn = http.client.HTTPSConnection(
            host, int(port), timeout=CHECK_TIMEOUT_SECONDS,
            context=ssl._create_unverified_context(),  # our own self-signed test certificate
        )
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=CHECK_TIMEOUT_SECONDS)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        tls = None
        if isinstance(conn.sock, ssl.SSLSocket):
            tls = f"{conn.sock.version()} {conn.sock.cipher()[0]}"
        return response.status, response.getheaders(), response.read(), tls
    finally:
        conn.close()


def start_fake_consul(procs, fake_consul, fixture):
    port = free_port()
    # Not pinned: it answers one blocking query per poll interval.
    proc = procs.start("fake-consul", ["python3", fake_consul, str(port), fixture], pinned=False)
    wait_listening(procs, "fake-consul", proc, port)
    return f"{LOOPBACK}:{port}"


def start_redirector(procs, name, binary, consul, tls_pair=None):
    port = free_port()
    # -l: no per-request log lines, as an operator runs it under load.
    argv = [binary, "-l", "-P", str(port), "--bind", LOOPBACK]
    if tls_pair:
        # nginx's TLS baseline has no session resumption: neither have we.
        argv += ["-S", "--no-tls-resumption", "-c", tls_pair[0], "-k", tls_pair[1]]
    proc = procs.start(name, argv + [consul])
    wait_listening(procs, name, proc, port)
    scheme = "https" if tls_pair else "http"
    return f"{scheme}://{LOOPBACK}:{port}", [proc.pid]


def nginx_string_literal(text):
    """`text` for a single-quoted nginx string, which has no escape for `$`
    (it would start a variable)."""
    if any(c in text for c in "'\\$"):
        raise ServerFailed(f"cannot put this health body in an nginx config: {text!r}")
    return text


def render_nginx_config(port, redirect_base, health_body, tls_pair=None):
    with open(NGINX_TEMPLATE) as f:
        template = f.read()
    lines = []
    for line in template.splitlines():
        if line.rstrip().endswith("# tls-only"):
            if not tls_pair:
                continue
            line = line.rstrip()[: -len("# tls-only")].rstrip()
        lines.append(line)
    text = "\n".join(lines) + "\n"
    replacements = {
        "@PORT@": str(port),
        "@SSL@": "ssl " if tls_pair else "",
        "@CERT@": tls_pair[0] if tls_pair else "",
        "@KEY@": tls_pair[1] if tls_pair else "",
        "@REDIRECT_BASE@": redirect_base,
        "@HEALTH_BODY@": nginx_string_literal(health_body),
    }
    for key, value in replacements.items():
        text = text.replace(key, value)
    return text


def start_nginx(procs, name, run_dir, redirect_base, health_body, tls_pair=None):
    prefix = os.path.join(run_dir, name)
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    port = free_port()
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(render_nginx_config(port, redirect_base, health_body, tls_pair))
    # -e: the error log from the start, instead of the system's default path.
    proc = procs.start(name, ["nginx", "-p", prefix + "/", "-c", conf, "-e", "error.log"])
    wait_listening(procs, name, proc, port)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    workers = []
    while not workers and time.monotonic() < deadline:
        workers = [p for p in children_of(proc.pid) if command_name(p) == "nginx"]
        if not workers:
            time.sleep(0.1)
    if not workers:
        raise ServerFailed(f"{name}: no worker process after {START_TIMEOUT_SECONDS} s")
    procs.forked += [(pid, "nginx") for pid in workers]
    scheme = "https" if tls_pair else "http"
    # The cost of nginx is its master's and its worker's.
    return f"{scheme}://{LOOPBACK}:{port}", [proc.pid] + workers


def start_floor(procs, run_dir, source):
    binary = os.path.join(run_dir, "floor")
    subprocess.run(["cc", "-O2", "-o", binary, source], check=True, timeout=120)
    port = free_port()
    proc = procs.start("floor", [binary, str(port)])
    wait_listening(procs, "floor", proc, port)
    return f"http://{LOOPBACK}:{port}", [proc.pid]


def start_python_original(procs, program, consul):
    port = free_port()
    proc = procs.start("python", [program, "-l", "-P", str(port), consul])
    wait_listening(procs, "python", proc, port)
    return f"http://{LOOPBACK}:{port}", [proc.pid]


def make_certificates(run_dir):
    """Self-signed RSA-2048 and ECDSA P-256 pairs, as {kind: (cert, key)}."""
    pairs = {}
    for kind, key_args in [
        ("rsa", ["-newkey", "rsa:2048"]),
        ("ecdsa", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
    ]:
        cert, key = os.path.join(run_dir, f"{kind}.crt"), os.path.join(run_dir, f"{kind}.key")
        subprocess.run(
            ["openssl", "req", "-x509", *key_args, "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-keyout", key, "-out", cert],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
        )
        pairs[kind] = (cert, key)
    return pairs
