#!/usr/bin/env python3
"""The benchmark itself, run by tests/bench/run.sh (which installs the tools
and builds the binaries first; its header explains the method). Starts every
server, measures them in interleaved repetitions, prints one markdown table,
and stops everything it started, also on Ctrl-C or SIGTERM."""
import argparse
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import measure
import report
import servers
from servers import Target

BASELINE = "nginx1"
DEFAULT_TLS_SCENARIOS = ["ka50", "close50"]
WARM_UP_SECONDS = 1
# Besides its -d, each run costs about this much: wrk start-up, the RSS
# sample, the settle time after it.
RUN_OVERHEAD_SECONDS = 0.6


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--scenarios", help="comma-separated; default: all, ka50,close50 for TLS")
    parser.add_argument("--binary", required=True)
    parser.add_argument("--fixture", required=True)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--floor", action="store_true")
    parser.add_argument("--python", metavar="PROGRAM", help="the Python 0.2.0 entry point")
    parser.add_argument(
        "--compare", action="append", default=[], metavar="NAME=BINARY",
        help="another build of the redirector to measure beside ours (before/after a change)",
    )
    args = parser.parse_args()
    for item in args.compare:
        name, _, binary = item.partition("=")
        if not name or not binary or not os.access(binary, os.X_OK):
            parser.error(f"--compare takes NAME=BINARY with an executable binary, not {item!r}")
    if args.scenarios:
        args.scenarios = args.scenarios.split(",")
        unknown = [s for s in args.scenarios if s not in measure.SCENARIOS]
        if unknown:
            parser.error(f"unknown scenarios {unknown}; known: {','.join(measure.SCENARIOS)}")
    return args


def stop_on_signal(signum, _frame):
    # Unwinds to main()'s finally, which stops what was started.
    raise SystemExit(128 + signum)


def redirect_base(url):
    """The scheme and node of the redirector's Location, which nginx copies."""
    status, headers, _, _ = servers.get(url, measure.REDIRECT_PATH)
    location = dict(headers).get("Location", "")
    if status != 307 or not location.endswith(measure.REDIRECT_PATH):
        raise servers.ServerFailed(f"{url} answered {status} with Location {location!r}")
    return location[: -len(measure.REDIRECT_PATH)]


def health_body(url):
    status, _, body, _ = servers.get(url, measure.HEALTH_PATH)
    if status != 200:
        raise servers.ServerFailed(f"{url}{measure.HEALTH_PATH} answered {status}")
    return body.decode()


def start_targets(args, procs, run_dir):
    here = os.path.dirname(os.path.abspath(__file__))
    all_scenarios = list(measure.SCENARIOS)
    plain = args.scenarios or all_scenarios
    tls = args.scenarios or DEFAULT_TLS_SCENARIOS

    consul = servers.start_fake_consul(procs, os.path.join(here, "fake_consul.py"), args.fixture)
    ours_url, ours_pids = servers.start_redirector(procs, "ours", args.binary, consul)
    nginx_url, nginx_pids = servers.start_nginx(
        procs, BASELINE, run_dir, redirect_base(ours_url), health_body(ours_url)
    )
    targets = [
        Target(BASELINE, nginx_url, nginx_pids, BASELINE, plain),
        Target("ours", ours_url, ours_pids, BASELINE, plain),
    ]
    for item in args.compare:
        name, _, binary = item.partition("=")
        url, pids = servers.start_redirector(procs, name, binary, consul)
        targets.append(Target(name, url, pids, BASELINE, plain))
    if args.floor:
        url, pids = servers.start_floor(procs, run_dir, os.path.join(here, "floor.c"))
        targets.append(Target("floor", url, pids, BASELINE, plain))
    if args.python:
        url, pids = servers.start_python_original(procs, args.python, consul)
        targets.append(Target("python", url, pids, BASELINE, plain))
    if args.tls:
        for kind, pair in servers.make_certificates(run_dir).items():
            family = f"tls-{kind}"
            ours_url, ours_pids = servers.start_redirector(
                procs, f"ours-{family}", args.binary, consul, tls_pair=pair
            )
            nginx_url, nginx_pids = servers.start_nginx(
                procs, f"nginx-{family}", run_dir, redirect_base(ours_url), health_body(ours_url),
                tls_pair=pair,
            )
            targets += [
                Target(f"nginx-{family}", nginx_url, nginx_pids, f"nginx-{family}", tls, family),
                Target(f"ours-{family}", ours_url, ours_pids, f"nginx-{family}", tls, family),
            ]
    return targets


