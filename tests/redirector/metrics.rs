//! `/vault-redirector-metrics`: scraped over loopback and parsed by a real
//! Prometheus text parser (Python `prometheus_client`, installed into a
//! virtualenv by the first test that needs it); exact counts of what the
//! test did between two scrapes; `--no-metrics` and near-miss paths are
//! redirected.

use crate::client::{Client, get, request};
use crate::daemon::{Daemon, SOON, eventually};
use crate::fake_consul::{Answer, FakeConsul, active_node};
use crate::pki::Pki;
use crate::tls;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

const METRICS: &str = "/vault-redirector-metrics";
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The parser's version, pinned so that a new release cannot change what
/// the test means.
const PROMETHEUS_CLIENT: &str = "prometheus-client==0.26.0";

/// Reads Prometheus text on stdin with the reference parser; prints every
/// sample with its family's type as JSON.
const PARSE_SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([family.name, family.type, s.name, s.labels, s.value])
print(json.dumps(out))
"#;

/// The Python of a virtualenv holding `prometheus_client`, made once per
/// test build under cargo's temporary folder; None (the tests then say they
/// are skipped) if it cannot be installed here.
fn parser_python() -> Option<&'static PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("prometheus-venv");
            let python = venv.join("bin/python3");
            let works = |python: &PathBuf| {
                Command::new(python)
                    .args(["-c", "import prometheus_client.parser"])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if works(&python) {
                return Some(python);
            }
            let _ = std::fs::remove_dir_all(&venv);
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success())
                && Command::new(venv.join("bin/pip"))
                    .args(["install", "-q", "--disable-pip-version-check"])
                    .arg(PROMETHEUS_CLIENT)
                    .status()
                    .is_ok_and(|s| s.success());
            (made && works(&python)).then_some(python)
        })
        .as_ref()
}

/// Set (by CI) to fail rather than skip when the parser cannot be had.
const REQUIRE_PARSER: &str = "VAULT_REDIRECTOR_REQUIRE_PROMETHEUS_PARSER";

/// Say loudly why a test did not run (or fail, where it must run).
fn skipped() {
    let why = format!(
        "{PROMETHEUS_CLIENT} could not be installed into a virtualenv (python3 -m venv, \
         pip): no Prometheus text parser to check the page with"
    );
    assert!(
        std::env::var_os(REQUIRE_PARSER).is_none(),
        "{why} ({REQUIRE_PARSER} is set)"
    );
    eprintln!("SKIPPED: {why}");
}

/// One scrape as the reference parser read it.
struct Scrape {
    /// (sample name, labels) -> value.
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
    /// Family name (as the parser names it) -> type.
    types: BTreeMap<String, String>,
    text: String,
}

impl Scrape {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }

    /// A sample that must be there.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{}", self.text))
    }

    fn requests(&self, code: &str) -> f64 {
        self.get("vault_redirector_requests_total", &[("code", code)])
    }

    fn samples_named(&self, name: &str) -> usize {
        self.samples.keys().filter(|(n, _)| n == name).count()
    }
}

