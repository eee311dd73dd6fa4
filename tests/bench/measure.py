"""One measured wrk run against one server: what wrk saw (requests, latency,
errors) and what the server spent (CPU from /proc/PID/stat, RSS from
/proc/PID/status). No processes of its own survive a call."""
import os
import re
import resource
import subprocess
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
WRK_SCRIPT = os.path.join(HERE, "wrk_report.lua")

# wrk runs on this CPU; the servers on SERVER_CPU (see servers.py).
CLIENT_CPU = "0"
# Beyond its -d, wrk gets this long to connect, finish and report before it
# is killed: a hung run must not hang the benchmark.
WRK_GRACE_SECONDS = 20
# wrk's per-request timeout: a reply slower than this counts as an error.
WRK_REQUEST_TIMEOUT = "5s"
# After wrk exits, the server still closes its connections (1000 of them
# in ka1000); wait this long so that this work is counted for every server.
SETTLE_SECONDS = 0.3
CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")

HEALTH_PATH = "/vault-redirector-health"
REDIRECT_PATH = "/v1/secret/foo?x=1"


@dataclass(frozen=True)
class Scenario:
    name: str
    connections: int
    path: str
    close: bool  # send `Connection: close`: one connection per request


SCENARIOS = {
    s.name: s
    for s in [
        Scenario("ka1", 1, REDIRECT_PATH, False),
        Scenario("ka50", 50, REDIRECT_PATH, False),
        Scenario("ka1000", 1000, REDIRECT_PATH, False),
        Scenario("close50", 50, REDIRECT_PATH, True),
        Scenario("health50", 50, HEALTH_PATH, False),
    ]
}


@dataclass
class RunResult:
    requests: int
    req_per_s: float
    p50_us: float
    p99_us: float
    errors: int  # socket errors + non-2xx/3xx answers, as wrk counts them
    server_cpu_us_per_req: float
    server_sys_us_per_req: float
    server_cpu_pct: float  # 100 = the server saturated its core
    wrk_cpu_pct: float  # 100 = wrk saturated its core
    rss_kib: int  # sampled in the middle of the run


class WrkFailed(Exception):
    def __init__(self, why, output):
        super().__init__(f"{why}:\n{output.strip()}")


BENCH_LINE = re.compile(r"^BENCH (.*)$", re.M)


def parse_wrk_output(text):
    """The fields of wrk_report.lua's line, as numbers. A run that completed
    no request (every connection refused, say) is a failed run: its CPU per
    request would read as 0."""
    match = BENCH_LINE.search(text)
    if not match:
        raise WrkFailed("wrk printed no result", text)
    fields = {}
    for item in match.group(1).split():
        key, _, value = item.partition("=")
        fields[key] = float(value)
    if fields.get("requests", 0) <= 0:
        raise WrkFailed("wrk completed no request", text)
    return fields


def cpu_ticks(pids):
    """(user, system) clock ticks spent so far by these processes, all their
    threads included; a process that is gone counts 0."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the command name, which may hold spaces: utime and
        # stime are fields 14 and 15 of the whole line.
        after_comm = stat.rsplit(")", 1)[1].split()
        user += int(after_comm[11])
        system += int(after_comm[12])
    return user, system


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def wrk_command(url, scenario, seconds, with_report=True):
    command = [
        "taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{scenario.connections}",
        f"-d{seconds}s", "--timeout", WRK_REQUEST_TIMEOUT,
    ]
    if with_report:
        command += ["-s", WRK_SCRIPT]
    if scenario.close:
        command += ["-H", "Connection: close"]
    return command + [url + scenario.path]


def warm_up(url, seconds):
    """An unmeasured keep-alive run, so that first-use costs (page faults,
    caches, lazy set-up) do not land in the first measured run."""
    subprocess.run(
        wrk_command(url, SCENARIOS["ka50"], seconds, with_report=False),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        timeout=seconds + WRK_GRACE_SECONDS, check=False,
    )


def measure(url, pids, scenario, seconds):
    """Runs wrk for `seconds` and returns a RunResult; raises WrkFailed when
    wrk reports nothing (for example: nothing listens)."""
    cpu_before = cpu_ticks(pids)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    wrk = subprocess.Popen(
        wrk_command(url, scenario, seconds),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        time.sleep(seconds / 2)
        rss = rss_kib(pids)
        output, _ = wrk.communicate(timeout=seconds / 2 + WRK_GRACE_SECONDS)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    wall = time.monotonic() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    time.sleep(SETTLE_SECONDS)
    cpu_after = cpu_ticks(pids)

    fields = parse_wrk_output(output)
    requests = int(fields["requests"])
    user_s = (cpu_after[0] - cpu_before[0]) / CLOCK_TICKS_PER_SECOND
    sys_s = (cpu_after[1] - cpu_before[1]) / CLOCK_TICKS_PER_SECOND
    wrk_s = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    per_req = 1e6 / requests
    errors = sum(int(fields[k]) for k in ("connect", "read", "write", "timeout", "status"))
    return RunResult(
        requests=requests,
        req_per_s=requests / (fields["duration_us"] / 1e6),
        p50_us=fields["p50_us"],
        p99_us=fields["p99_us"],
        errors=errors,
        server_cpu_us_per_req=(user_s + sys_s) * per_req,
        server_sys_us_per_req=sys_s * per_req,
        server_cpu_pct=100 * (user_s + sys_s) / wall,
        wrk_cpu_pct=100 * wrk_s / wall,
        rss_kib=rss,
    )
