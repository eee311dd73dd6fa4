//! Signals and logging: SIGTERM/SIGINT exit 0, SIGUSR1/SIGUSR2 and `-l`
//! switch logging, per-request lines at `-v` never carry headers or bodies.

use crate::client::{Client, get, request};
use crate::daemon::{Daemon, SOON, eventually};
use crate::fake_consul::{Answer, with_vault_a as consul};

#[test]
fn sigterm_and_sigint_exit_0() {
    let c = consul();
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut d = Daemon::start(&["-P", "0", &c.host_port()]);
        d.signal(signal);
        let status = d.wait_exit(SOON).expect("exits");
        assert_eq!(status.code(), Some(0), "signal {signal}: {}", d.log());
    }
}

#[test]
fn shutdown_finishes_a_request_in_flight() {
    let c = consul();
    let mut d = Daemon::start(&["-P", "0", &c.host_port()]);
    let mut busy = Client::connect(d.addr);
    busy.send(b"GET /v1/half HTTP/1.1\r\nHost: x\r\n");
    let mut idle = Client::connect(d.addr);
    idle.send(b"GET /v1/one HTTP/1.1\r\n\r\n");
    assert_eq!(idle.response(false).code, 307);
    d.signal(libc::SIGTERM);
    assert!(d.wait_for_log("Shutting down", SOON).is_some());
    assert!(
        idle.closed(),
        "idle keep-alive connections are closed at once"
    );
    busy.send(b"\r\n");
    let r = busy.response(false);
    assert_eq!((r.code, r.header("Connection")), (307, Some("close")));
    assert_eq!(d.wait_exit(SOON).and_then(|s| s.code()), Some(0));
}

#[test]
fn verbose_logs_each_response_without_headers_or_bodies() {
    let c = consul();
    let d = Daemon::start(&["-v", "-P", "0", &c.host_port()]);
    let mut client = Client::connect(d.addr);
    client.send(b"PUT /v1/secret/x?y=1 HTTP/1.1\r\nX-Vault-Token: s.TOPSECRETTOKEN\r\nContent-Length: 14\r\n\r\n{\"pw\":\"hunter\"}");
    let port = client_port(&client);
    let _ = client.response(false);
    let line = d.wait_for_log("RESPOND 307", SOON).expect("request logged");
    assert!(
        line.ends_with(&format!(
            "RESPOND 307 to http://vault-a:8200/v1/secret/x?y=1 for PUT request for /v1/secret/x?y=1 from 127.0.0.1:{port}"
        )),
        "{line}"
    );
    assert_eq!(get(d.addr, "/vault-redirector-health").code, 200);
    assert!(
        d.wait_for_log(
            "RESPOND 200 for GET request for /vault-redirector-health from 127.0.0.1:",
            SOON
        )
        .is_some()
    );
    let log = d.log();
    assert!(
        !log.contains("TOPSECRET") && !log.contains("hunter"),
        "{log}"
    );
}

fn client_port(c: &Client) -> u16 {
    c.local_port()
}

#[test]
fn default_level_does_not_log_each_request() {
    let c = consul();
    let d = Daemon::start(&["-P", "0", &c.host_port()]);
    get(d.addr, "/v1/x");
    get(d.addr, "/v1/y");
    assert_eq!(d.count_log("RESPOND"), 0);
}

#[test]
fn usr2_disables_and_usr1_enables_logging() {
    let c = consul();
    let d = Daemon::start(&["-v", "-P", "0", &c.host_port()]);
    let pid = d.pid();
    d.signal(libc::SIGUSR2);
    assert!(
        d.wait_for_log(
            &format!("Logging disabled via signal; send SIGUSR1 to PID {pid} to enable logging"),
            SOON
        )
        .is_some()
    );
    get(d.addr, "/v1/quiet");
    d.signal(libc::SIGUSR1);
    assert!(
        d.wait_for_log(
            &format!("Logging enabled via signal; send SIGUSR2 to PID {pid} to disable logging"),
            SOON
        )
        .is_some()
    );
    get(d.addr, "/v1/loud");
    assert!(d.wait_for_log("request for /v1/loud", SOON).is_some());
    assert_eq!(d.count_log("/v1/quiet"), 0, "{}", d.log());
}

#[test]
fn log_disable_silences_all_but_poll_errors() {
    let c = consul();
    let d = Daemon::start(&["-vl", "-P", "0", "-p", "0.2", &c.host_port()]);
    let log = d.log();
    assert!(
        log.contains("Starting VaultRedirector with ALL LOGGING DISABLED; send SIGUSR1 to PID"),
        "{log}"
    );
    assert!(
        log.contains("Initial Vault active node: vault-a:8200"),
        "{log}"
    );
    get(d.addr, "/v1/quiet");
    c.set(Answer::Status(500, "boom".into()));
    assert!(
        d.wait_for_log(
            "Exception encountered when polling active node: Consul answered HTTP 500",
            SOON
        )
        .is_some()
    );
    // The grace period ends silently: no "changed" line while disabled.
    assert!(eventually(SOON, || get(d.addr, "/v1/x").code == 503));
    assert_eq!(d.count_log("RESPOND"), 0, "{}", d.log());
    assert_eq!(d.count_log("Active vault node changed"), 0, "{}", d.log());
    assert_eq!(
        request(d.addr, "GET /vault-redirector-health HTTP/1.1\r\n\r\n").code,
        503
    );
}