def describe(target):
    """One line showing what the target answers, to compare at a glance."""
    status, headers, body, tls = servers.get(target.url, measure.REDIRECT_PATH)
    names = ", ".join(name for name, _ in headers)
    location = dict(headers).get("Location", "")
    health_status, _, health, _ = servers.get(target.url, measure.HEALTH_PATH)
    return (
        f"# {target.label}: {target.url} pids {','.join(map(str, target.pids))}"
        f"{f' ({tls})' if tls else ''}: "
        f"{status} Location: {location} (headers: {names}; body {len(body)} B) | "
        f"health {health_status}, {len(health)} B"
    )


def tool_version(argv):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "?"


def main():
    args = parse_args()
    # Also SIGINT: a shell that starts us in the background without job
    # control makes us inherit it ignored, and Ctrl-C must still stop us.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop_on_signal)
    # 1000 connections need 1000 descriptors in wrk and in every server.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    run_dir = tempfile.mkdtemp(prefix="vr-bench.")
    procs = servers.Processes(run_dir)
    try:
        targets = start_targets(args, procs, run_dir)
        print(
            f"# {os.cpu_count()} cpus, Linux {platform.release()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"{tool_version(['nginx', '-v'])}; {tool_version(['wrk', '-v'])}; "
            f"binary {args.binary} ({os.path.getsize(args.binary):,} B)"
        )
        print(
            f"# wrk -t1 on cpu {measure.CLIENT_CPU}, servers on cpu {servers.SERVER_CPU}; "
            f"{args.runs} interleaved runs of {args.seconds} s"
        )
        for target in targets:
            print(describe(target))
        pairs = [(t, s) for s in measure.SCENARIOS for t in targets if s in t.scenarios]
        estimate = len(targets) * (WARM_UP_SECONDS + 1) + len(pairs) * args.runs * (
            args.seconds + RUN_OVERHEAD_SECONDS
        )
        print(f"# {len(pairs)} (target, scenario) pairs x {args.runs} runs: about {estimate / 60:.0f} min", flush=True)

        for target in targets:
            measure.warm_up(target.url, WARM_UP_SECONDS)
        results = {(t.label, s): [] for t, s in pairs}
        failures = {}
        # Run 1 of every (scenario, target), then run 2, ...: a drift of the
        # machine's load hits every target alike instead of one of them.
        for run in range(1, args.runs + 1):
            for target, scenario_name in pairs:
                procs.check_running()
                scenario = measure.SCENARIOS[scenario_name]
                try:
                    r = measure.measure(target.url, target.pids, scenario, args.seconds)
                except measure.WrkFailed as e:
                    failures[(target.label, scenario_name)] = failures.get((target.label, scenario_name), 0) + 1
                    print(f"run {run} {scenario_name} {target.label}: {e}", file=sys.stderr)
                    continue
                results[(target.label, scenario_name)].append(r)
                print(
                    f"  run {run}/{args.runs} {scenario_name:8} {target.label:16} {r.req_per_s:9,.0f} req/s "
                    f"p50 {r.p50_us:6,.0f} µs p99 {r.p99_us:7,.0f} µs  {r.server_cpu_us_per_req:8.2f} µs/req "
                    f"(sys {r.server_sys_us_per_req:7.2f})  server {r.server_cpu_pct:3.0f}% wrk {r.wrk_cpu_pct:3.0f}%  "
                    f"RSS {r.rss_kib:,} KiB  errors {r.errors}",
                    file=sys.stderr, flush=True,
                )

        print()
        print(report.table(targets, list(measure.SCENARIOS), results, failures))
        print()
        print(
            f"Medians of {args.runs} interleaved runs of {args.seconds} s. CPU µs/req: user+sys CPU of the "
            f"server's processes (/proc/PID/stat; nginx: master+worker) over the run, ÷ the requests wrk "
            f"completed; of which sys: the kernel's share of it; CPU spread: (max-min)/median over the runs; "
            f"server/wrk CPU: % of one core (~100% = that side was the bottleneck); RSS: the largest "
            f"mid-run sample (nginx: master+worker, summed); errors: wrk's socket errors + non-2xx/3xx answers, summed over the runs. "
            f"÷ base: median ÷ the baseline's median for the same scenario, from this invocation: "
            f"{BASELINE} for plain HTTP, the nginx with the same key for TLS."
        )
        return 0
    except servers.ServerFailed as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    except SystemExit:
        print("bench: interrupted; stopping the servers", file=sys.stderr)
        raise
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        procs.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
