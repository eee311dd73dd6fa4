//! Consul changing under a running redirector: new active nodes, no active
//! node, errors (with the grace period), a hung Consul.

use crate::client::get;
use crate::daemon::{Daemon, SOON, eventually};
use crate::fake_consul::{Answer, FakeConsul, active_node, fixture};
use std::time::{Duration, Instant};

fn location(d: &Daemon) -> Option<String> {
    get(d.addr, "/v1/x").header("Location").map(str::to_owned)
}

fn health(d: &Daemon) -> (u16, serde_json::Value) {
    let r = get(d.addr, "/vault-redirector-health");
    (r.code, r.json())
}

#[test]
fn a_new_active_node_reaches_the_location() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    let d = Daemon::start(&["-P", "0", "-p", "0.2", &consul.host_port()]);
    assert_eq!(location(&d).as_deref(), Some("http://vault-a:8200/v1/x"));
    consul.set(Answer::Json(active_node("vault-c", "10.0.0.3", 8200)));
    assert!(eventually(SOON, || location(&d).as_deref()
        == Some("http://vault-c:8200/v1/x")));
    assert!(
        d.wait_for_log(
            "Active vault node changed from vault-a:8200 to vault-c:8200",
            SOON
        )
        .is_some(),
        "{}",
        d.log()
    );
    assert_eq!(health(&d).1["active_vault"], "vault-c:8200");
}

#[test]
fn no_active_node_answers_503_with_vaults_error_shape() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    let d = Daemon::start(&["-P", "0", "-p", "0.2", &consul.host_port()]);
    consul.set(Answer::Json(fixture(
        "stepdown_blocking_result_passing.json",
    )));
    assert!(eventually(SOON, || get(d.addr, "/v1/x").code == 503));
    let r = get(d.addr, "/v1/x");
    assert_eq!(r.status_line, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert_eq!(r.body_text(), "{\"errors\":[\"no active Vault node\"]}");
    let (code, json) = health(&d);
    assert_eq!(code, 503);
    assert_eq!(
        get(d.addr, "/vault-redirector-health").status_line,
        "HTTP/1.1 503 No Active Vault"
    );
    assert_eq!(json["active_vault"], serde_json::Value::Null);
    assert_eq!(json["healthy"], true);
    assert!(
        d.wait_for_log("Active vault node changed from vault-a:8200 to None", SOON)
            .is_some(),
        "{}",
        d.log()
    );
    assert!(
        d.wait_for_log("NO vault services found with health check passing", SOON)
            .is_some(),
        "{}",
        d.log()
    );

    consul.set(Answer::Json(fixture("steady_passing.json")));
    assert!(eventually(SOON, || location(&d).as_deref()
        == Some("http://testnode:8210/v1/x")));
    assert_eq!(health(&d).0, 200);
}

#[test]
fn consul_errors_keep_the_node_for_two_intervals_then_503() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    // A long interval, so that the grace period is easy to observe: the
    // checks "within the grace period" below have 6 s to run in.
    const INTERVAL: Duration = Duration::from_secs(3);
    const GRACE: Duration = Duration::from_secs(6);
    let d = Daemon::start(&["-P", "0", "-p", "3", &consul.host_port()]);
    let (_, before) = health(&d);
    // Before the change: the first failure, where the grace starts, is later.
    let first_error = Instant::now();
    consul.set(Answer::Status(500, "No cluster leader".into()));
    assert!(
        d.wait_for_log("Exception encountered when polling active node", SOON)
            .is_some()
    );
    // Within the grace period: still redirecting, error shown in health.
    let (code, json) = health(&d);
    assert_eq!(code, 200);
    assert_eq!(location(&d).as_deref(), Some("http://vault-a:8200/v1/x"));
    assert_eq!(
        json["last_consul_error"],
        "Consul answered HTTP 500: No cluster leader"
    );
    assert_eq!(
        json["last_consul_poll"], before["last_consul_poll"],
        "failed polls do not move it"
    );
    assert!(
        first_error.elapsed() < GRACE,
        "the checks above ran after the grace period; they prove nothing"
    );
    // Then no active node: not before the grace (two intervals from the
    // first failure, an exact lower bound), and soon after it.
    assert!(eventually(GRACE + SOON, || health(&d).0 == 503));
    assert!(
        first_error.elapsed() >= 2 * INTERVAL,
        "dropped too early: {:?}",
        first_error.elapsed()
    );
    assert_eq!(get(d.addr, "/v1/x").code, 503);
    // And back once Consul answers.
    consul.set(Answer::Json(active_node("vault-a", "10.0.0.1", 8200)));
    assert!(eventually(SOON, || health(&d).0 == 200));
    assert_eq!(health(&d).1["last_consul_error"], serde_json::Value::Null);
}

