//! The Consul side done as a careful Consul client does: blocking queries,
//! ACL tokens, several agents, service/datacenter/consistency options and
//! HTTPS with Consul's own environment variables.

use crate::client::get;
use crate::daemon::{Daemon, SOON, command, eventually};
use crate::fake_consul::{Answer, FakeConsul, active_node};
use crate::pki::{ENCRYPTED_LEGACY_KEY, ENCRYPTED_PKCS8_KEY, Pki};
use crate::tls::{put, temp_dir};
use std::net::TcpListener;
use std::time::{Duration, Instant};

fn location(d: &Daemon) -> Option<String> {
    get(d.addr, "/v1/x").header("Location").map(str::to_owned)
}

fn health(d: &Daemon) -> serde_json::Value {
    get(d.addr, "/vault-redirector-health").json()
}

fn node(name: &str) -> Vec<u8> {
    active_node(name, "10.0.0.9", 8200)
}

#[test]
fn a_change_reaches_the_location_long_before_the_poll_interval() {
    let consul = FakeConsul::serving(node("vault-a"));
    // A 60 s interval: only a blocking query can explain a switch within
    // SOON (10 s), let alone five in a row (plain polling would pass with
    // odds of (1/6)^5); a blocking query takes well under a second, so the
    // bound leaves room for a loaded machine.
    let d = Daemon::start(&["-P", "0", "-p", "60", &consul.host_port()]);
    assert!(eventually(SOON, || consul
        .requests()
        .iter()
        .any(|r| r.contains("index="))));
    let mut samples = Vec::new();
    for i in 0..5 {
        let name = format!("vault-{i}");
        let changed = Instant::now();
        consul.set(Answer::Json(node(&name)));
        let want = format!("http://{name}:8200/v1/x");
        assert!(eventually(SOON, || location(&d).as_deref() == Some(want.as_str())));
        samples.push(changed.elapsed());
    }
    samples.sort();
    eprintln!(
        "switch time over {} changes: min {:?}, max {:?}",
        samples.len(),
        samples[0],
        samples[4]
    );
    assert!(samples[4] < SOON, "{samples:?}");
    let asked = consul.requests();
    assert!(
        asked.iter().any(|r| r.contains("wait=60000ms")),
        "{asked:?}"
    );
    assert!(health(&d)["last_consul_poll"].is_string());
}

#[test]
fn a_quiet_cluster_costs_about_one_request_per_interval() {
    let consul = FakeConsul::serving(node("vault-a"));
    let d = Daemon::start(&["-P", "0", "-p", "0.5", &consul.host_port()]);
    let before = consul.request_count();
    let started = Instant::now();
    // It keeps asking: three more queries (a condition wait, not a count
    // over a fixed time, which a loaded machine could make too small).
    assert!(eventually(SOON, || consul.request_count() >= before + 3));
    // The sleep is a measuring window: about six intervals.
    std::thread::sleep(Duration::from_secs(3));
    let during = consul.request_count() - before;
    let took = started.elapsed();
    // At most about one request per interval of the window as measured
    // (load only lengthens the window, never adds requests), with the
    // original slack of 10 for 6 intervals; a spinning poller would make
    // hundreds.
    let intervals = took.as_secs_f64() / 0.5;
    assert!(
        (during as f64) <= (intervals * 10.0 / 6.0).ceil(),
        "{during} requests in {took:?}"
    );
    assert_eq!(location(&d).as_deref(), Some("http://vault-a:8200/v1/x"));
}

#[test]
fn the_token_is_sent_from_the_environment_and_never_logged() {
    let consul = FakeConsul::serving(node("vault-a"));
    consul.require_token("s.TOPSECRET-token");
    let mut cmd = command(&["-vv", "-P", "0", "-p", "0.2", &consul.host_port()]);
    cmd.env("CONSUL_HTTP_TOKEN", "s.TOPSECRET-token");
    let d = Daemon::start_command(cmd);
    assert_eq!(location(&d).as_deref(), Some("http://vault-a:8200/v1/x"));
    assert!(eventually(SOON, || consul.request_count() >= 3));
    assert!(
        consul
            .tokens()
            .iter()
            .all(|t| t.as_deref() == Some("s.TOPSECRET-token"))
    );
    assert!(!d.log().contains("TOPSECRET"), "{}", d.log());
}

