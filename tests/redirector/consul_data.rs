//! What Consul says is checked before it reaches a client: a node name or
//! port that is not a usable redirect target is skipped (and logged,
//! escaped), never pasted into a Location.

use crate::client::{Client, get};
use crate::daemon::{Daemon, SOON, eventually};
use crate::fake_consul::{Answer, FakeConsul, active_node};
use serde_json::json;

const HEADER_SPLITTING_NAME: &str = "evil\r\nSet-Cookie: pwn=1\r\nX-Injected: yes";

/// A passing active entry; serde_json escapes whatever the name holds, as
/// Consul does.
fn entry(node: &str, port: i64, modify_index: u64) -> serde_json::Value {
    json!({
        "Node": {"Node": node, "Address": "10.0.0.5"},
        "Service": {"Service": "vault", "Tags": ["active"], "Port": port, "ModifyIndex": modify_index},
        "Checks": [{"CheckID": "serfHealth", "Status": "passing"}]
    })
}

/// Newer than any good node, so that each would be chosen if accepted.
fn unusable_entries() -> Vec<serde_json::Value> {
    vec![
        entry(HEADER_SPLITTING_NAME, 8200, 90),
        entry("evil.example/x?", 8200, 91),
        entry("vault-zero", 0, 92),
        entry("vault-big", 99999, 93),
    ]
}

fn answer(entries: Vec<serde_json::Value>) -> Answer {
    Answer::Json(serde_json::to_vec(&entries).unwrap())
}

fn health_active(d: &Daemon) -> serde_json::Value {
    get(d.addr, "/vault-redirector-health").json()["active_vault"].clone()
}

#[test]
fn unusable_node_names_and_ports_never_reach_a_client() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    let d = Daemon::start(&["-P", "0", "-p", "0.2", &consul.host_port()]);

    // Only unusable active entries: that is no active node, not garbage.
    consul.set(answer(unusable_entries()));
    assert!(
        eventually(SOON, || health_active(&d) != "vault-a:8200"),
        "{}",
        d.log()
    );
    let mut c = Client::connect(d.addr);
    c.send(b"GET /v1/x HTTP/1.1\r\nHost: lb\r\n\r\n");
    let r = c.response(false);
    let raw = String::from_utf8_lossy(&r.raw).into_owned();
    assert_eq!(r.code, 503, "{raw}");
    assert!(r.header("Location").is_none(), "{raw}");
    assert!(
        r.header("Set-Cookie").is_none() && r.header("X-Injected").is_none(),
        "{raw}"
    );
    assert!(!raw.contains("pwn") && !raw.contains("evil"), "{raw}");
    let health = get(d.addr, "/vault-redirector-health").json();
    assert_eq!(health["active_vault"], serde_json::Value::Null);
    let warning = health["consul_warning"].as_str().unwrap_or_default();
    assert!(warning.contains("cannot be a redirect target"), "{health}");

    // Each reason reaches the log, escaped: no forged log line. The lines
    // come from the discovery thread through the log queue, so they may
    // land after the health answer: wait for each.
    for needle in [
        r#""evil\r\nSet-Cookie: pwn=1\r\nX-Injected: yes""#,
        r#""evil.example/x?""#,
        "port 0 ",
        "port 99999 ",
    ] {
        assert!(
            d.wait_for_log(needle, SOON).is_some(),
            "{needle}\n{}",
            d.log()
        );
    }
    let log = d.log();
    assert!(
        !log.lines()
            .any(|l| l.starts_with("Set-Cookie") || l.starts_with("X-Injected")),
        "{log}"
    );

    // With a usable node among them, that node is the one (older or not).
    let mut entries = unusable_entries();
    entries.push(entry("vault-good", 8201, 5));
    consul.set(answer(entries));
    assert!(eventually(SOON, || get(d.addr, "/v1/x")
        .header("Location")
        .map(str::to_owned)
        == Some("http://vault-good:8201/v1/x".into())));
    let r = get(d.addr, "/v1/x");
    assert_eq!(r.headers.len(), 4, "{:?}", r.headers);
}

#[test]
fn only_unusable_active_nodes_at_start_up_is_no_active_node() {
    let consul = FakeConsul::start(answer(unusable_entries()));
    let mut d = Daemon::spawn(&["-P", "0", &consul.host_port()]);
    let status = d.wait_exit(SOON).expect("exits at start-up");
    let log = d.log();
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(
        log.contains("NO vault services found with health check passing"),
        "{log}"
    );
    assert!(!log.lines().any(|l| l.starts_with("Set-Cookie")), "{log}");
}
