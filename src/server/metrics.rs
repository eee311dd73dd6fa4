//! The `/vault-redirector-metrics` page: the loop's counters, discovery's
//! and the process' figures in Prometheus' text format 0.0.4. Counting is
//! a plain increment on the loop thread (cells: the loop is one thread, so
//! no atomics); rendering is pure and happens only when scraped.

use crate::discovery::tracker::Counts;
use crate::server::process::{self, Micros, ProcessStats};
use std::cell::Cell;
use std::fmt::Write;

pub const METRICS_PATH: &str = "/vault-redirector-metrics";
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The status codes we answer with, the label values of
/// `vault_redirector_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok200 = 0,
    Redirect,
    BadRequest,
    HeadTooLarge,
    Unavailable,
}

const CODE_LABELS: [&str; 5] = ["200", "307", "400", "431", "503"];

/// What the loop counts as it goes.
#[derive(Debug, Default)]
pub struct Counters {
    requests: [Cell<u64>; CODE_LABELS.len()],
    accepted: Cell<u64>,
    tls_handshake_failures: Cell<u64>,
    /// Set by the loop before it serves a connection (so the page counts
    /// the connection asking for it).
    open: Cell<u64>,
}

impl Counters {
    pub fn answered(&self, code: Code) {
        let cell = &self.requests[code as usize];
        cell.set(cell.get().wrapping_add(1));
    }

    pub fn accepted(&self) {
        self.accepted.set(self.accepted.get().wrapping_add(1));
    }

    pub fn tls_handshake_failed(&self) {
        let cell = &self.tls_handshake_failures;
        cell.set(cell.get().wrapping_add(1));
    }

    pub fn set_open(&self, open: usize) {
        self.open.set(open as u64);
    }
}

/// Everything the page shows, as of the scrape.
pub struct Snapshot<'a> {
    pub counters: &'a Counters,
    pub discovery: Counts,
    pub active_node: Option<&'a str>,
    pub version: &'a str,
    /// None when `/proc` cannot be read: those metrics are left out.
    pub process: Option<ProcessStats>,
}

/// A metric family: its name, type and help line.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: "counter",
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: "gauge",
        help,
    }
}

const REQUESTS: Family = counter(
    "vault_redirector_requests_total",
    "Requests answered, by status code.",
);
const OPEN: Family = gauge(
    "vault_redirector_connections_open",
    "Client connections open.",
);
const ACCEPTED: Family = counter(
    "vault_redirector_connections_accepted_total",
    "Client connections accepted.",
);
const TLS_FAILURES: Family = counter(
    "vault_redirector_tls_handshake_failures_total",
    "TLS handshakes that ended in an error (a close is none).",
);
const DISCOVERY: Family = counter(
    "vault_redirector_discovery_requests_total",
    "Queries to Consul, by result: ok (answered) or error.",
);
const CHANGES: Family = counter(
    "vault_redirector_active_changes_total",
    "Changes of the active node, to or from none included.",
);
const KNOWN: Family = gauge(
    "vault_redirector_active_known",
    "1 while an active node is known, else 0.",
);
const NODE: Family = gauge(
    "vault_redirector_active_node_info",
    "1 for the active node (host:port); no sample while none is known.",
);
const LAST_SUCCESS: Family = gauge(
    "vault_redirector_last_discovery_success_timestamp_seconds",
    "Unix time of the last answer from Consul.",
);
const BUILD: Family = gauge(
    "vault_redirector_build_info",
    "Always 1; the version as a label.",
);
const RSS: Family = gauge(
    "process_resident_memory_bytes",
    "Resident memory size in bytes.",
);
const OPEN_FDS: Family = gauge("process_open_fds", "Number of open file descriptors.");
const MAX_FDS: Family = gauge(
    "process_max_fds",
    "Maximum number of open file descriptors.",
);
const CPU: Family = counter(
    "process_cpu_seconds_total",
    "Total user and system CPU time spent in seconds.",
);
const START: Family = gauge(
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds.",
);