#[test]
fn bad_json_from_consul_is_logged_and_ends_in_503() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    let d = Daemon::start(&["-P", "0", "-p", "0.2", &consul.host_port()]);
    consul.set(Answer::Json(b"{\"not\": \"a list\"}".to_vec()));
    assert!(eventually(SOON, || health(&d).0 == 503));
    let line = d
        .wait_for_log("Exception encountered when polling active node: ", SOON)
        .unwrap();
    assert!(line.contains("not a health service list"), "{line}");
}

#[test]
fn a_hung_consul_never_slows_requests() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    // -p 4: a hung blocking query times out after its wait (4 s) plus 3 s
    // of slack, so a loop that waited for Consul would stall the first
    // request below for about 7 s; 3 s per request leaves room for a loaded
    // machine and still catches that.
    let d = Daemon::start(&["-P", "0", "-p", "4", &consul.host_port()]);
    // A blocking query waits in the fake Consul; the change releases it
    // into the hang.
    assert!(eventually(SOON, || consul
        .requests()
        .iter()
        .any(|r| r.contains("index="))));
    consul.set(Answer::Hang);
    for _ in 0..20 {
        let started = Instant::now();
        assert!(matches!(get(d.addr, "/v1/x").code, 307 | 503));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    // The poll timeout turns the hang into errors, and then into a 503.
    assert!(
        d.wait_for_log("Exception encountered when polling active node", SOON)
            .is_some()
    );
    // Then the 8 s grace (two intervals) runs out.
    assert!(eventually(Duration::from_secs(8) + SOON, || health(&d).0 == 503));
}

#[test]
fn several_passing_actives_pick_one_and_warn() {
    let two = br#"[
      {"Node":{"Node":"old","Address":"10.0.0.1"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":10},"Checks":[{"Status":"passing"}]},
      {"Node":{"Node":"new","Address":"10.0.0.2"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":20},"Checks":[{"Status":"passing"}]}]"#;
    let consul = FakeConsul::serving(two.to_vec());
    let d = Daemon::start(&["-P", "0", &consul.host_port()]);
    assert_eq!(location(&d).as_deref(), Some("http://new:8200/v1/x"));
    assert!(
        d.log()
            .contains("Several passing Vault nodes are tagged active in Consul"),
        "{}",
        d.log()
    );
}

#[test]
fn an_outage_shorter_than_the_grace_period_shows_no_503() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    // -p 3: a 6 s grace; retries at +0.25, +0.75, +1.75, +3.75 s, and the
    // back-off's next one (+6.75 s) would come too late, so one more try
    // starts at +5.9 s. An outage of 4.5 s ends between the last back-off
    // retry and that try: only the try before the grace runs out can keep
    // the 503 away. The outage is a stimulus (a sleep); if load stretches
    // it by up to 1.4 s, it still ends before that try.
    let d = Daemon::start(&["-P", "0", "-p", "3", &consul.host_port()]);
    // A blocking query in flight sees the failure at once.
    assert!(eventually(SOON, || consul
        .requests()
        .iter()
        .any(|r| r.contains("index="))));
    let addr = d.addr;
    // Watch past the end of the grace period.
    let watch_until = Instant::now() + Duration::from_secs(8);
    let watcher = std::thread::spawn(move || {
        let mut codes = Vec::new();
        while Instant::now() < watch_until {
            codes.push((Instant::now(), get(addr, "/vault-redirector-health").code));
            std::thread::sleep(Duration::from_millis(20));
        }
        codes
    });
    let failed_at = Instant::now();
    consul.set(Answer::Status(500, "No cluster leader".into()));
    std::thread::sleep(Duration::from_millis(4500));
    consul.set(Answer::Json(active_node("vault-a", "10.0.0.1", 8200)));
    let back_at = failed_at.elapsed();
    let codes = watcher.join().unwrap();
    let unhealthy: Vec<Duration> = codes
        .iter()
        .filter(|(_, code)| *code != 200)
        .map(|(at, _)| at.saturating_duration_since(failed_at))
        .collect();
    assert!(
        unhealthy.is_empty(),
        "Consul back after {back_at:?}; 503 at {unhealthy:?}\n{}",
        d.log()
    );
    assert!(d.count_log("Exception encountered when polling active node") >= 3);
}
