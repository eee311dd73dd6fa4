"""The benchmark's one table: medians of the repetitions of every (target,
scenario), and their ratios against the target's baseline, as markdown.
Pure: no I/O besides returning text."""
import statistics

COLUMNS = [
    ("scenario", "l"),
    ("target", "l"),
    ("req/s", "r"),
    ("p50 µs", "r"),
    ("p99 µs", "r"),
    ("CPU µs/req", "r"),
    ("of which sys", "r"),
    ("CPU spread", "r"),
    ("server CPU", "r"),
    ("wrk CPU", "r"),
    ("RSS MiB", "r"),
    ("errors", "r"),
    ("req/s ÷ base", "r"),
    ("CPU ÷ base", "r"),
]


def spread(values):
    """(max - min) / median: how far single runs of one server wander."""
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle else 0.0


def summarize(runs):
    """Medians of a list of measure.RunResult (at least one)."""
    cpu = [r.server_cpu_us_per_req for r in runs]
    return {
        "req_per_s": statistics.median(r.req_per_s for r in runs),
        "p50_us": statistics.median(r.p50_us for r in runs),
        "p99_us": statistics.median(r.p99_us for r in runs),
        "cpu_us": statistics.median(cpu),
        "sys_us": statistics.median(r.server_sys_us_per_req for r in runs),
        "cpu_spread": spread(cpu),
        "server_cpu_pct": statistics.median(r.server_cpu_pct for r in runs),
        "wrk_cpu_pct": statistics.median(r.wrk_cpu_pct for r in runs),
        "rss_kib": max(r.rss_kib for r in runs),
        "errors": sum(r.errors for r in runs),
        "runs": len(runs),
    }


def ratio(value, base):
    return f"{value / base:.2f}" if base else "–"


def thousands(value):
    return f"{value:,.0f}"


def micro(value):
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def table(targets, scenario_order, results, failures):
    """targets: servers.Target in the order they were added; results:
    {(label, scenario): [RunResult]}; failures: {(label, scenario): count}.
    One row per (target, scenario), grouped by family, then scenario; the
    baseline first in each group."""
    families = list(dict.fromkeys(t.family for t in targets))
    lines = [
        "| " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|" + "|".join("---:" if align == "r" else "---" for _, align in COLUMNS) + "|",
    ]
    summaries = {key: summarize(runs) for key, runs in results.items() if runs}
    for family in families:
        members = [t for t in targets if t.family == family]
        members.sort(key=lambda t: t.label != t.baseline)  # stable: baseline first
        for scenario in scenario_order:
            for target in members:
                if scenario not in target.scenarios:
                    continue
                key = (target.label, scenario)
                failed = failures.get(key, 0)
                s = summaries.get(key)
                if s is None:
                    cells = [scenario, target.label] + ["–"] * (len(COLUMNS) - 2)
                    cells[COLUMNS.index(("errors", "r"))] = f"{failed} failed runs"
                    lines.append("| " + " | ".join(cells) + " |")
                    continue
                base = summaries.get((target.baseline, scenario))
                sys_share = s["sys_us"] / s["cpu_us"] if s["cpu_us"] else 0.0
                errors = str(s["errors"]) + (f" ({failed} failed runs)" if failed else "")
                cells = [
                    scenario,
                    target.label,
                    thousands(s["req_per_s"]),
                    thousands(s["p50_us"]),
                    thousands(s["p99_us"]),
                    micro(s["cpu_us"]),
                    f"{sys_share:.0%}",
                    f"{s['cpu_spread']:.0%}",
                    f"{s['server_cpu_pct']:.0f}%",
                    f"{s['wrk_cpu_pct']:.0f}%",
                    f"{s['rss_kib'] / 1024:.1f}",
                    errors,
                    ratio(s["req_per_s"], base["req_per_s"]) if base else "–",
                    ratio(s["cpu_us"], base["cpu_us"]) if base else "–",
                ]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