#[test]
fn the_token_file_is_reread_so_a_rotated_token_is_used() {
    let consul = FakeConsul::serving(node("vault-a"));
    let file = temp_dir().join("token");
    std::fs::write(&file, "first-token\n").unwrap();
    let mut cmd = command(&[
        "-P",
        "0",
        "-p",
        "0.2",
        "--consul-token-file",
        file.to_str().unwrap(),
        &consul.host_port(),
    ]);
    // The option wins over the variable.
    cmd.env("CONSUL_HTTP_TOKEN", "from-env");
    let d = Daemon::start_command(cmd);
    assert_eq!(consul.tokens()[0].as_deref(), Some("first-token"));
    std::fs::write(&file, "second-token").unwrap();
    consul.set(Answer::Json(node("vault-b")));
    assert!(eventually(SOON, || consul
        .tokens()
        .last()
        .unwrap()
        .as_deref()
        == Some("second-token")));
    // The answer to that query reaches the loop just after Consul saw it.
    assert!(eventually(SOON, || location(&d).as_deref()
        == Some("http://vault-b:8200/v1/x")));
}

fn make_fifo(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
}

/// Start with `file` as the token file: start-up must fail with exit 1
/// before asking Consul anything. Returns the log.
fn refused_token_file(file: &std::path::Path) -> String {
    let consul = FakeConsul::serving(node("vault-a"));
    let mut d = Daemon::spawn(&[
        "-P",
        "0",
        "--consul-token-file",
        file.to_str().unwrap(),
        &consul.host_port(),
    ]);
    let status = d.wait_exit(SOON);
    let log = d.log();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    assert_eq!(consul.request_count(), 0);
    log
}

#[test]
fn a_fifo_as_the_token_file_is_refused_at_start_up_not_waited_on() {
    let fifo = temp_dir().join("token-fifo");
    make_fifo(&fifo);
    let log = refused_token_file(&fifo);
    assert!(log.contains("not a regular file"), "{log}");
}

#[test]
fn a_token_file_replaced_by_a_fifo_fails_the_poll_without_blocking_the_poller() {
    let consul = FakeConsul::serving(node("vault-a"));
    let dir = temp_dir();
    let file = dir.join("token");
    put(&file, "first-token\n");
    let d = Daemon::start(&[
        "-P",
        "0",
        "-p",
        "0.2",
        "--consul-token-file",
        file.to_str().unwrap(),
        &consul.host_port(),
    ]);
    let fifo = dir.join("token-fifo");
    make_fifo(&fifo);
    std::fs::rename(&fifo, &file).unwrap();
    consul.set(Answer::Json(node("vault-b")));
    let line = d
        .wait_for_log("Exception encountered when polling active node", SOON)
        .unwrap_or_else(|| panic!("the poller is stuck on the FIFO:\n{}", d.log()));
    assert!(line.contains("not a regular file"), "{line}");
    // The poller keeps trying (it was not stuck): a second failure is logged.
    assert!(
        d.wait_for_nth_log("not a regular file", 2, SOON).is_some(),
        "{}",
        d.log()
    );
    put(&file, "second-token");
    assert!(eventually(SOON, || location(&d).as_deref()
        == Some("http://vault-b:8200/v1/x")));
}

#[test]
fn an_oversized_token_file_is_refused() {
    let file = temp_dir().join("token");
    put(&file, &"a".repeat(64 * 1024));
    let log = refused_token_file(&file);
    assert!(log.contains("larger than"), "{log}");
    assert!(!log.contains("aaaa"), "the token is never logged: {log}");
}

