//! Start-up: the first poll happens before listening, and each failure
//! has its exit code and one clear line.

use crate::client::get;
use crate::daemon::{Daemon, SOON};
use crate::fake_consul::{Answer, FakeConsul, active_node, fixture};
use std::net::TcpListener;
use std::time::Instant;

fn exit_of(args: &[&str]) -> (i32, String) {
    let mut d = Daemon::spawn(args);
    let status = d.wait_exit(SOON).expect("exits at start-up");
    (status.code().expect("exit code"), d.log())
}

#[test]
fn consul_unreachable_exits_1_with_one_line() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (code, log) = exit_of(&["-P", "0", &format!("127.0.0.1:{port}")]);
    assert_eq!(code, 1, "{log}");
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(
        log.starts_with(&format!(
            "ERROR: Could not poll Consul at 127.0.0.1:{port}: "
        )),
        "{log}"
    );
}

#[test]
fn consul_garbage_or_error_status_exits_1() {
    for answer in [
        Answer::Json(b"<html>not json</html>".to_vec()),
        Answer::Status(500, "rpc error making call: No cluster leader".into()),
        Answer::Status(403, "ACL not found".into()),
    ] {
        let consul = FakeConsul::start(answer);
        let (code, log) = exit_of(&["-P", "0", &consul.host_port()]);
        assert_eq!(code, 1, "{log}");
        assert!(log.contains("ERROR: Could not poll Consul at"), "{log}");
    }
    let consul = FakeConsul::start(Answer::Status(403, "ACL not found".into()));
    assert!(
        exit_of(&["-P", "0", &consul.host_port()])
            .1
            .contains("HTTP 403: ACL not found")
    );
}

#[test]
fn consul_that_never_answers_does_not_hang_start_up() {
    let consul = FakeConsul::start(Answer::Hang);
    let started = Instant::now();
    let (code, log) = exit_of(&["-P", "0", "-p", "0.5", &consul.host_port()]);
    assert_eq!(code, 1, "{log}");
    // The start-up query times out after 2 s (the shortest query timeout);
    // a start-up that waited for Consul would never end. `exit_of` already
    // gave up after SOON; this says how long it took.
    assert!(started.elapsed() < SOON, "took {:?}", started.elapsed());
}

#[test]
fn no_active_node_exits_3_without_listening() {
    let consul = FakeConsul::serving(fixture("stepdown_blocking_result_passing.json"));
    let (code, log) = exit_of(&["-P", "0", &consul.host_port()]);
    assert_eq!(code, 3, "{log}");
    assert!(
        log.contains("NO vault services found with health check passing"),
        "{log}"
    );
    assert!(
        log.contains("ERROR: Could not get active vault node from Consul. Exiting."),
        "{log}"
    );
    assert!(!log.contains("listening on"), "{log}");
}

#[test]
fn port_in_use_exits_1_with_one_line() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, log) = exit_of(&["--bind", "127.0.0.1", "-P", &port, &consul.host_port()]);
    assert_eq!(code, 1, "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].starts_with(&format!("ERROR: Could not listen on 127.0.0.1:{port}: ")),
        "{log}"
    );
}

#[test]
fn port_0_binds_an_ephemeral_port_and_logs_it() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    let d = Daemon::start(&["-P", "0", &consul.host_port()]);
    assert_ne!(d.addr.port(), 0);
    assert!(d.log().contains(&format!(
        "Setting TCP listener on port {} for HTTP requests",
        d.addr.port()
    )));
    assert!(
        d.log().contains("Initial Vault active node: vault-a:8200"),
        "{}",
        d.log()
    );
    assert_eq!(get(d.addr, "/").code, 307);
    // The first poll happened before listening, the timer did the rest.
    assert!(consul.request_count() >= 1);
}

#[test]
fn bind_accepts_ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let consul = FakeConsul::serving(active_node("vault-a", "fd00::1", 8200));
    let d = Daemon::start(&["--bind", "::1", "-P", "0", "-I", &consul.host_port()]);
    assert!(d.addr.is_ipv6(), "{}", d.addr);
    let r = get(d.addr, "/v1/sys/health");
    assert_eq!(
        r.header("Location"),
        Some("http://[fd00::1]:8200/v1/sys/health")
    );
}

#[test]
fn checkid_is_accepted_and_ignored() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    let d = Daemon::start(&["-C", "service:whatever", "-P", "0", &consul.host_port()]);
    assert_eq!(
        get(d.addr, "/x").header("Location"),
        Some("http://vault-a:8200/x")
    );
}