fn parse(python: &PathBuf, text: &str) -> Scrape {
    let mut child = Command::new(python)
        .args(["-c", PARSE_SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejects the page: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut scrape = Scrape {
        samples: BTreeMap::new(),
        types: BTreeMap::new(),
        text: text.to_owned(),
    };
    for entry in parsed {
        let family = entry[0].as_str().unwrap().to_owned();
        scrape
            .types
            .insert(family, entry[1].as_str().unwrap().to_owned());
        let labels = entry[3]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let key = (entry[2].as_str().unwrap().to_owned(), labels);
        let value = entry[4].as_f64().unwrap();
        assert!(
            scrape.samples.insert(key, value).is_none(),
            "duplicate sample in\n{text}"
        );
    }
    scrape
}

/// GET the page on a fresh connection, check its head, parse it.
fn scrape(python: &PathBuf, d: &Daemon) -> Scrape {
    let r = get(d.addr, METRICS);
    assert_eq!(r.code, 200, "{}", r.body_text());
    assert_eq!(r.header("Content-Type"), Some(CONTENT_TYPE));
    parse(python, &r.body_text())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn daemon(extra: &[&str]) -> (FakeConsul, Daemon) {
    let consul = FakeConsul::serving(active_node("vault-b", "10.0.0.2", 8200));
    let hp = consul.host_port();
    let mut args = vec!["-P", "0"];
    args.extend_from_slice(extra);
    args.push(&hp);
    let d = Daemon::start(&args);
    (consul, d)
}

#[test]
fn every_answer_and_connection_between_two_scrapes_is_counted_exactly() {
    let Some(python) = parser_python() else {
        return skipped();
    };
    let (_consul, d) = daemon(&[]);
    let before = scrape(python, &d);
    let mut connections = 0;
    // 307: one request per connection, keep-alive, and paths that only
    // look like the metrics path.
    for i in 0..10 {
        assert_eq!(get(d.addr, &format!("/v1/one/{i}")).code, 307);
        connections += 1;
    }
    let mut c = Client::connect(d.addr);
    connections += 1;
    for i in 0..15 {
        c.send(format!("GET /v1/ka/{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(c.response(false).code, 307);
    }
    drop(c);
    for near_miss in [&format!("{METRICS}?x=1"), &format!("{METRICS}/")] {
        let r = get(d.addr, near_miss);
        assert_eq!(r.code, 307);
        connections += 1;
    }
    // 200: health; the first scrape is counted after its own page.
    for _ in 0..3 {
        assert_eq!(get(d.addr, "/vault-redirector-health").code, 200);
        connections += 1;
    }
    // 400 and 431.
    let rejects = [
        ("GET http://elsewhere/v1/x HTTP/1.1\r\n\r\n".to_owned(), 400),
        ("GET / HTTP/1.1\r\nBad Header\r\n\r\n".to_owned(), 400),
        (
            format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(17 * 1024)),
            431,
        ),
    ];
    for (raw, code) in &rejects {
        assert_eq!(request(d.addr, raw).code, *code, "{raw:.40}");
        connections += 1;
    }
    let after = scrape(python, &d);
    connections += 1;
    let delta = |code: &str| after.requests(code) - before.requests(code);
    assert_eq!(delta("307"), 27.0);
    assert_eq!(delta("200"), 4.0);
    assert_eq!(delta("400"), 2.0);
    assert_eq!(delta("431"), 1.0);
    assert_eq!(delta("503"), 0.0);
    let accepted = "vault_redirector_connections_accepted_total";
    assert_eq!(
        after.get(accepted, &[]) - before.get(accepted, &[]),
        connections as f64
    );
    assert!(after.get("vault_redirector_connections_open", &[]) >= 1.0);
    assert_eq!(
        after.get("vault_redirector_tls_handshake_failures_total", &[]),
        0.0
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        after.get("vault_redirector_build_info", &[("version", version)]),
        1.0
    );
    assert_eq!(after.get("vault_redirector_active_known", &[]), 1.0);
    let node = [("node", "vault-b:8200")];
    assert_eq!(after.get("vault_redirector_active_node_info", &node), 1.0);
    let discovery = "vault_redirector_discovery_requests_total";
    assert!(
        after.get(discovery, &[("result", "ok")]) >= 1.0,
        "the start-up query"
    );
    assert_eq!(after.get(discovery, &[("result", "error")]), 0.0);
    assert_eq!(after.get("vault_redirector_active_changes_total", &[]), 0.0);
    let last = after.get(
        "vault_redirector_last_discovery_success_timestamp_seconds",
        &[],
    );
    assert!(
        last > unix_now() - 600.0 && last <= unix_now() + 1.0,
        "{last}"
    );
    let types = [
        ("vault_redirector_requests", "counter"),
        ("vault_redirector_connections_open", "gauge"),
        ("vault_redirector_connections_accepted", "counter"),
        ("vault_redirector_discovery_requests", "counter"),
        ("vault_redirector_active_node_info", "gauge"),
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
    ];
    for (family, kind) in types {
        assert_eq!(
            after.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    check_process_family(&after);
}

fn check_process_family(s: &Scrape) {
    let rss = s.get("process_resident_memory_bytes", &[]);
    assert!(rss > 100_000.0 && rss < 1e9, "{rss}");
    let (open, max) = (
        s.get("process_open_fds", &[]),
        s.get("process_max_fds", &[]),
    );
    assert!(open >= 3.0 && open <= max, "{open} of {max}");
    assert!(s.get("process_cpu_seconds_total", &[]) >= 0.0);
    let started = s.get("process_start_time_seconds", &[]);
    assert!(
        started > unix_now() - 600.0 && started <= unix_now() + 1.0,
        "{started}"
    );
}

#[test]
fn discovery_answers_errors_and_node_changes_are_counted() {
    let Some(python) = parser_python() else {
        return skipped();
    };
    // -v: every answer is logged, so the log tells what the counts must be.
    let (consul, d) = daemon(&["-v", "-p", "1"]);
    let answers = || d.count_log("Got active node as") + d.count_log("NO vault services found");
    let errors = || d.count_log("Exception encountered when polling");
    consul.set(Answer::Json(active_node("vault-c", "10.0.0.3", 8200)));
    let changed = "Active vault node changed from vault-b:8200 to vault-c:8200";
    assert!(d.wait_for_log(changed, SOON).is_some(), "{}", d.log());
    let answered_before = answers();
    let s = scrape(python, &d);
    let ok = s.get(
        "vault_redirector_discovery_requests_total",
        &[("result", "ok")],
    );
    // Every count made before the scrape is logged by the time we look again.
    assert!(ok >= answered_before as f64, "{ok} < {answered_before}");
    assert!(
        eventually(SOON, || answers() as f64 >= ok),
        "{ok}\n{}",
        d.log()
    );
    assert_eq!(s.get("vault_redirector_active_changes_total", &[]), 1.0);
    let node = [("node", "vault-c:8200")];
    assert_eq!(s.get("vault_redirector_active_node_info", &node), 1.0);
    assert_eq!(s.samples_named("vault_redirector_active_node_info"), 1);

    // Consul fails: errors are counted, and the node is dropped after the
    // grace period (two intervals): a second change.
    consul.set(Answer::Status(500, "boom".into()));
    let dropped = "Active vault node changed from vault-c:8200 to None";
    assert!(d.wait_for_log(dropped, 3 * SOON).is_some(), "{}", d.log());
    let failed_before = errors();
    let s = scrape(python, &d);
    let failed = s.get(
        "vault_redirector_discovery_requests_total",
        &[("result", "error")],
    );
    assert!(failed >= failed_before as f64 && failed >= 2.0, "{failed}");
    assert!(
        eventually(SOON, || errors() as f64 >= failed),
        "{failed}\n{}",
        d.log()
    );
    assert_eq!(s.get("vault_redirector_active_changes_total", &[]), 2.0);
    assert_eq!(s.get("vault_redirector_active_known", &[]), 0.0);
    assert_eq!(s.samples_named("vault_redirector_active_node_info"), 0);
    // The health check answers 503 now, and is counted so.
    let r = get(d.addr, "/vault-redirector-health");
    assert_eq!(r.code, 503);
    let again = scrape(python, &d);
    assert_eq!(again.requests("503") - s.requests("503"), 1.0);
}

#[test]
fn tls_handshake_failures_are_counted_and_the_page_is_served_over_tls() {
    let Some(python) = parser_python() else {
        return skipped();
    };
    let pki = Pki::new();
    let (cert, key) = tls::pair_files(&pki.leaf());
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    let d = tls::start_tls(&consul, &cert, &key, &["-S"]);
    // Plain HTTP and garbage on the TLS port: two failed handshakes, each
    // closed before we look.
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"\x16\x03\x01\x00\x05junk!",
    ] {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(SOON)).unwrap();
        s.write_all(junk).unwrap();
        let mut buf = [0u8; 256];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    }
    let mut good = tls::connect(d.addr, &pki.client_config());
    good.write_all(format!("GET {METRICS} HTTP/1.1\r\n\r\n").as_bytes())
        .unwrap();
    let page = tls::response(&mut good);
    let (head, body) = page.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains(&format!("Content-Type: {CONTENT_TYPE}")),
        "{head}"
    );
    let s = parse(python, body);
    assert_eq!(
        s.get("vault_redirector_tls_handshake_failures_total", &[]),
        2.0
    );
    assert_eq!(
        s.get("vault_redirector_connections_accepted_total", &[]),
        3.0
    );
    assert_eq!(s.get("vault_redirector_connections_open", &[]), 1.0);
}

#[test]
fn no_metrics_redirects_the_path_like_any_other() {
    let (_consul, d) = daemon(&["--no-metrics"]);
    let r = get(d.addr, METRICS);
    assert_eq!(r.code, 307);
    assert_eq!(
        r.header("Location"),
        Some("http://vault-b:8200/vault-redirector-metrics")
    );
    // Without the flag the same request gets the page.
    let (_consul, d) = daemon(&[]);
    let r = get(d.addr, METRICS);
    assert_eq!(
        (r.code, r.header("Content-Type")),
        (200, Some(CONTENT_TYPE))
    );
}