#[test]
fn an_encrypted_consul_client_key_exits_1_saying_it_is_not_supported() {
    let pki = Pki::new();
    let leaf = pki.leaf();
    let consul = FakeConsul::start_tls(Answer::Json(node("vault-a")), leaf.server_config());
    let dir = temp_dir();
    let (ca, cert) = (dir.join("ca.pem"), dir.join("client.pem"));
    put(&ca, &pki.ca_pem());
    put(&cert, &leaf.cert_pem);
    for (name, text) in [
        ("pkcs8.key", ENCRYPTED_PKCS8_KEY),
        ("legacy.key", ENCRYPTED_LEGACY_KEY),
    ] {
        let key = dir.join(name);
        put(&key, text);
        let mut cmd = command(&["-P", "0", &format!("https://{}", consul.host_port())]);
        cmd.env("CONSUL_CACERT", &ca)
            .env("CONSUL_CLIENT_CERT", &cert)
            .env("CONSUL_CLIENT_KEY", &key);
        let mut d = Daemon::spawn_command(cmd);
        let status = d.wait_exit(SOON);
        let log = d.log();
        assert_eq!(status.and_then(|s| s.code()), Some(1), "{name}: {log}");
        assert!(
            log.contains(name) && log.contains("encrypted keys are not supported"),
            "{name}: {log}"
        );
    }
}

#[test]
fn default_deny_without_a_token_says_so() {
    let consul = FakeConsul::serving(node("vault-a"));
    consul.require_token("needed");
    let mut d = Daemon::spawn(&["-P", "0", &consul.host_port()]);
    assert_eq!(d.wait_exit(SOON).and_then(|s| s.code()), Some(3));
    assert!(
        d.log().contains("no Consul ACL token is configured"),
        "{}",
        d.log()
    );

    // At run time: health shows it.
    let consul = FakeConsul::serving(node("vault-a"));
    let d = Daemon::start(&["-P", "0", "-p", "0.2", &consul.host_port()]);
    consul.require_token("needed");
    consul.set(Answer::Json(node("vault-a")));
    assert!(eventually(SOON, || health(&d)["consul_warning"].is_string()));
    let warning = health(&d)["consul_warning"].as_str().unwrap().to_owned();
    assert!(warning.contains("CONSUL_HTTP_TOKEN"), "{warning}");
    assert!(
        d.wait_for_log("no Consul ACL token is configured", SOON)
            .is_some()
    );
}

#[test]
fn a_wrong_token_gets_a_clear_403_line_and_health() {
    let consul = FakeConsul::serving(node("vault-a"));
    let mut cmd = command(&["-P", "0", "-p", "0.2", &consul.host_port()]);
    cmd.env("CONSUL_HTTP_TOKEN", "s.BADTOKEN42");
    let d = Daemon::start_command(cmd);
    consul.require_token("right");
    consul.set(Answer::Json(node("vault-a")));
    let line = d
        .wait_for_log("Consul answered HTTP 403: ACL not found", SOON)
        .expect("403 logged");
    assert!(
        line.contains("Exception encountered when polling active node")
            && line.contains("ACL token"),
        "{line}"
    );
    assert!(eventually(SOON, || health(&d)["last_consul_error"]
        .as_str()
        .is_some_and(|e| e.contains("403"))));
    assert!(!d.log().contains("BADTOKEN42"), "{}", d.log());
}

#[test]
fn several_agents_fail_over_and_health_names_the_one_that_answered() {
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let consul = FakeConsul::serving(node("vault-a"));
    let agents = format!("{dead},{}", consul.host_port());
    let d = Daemon::start(&["-P", "0", "-p", "0.3", &agents]);
    assert_eq!(location(&d).as_deref(), Some("http://vault-a:8200/v1/x"));
    let h = health(&d);
    assert_eq!(h["consul_agent"], consul.host_port());
    assert_eq!(h["consul_host_port"], agents);
}

#[test]
fn service_datacenter_and_stale_shape_the_query() {
    let consul = FakeConsul::serving(node("vault-a"));
    let d = Daemon::start(&[
        "-P",
        "0",
        "--service",
        "vault-prod",
        "--dc",
        "eu-1",
        "--stale",
        &consul.host_port(),
    ]);
    let asked = consul.requests();
    assert!(
        asked[0].starts_with("GET /v1/health/service/vault-prod?passing&tag=active&dc=eu-1&stale "),
        "{asked:?}"
    );
    drop(d);
}