/// Every family the page can show, in its order (the tests check the page
/// and the man page against it).
#[cfg(test)]
const FAMILIES: [&Family; 15] = [
    &REQUESTS,
    &OPEN,
    &ACCEPTED,
    &TLS_FAILURES,
    &DISCOVERY,
    &CHANGES,
    &KNOWN,
    &NODE,
    &LAST_SUCCESS,
    &BUILD,
    &RSS,
    &OPEN_FDS,
    &MAX_FDS,
    &CPU,
    &START,
];

/// The page, in text format 0.0.4.
pub fn render(s: &Snapshot<'_>) -> String {
    let c = s.counters;
    let d = &s.discovery;
    let mut page = Page(String::with_capacity(4096));
    page.family(&REQUESTS);
    for (cell, code) in c.requests.iter().zip(CODE_LABELS) {
        page.sample(&REQUESTS, Some(("code", code)), cell.get());
    }
    page.single(&OPEN, c.open.get());
    page.single(&ACCEPTED, c.accepted.get());
    page.single(&TLS_FAILURES, c.tls_handshake_failures.get());
    page.family(&DISCOVERY);
    page.sample(&DISCOVERY, Some(("result", "ok")), d.answers);
    page.sample(&DISCOVERY, Some(("result", "error")), d.errors);
    page.single(&CHANGES, d.active_changes);
    page.single(&KNOWN, u64::from(s.active_node.is_some()));
    page.family(&NODE);
    if let Some(node) = s.active_node {
        page.sample(&NODE, Some(("node", node)), 1);
    }
    let last = d.last_answer.map_or(Micros(0), process::unix_time);
    page.single(&LAST_SUCCESS, last);
    page.family(&BUILD);
    page.sample(&BUILD, Some(("version", s.version)), 1);
    if let Some(p) = &s.process {
        page.single(&RSS, p.resident_memory_bytes);
        page.single(&OPEN_FDS, p.open_fds);
        page.single(&MAX_FDS, p.max_fds);
        page.single(&CPU, p.cpu_time);
        page.single(&START, p.start_time);
    }
    page.0
}

/// The page being written.
struct Page(String);

