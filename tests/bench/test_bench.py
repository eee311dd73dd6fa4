"""Unit tests of the benchmark's pure parts (wrk's report line, the nginx
config, the table). Run: python3 -B -m unittest discover -s tests/bench"""
import unittest

import measure
import report
import servers
from servers import Target

WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:1/v1/secret/foo?x=1
  1 threads and 50 connections
Requests/sec:  80000.00
BENCH requests=240000 duration_us=3000000 p50_us=512 p99_us=2048 connect=1 read=2 write=0 timeout=3 status=4
"""


def run(req_per_s, cpu, sys=0.0, errors=0, rss=1024):
    return measure.RunResult(
        requests=int(req_per_s), req_per_s=req_per_s, p50_us=100, p99_us=900, errors=errors,
        server_cpu_us_per_req=cpu, server_sys_us_per_req=sys, server_cpu_pct=50, wrk_cpu_pct=60,
        rss_kib=rss,
    )


class WrkOutput(unittest.TestCase):
    def test_reads_the_report_line_among_wrks_own_text(self):
        fields = measure.parse_wrk_output(WRK_OUTPUT)
        self.assertEqual(fields["requests"], 240000)
        self.assertEqual(fields["p99_us"], 2048)
        self.assertEqual(fields["status"], 4)

    def test_no_report_line_is_a_failed_run_showing_what_wrk_said(self):
        with self.assertRaisesRegex(measure.WrkFailed, "Connection refused"):
            measure.parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")

    def test_a_run_that_completed_no_request_is_a_failed_run_not_a_zero(self):
        # Every connection refused: wrk still prints its report, with 0
        # requests, which would otherwise show as 0 µs/req.
        text = WRK_OUTPUT.replace("requests=240000", "requests=0").replace("connect=1", "connect=50")
        with self.assertRaisesRegex(measure.WrkFailed, "no request"):
            measure.parse_wrk_output(text)

    def test_close50_sends_connection_close_and_health50_asks_for_health(self):
        close = measure.wrk_command("http://h:1", measure.SCENARIOS["close50"], 3)
        self.assertIn("Connection: close", close)
        health = measure.wrk_command("http://h:1", measure.SCENARIOS["health50"], 3)
        self.assertEqual(health[-1], "http://h:1/vault-redirector-health")
        self.assertEqual(health[:3], ["taskset", "-c", measure.CLIENT_CPU])


def directives(config):
    return "\n".join(line for line in config.splitlines() if not line.lstrip().startswith("#"))


class NginxConfig(unittest.TestCase):
    BODY = '{"healthy": true}'

    def test_plain_config_has_no_tls_lines(self):
        text = servers.render_nginx_config(8081, "http://testnode:8200", self.BODY)
        self.assertNotIn("ssl", text)
        self.assertNotIn("session", text)
        self.assertIn("listen 127.0.0.1:8081 backlog=4096;", text)
        self.assertIn("return 307 http://testnode:8200$request_uri;", text)
        self.assertIn("return 200 '{\"healthy\": true}';", text)
        self.assertNotIn("@", directives(text))

    def test_tls_config_keeps_tls_lines_without_their_mark(self):
        text = servers.render_nginx_config(8443, "https://n:8200", self.BODY, ("/c.crt", "/k.key"))
        self.assertIn("listen 127.0.0.1:8443 ssl backlog=4096;", text)
        self.assertIn("ssl_certificate     /c.crt;\n", text)
        self.assertIn("ssl_session_tickets off;\n", text)
        self.assertNotIn("tls-only", directives(text))
        self.assertIn("# full handshake, as the redirector's with --no-tls-resumption.\n", text)

    def test_a_health_body_nginx_would_misread_is_refused(self):
        for body in ['{"a": "$x"}', "{'a': 1}", '{"a": "\\\\"}']:
            with self.assertRaises(servers.ServerFailed):
                servers.render_nginx_config(1, "http://n:1", body)


class Table(unittest.TestCase):
    TARGETS = [
        Target("nginx1", "http://a", [1], "nginx1", ["ka50", "close50"]),
        Target("ours", "http://b", [2], "nginx1", ["ka50", "close50"]),
        Target("ours-tls-rsa", "https://d", [4], "nginx-tls-rsa", ["ka50"], "tls-rsa"),
        Target("nginx-tls-rsa", "https://c", [3], "nginx-tls-rsa", ["ka50"], "tls-rsa"),
    ]

    def rows(self, results, failures=None):
        text = report.table(self.TARGETS, list(measure.SCENARIOS), results, failures or {})
        return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()[2:]]

    def test_medians_and_ratios_against_the_baseline_of_the_same_scenario(self):
        results = {
            ("nginx1", "ka50"): [run(100, 10.0), run(120, 12.0), run(80, 30.0)],
            ("ours", "ka50"): [run(90, 6.0), run(300, 9.0), run(60, 99.0)],
            ("nginx1", "close50"): [run(10, 40.0)],
            ("ours", "close50"): [run(20, 10.0, sys=9.0, errors=2)],
            ("nginx-tls-rsa", "ka50"): [run(50, 20.0)],
            ("ours-tls-rsa", "ka50"): [run(50, 10.0)],
        }
        rows = self.rows(results)
        # Grouped by family then scenario, the baseline first in each group.
        self.assertEqual(
            [r[:2] for r in rows],
            [["ka50", "nginx1"], ["ka50", "ours"], ["close50", "nginx1"], ["close50", "ours"],
             ["ka50", "nginx-tls-rsa"], ["ka50", "ours-tls-rsa"]],
        )
        header = [name for name, _ in report.COLUMNS]
        ours_ka50 = dict(zip(header, rows[1]))
        self.assertEqual(ours_ka50["req/s"], "90")
        self.assertEqual(ours_ka50["CPU µs/req"], "9.00")
        self.assertEqual(ours_ka50["req/s ÷ base"], "0.90")  # 90 / 100
        self.assertEqual(ours_ka50["CPU ÷ base"], "0.75")  # 9 / 12
        self.assertEqual(ours_ka50["CPU spread"], "1033%")  # (99 - 6) / 9
        ours_close = dict(zip(header, rows[3]))
        self.assertEqual(ours_close["of which sys"], "90%")
        self.assertEqual(ours_close["errors"], "2")
        self.assertEqual(ours_close["CPU ÷ base"], "0.25")
        tls = dict(zip(header, rows[5]))
        self.assertEqual(tls["CPU ÷ base"], "0.50")  # against nginx-tls-rsa, not nginx1

    def test_a_scenario_whose_runs_all_failed_says_so(self):
        results = {("nginx1", "ka50"): [run(100, 10.0)], ("ours", "ka50"): []}
        rows = self.rows(results, {("ours", "ka50"): 3})
        ours = [r for r in rows if r[1] == "ours"][0]
        self.assertIn("3 failed runs", ours)
        self.assertEqual(ours[2], "–")


if __name__ == "__main__":
    unittest.main()