#[test]
fn consul_http_addr_replaces_the_positional() {
    let consul = FakeConsul::serving(node("vault-a"));
    let mut cmd = command(&["-P", "0"]);
    cmd.env("CONSUL_HTTP_ADDR", format!("http://{}", consul.host_port()));
    let d = Daemon::start_command(cmd);
    assert_eq!(location(&d).as_deref(), Some("http://vault-a:8200/v1/x"));
}

#[test]
fn https_agents_are_verified_against_the_consul_ca() {
    let pki = Pki::new();
    let consul = FakeConsul::start_tls(Answer::Json(node("vault-a")), pki.leaf().server_config());
    let dir = temp_dir();
    let ca = dir.join("consul-ca.pem");
    put(&ca, &pki.ca_pem());
    let url = format!("https://{}", consul.host_port());
    let d = Daemon::start(&["-P", "0", "--consul-ca", ca.to_str().unwrap(), &url]);
    assert_eq!(location(&d).as_deref(), Some("http://vault-a:8200/v1/x"));

    // CONSUL_CACERT works the same; a CA that did not sign the agent's
    // certificate is refused at start-up.
    let other = Pki::new();
    let wrong = dir.join("other-ca.pem");
    put(&wrong, &other.ca_pem());
    let mut cmd = command(&["-P", "0", &url]);
    cmd.env("CONSUL_CACERT", &wrong);
    let mut d = Daemon::spawn_command(cmd);
    assert_eq!(d.wait_exit(SOON).and_then(|s| s.code()), Some(1));
    assert!(
        d.log()
            .starts_with("ERROR: Could not poll Consul at https://"),
        "{}",
        d.log()
    );
}

#[test]
fn consul_tls_server_name_checks_the_certificate_against_that_name() {
    let pki = Pki::new();
    let consul = FakeConsul::start_tls(
        Answer::Json(node("vault-a")),
        pki.leaf_for(&["consul.example"]).server_config(),
    );
    let dir = temp_dir();
    let ca = dir.join("ca.pem");
    put(&ca, &pki.ca_pem());
    let mut cmd = command(&["-P", "0", &consul.host_port()]);
    cmd.env("CONSUL_HTTP_SSL", "true")
        .env("CONSUL_CACERT", &ca)
        .env("CONSUL_TLS_SERVER_NAME", "consul.example");
    let d = Daemon::start_command(cmd);
    assert_eq!(location(&d).as_deref(), Some("http://vault-a:8200/v1/x"));
}

/// Measurement, not a check: `cargo test --release --test redirector --
/// --ignored --nocapture measure_switch_time`.
#[test]
#[ignore]
fn measure_switch_time_over_100_changes() {
    let consul = FakeConsul::serving(node("vault-start"));
    let d = Daemon::start(&["-l", "-P", "0", "-p", "5", &consul.host_port()]);
    assert!(eventually(SOON, || consul
        .requests()
        .iter()
        .any(|r| r.contains("index="))));
    let mut samples = Vec::new();
    for i in 0..100 {
        let name = format!("vault-{i}");
        let want = format!("http://{name}:8200/v1/x");
        let asked = consul.request_count();
        let changed = Instant::now();
        consul.set(Answer::Json(node(&name)));
        // Ask without pause: `eventually` sleeps 10 ms between tries.
        while location(&d).as_deref() != Some(want.as_str()) {
            assert!(changed.elapsed() < SOON, "no switch to {want}");
        }
        samples.push(changed.elapsed());
        // As in a real cluster, the next change finds a blocking query waiting.
        assert!(eventually(SOON, || consul.request_count() > asked));
    }
    samples.sort();
    println!(
        "switch time over 100 changes: p50 {:?}, p99 {:?}, max {:?}",
        samples[49], samples[98], samples[99]
    );
}

/// Measurement: `... -- --ignored --nocapture measure_quiet_requests`.
#[test]
#[ignore]
fn measure_quiet_requests_per_minute() {
    let consul = FakeConsul::serving(node("vault-a"));
    let _d = Daemon::start(&["-l", "-P", "0", "-p", "5", &consul.host_port()]);
    let before = consul.request_count();
    std::thread::sleep(Duration::from_secs(60));
    println!(
        "Consul requests in 60 s with -p 5 and no change: {}",
        consul.request_count() - before
    );
}