impl Page {
    fn family(&mut self, f: &Family) {
        let Family { name, kind, help } = f;
        // Writing to a String cannot fail.
        let _ = write!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// A family with one sample and no labels.
    fn single(&mut self, f: &Family, value: impl Value) {
        self.family(f);
        self.sample(f, None, value);
    }

    fn sample(&mut self, f: &Family, label: Option<(&str, &str)>, value: impl Value) {
        let out = &mut self.0;
        out.push_str(f.name);
        if let Some((key, v)) = label {
            out.push('{');
            out.push_str(key);
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push_str("\"}");
        }
        out.push(' ');
        value.put(out);
        out.push('\n');
    }
}

/// A sample's value as the format writes it.
trait Value {
    fn put(self, out: &mut String);
}

impl Value for u64 {
    fn put(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for Micros {
    fn put(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

/// The format's label escapes: backslash, double quote, line feed. (Our
/// label values are versions and checked host:port targets, but the page
/// must stay parseable whatever they hold.)
fn escape_label_value(out: &mut String, value: &str) {
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn snapshot<'a>(counters: &'a Counters, node: Option<&'a str>) -> Snapshot<'a> {
        Snapshot {
            counters,
            discovery: Counts {
                answers: 12,
                errors: 3,
                active_changes: 2,
                last_answer: Some(UNIX_EPOCH + Duration::from_millis(1_764_115_200_250)),
            },
            active_node: node,
            version: "0.3.0",
            process: Some(ProcessStats {
                resident_memory_bytes: 1_499_136,
                open_fds: 9,
                max_fds: 10_032,
                cpu_time: Micros(520_000),
                start_time: Micros(1_764_115_100_500_000),
            }),
        }
    }

    fn lines_of(page: &str, prefix: &str) -> Vec<String> {
        page.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_count_lands_on_its_own_line() {
        let counters = Counters::default();
        for _ in 0..5 {
            counters.answered(Code::Redirect);
        }
        counters.answered(Code::HeadTooLarge);
        counters.accepted();
        counters.accepted();
        counters.tls_handshake_failed();
        counters.set_open(1);
        let page = render(&snapshot(&counters, Some("vault-b:8200")));
        assert_eq!(
            lines_of(&page, "vault_redirector_requests_total{"),
            [
                "vault_redirector_requests_total{code=\"200\"} 0",
                "vault_redirector_requests_total{code=\"307\"} 5",
                "vault_redirector_requests_total{code=\"400\"} 0",
                "vault_redirector_requests_total{code=\"431\"} 1",
                "vault_redirector_requests_total{code=\"503\"} 0",
            ]
        );
        for line in [
            "vault_redirector_connections_open 1",
            "vault_redirector_connections_accepted_total 2",
            "vault_redirector_tls_handshake_failures_total 1",
            "vault_redirector_discovery_requests_total{result=\"ok\"} 12",
            "vault_redirector_discovery_requests_total{result=\"error\"} 3",
            "vault_redirector_active_changes_total 2",
            "vault_redirector_active_known 1",
            "vault_redirector_active_node_info{node=\"vault-b:8200\"} 1",
            "vault_redirector_last_discovery_success_timestamp_seconds 1764115200.250000",
            "vault_redirector_build_info{version=\"0.3.0\"} 1",
            "process_resident_memory_bytes 1499136",
            "process_open_fds 9",
            "process_max_fds 10032",
            "process_cpu_seconds_total 0.520000",
            "process_start_time_seconds 1764115100.500000",
        ] {
            assert!(
                page.lines().any(|l| l == line),
                "{line} missing from\n{page}"
            );
        }
    }

    #[test]
    fn every_sample_follows_its_help_and_type() {
        let counters = Counters::default();
        let page = render(&snapshot(&counters, Some("vault-b:8200")));
        let mut typed = None;
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge"].contains(&kind), "{line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                typed = Some(name.to_owned());
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(Some(name), typed.as_deref(), "{line}");
            }
        }
        assert!(page.ends_with('\n'));
    }

    #[test]
    fn every_family_is_on_the_page_once() {
        let counters = Counters::default();
        let page = render(&snapshot(&counters, Some("vault-b:8200")));
        for f in FAMILIES {
            let typed = format!("# TYPE {} {}\n", f.name, f.kind);
            assert_eq!(page.matches(&typed).count(), 1, "{}", f.name);
        }
        assert_eq!(page.matches("# TYPE ").count(), FAMILIES.len());
    }

    #[test]
    fn the_man_page_documents_every_family() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/cross/package/vault-redirector.8"
        );
        let page = std::fs::read_to_string(path).expect(path);
        for f in FAMILIES {
            let documented = page
                .lines()
                .any(|l| l.starts_with('.') && l.contains(f.name));
            assert!(documented, "the man page lacks {}", f.name);
        }
    }

    #[test]
    fn no_active_node_means_no_info_sample_and_known_zero() {
        let counters = Counters::default();
        let page = render(&snapshot(&counters, None));
        assert!(page.contains("\nvault_redirector_active_known 0\n"));
        assert!(page.contains("# TYPE vault_redirector_active_node_info gauge\n"));
        assert!(lines_of(&page, "vault_redirector_active_node_info").is_empty());
    }

    #[test]
    fn without_proc_the_process_family_is_left_out() {
        let counters = Counters::default();
        let mut s = snapshot(&counters, None);
        s.process = None;
        assert!(!render(&s).contains("process_"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut page = Page(String::new());
        page.sample(&gauge("m", ""), Some(("node", "a\"b\\c\nd")), 1);
        assert_eq!(page.0, "m{node=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
