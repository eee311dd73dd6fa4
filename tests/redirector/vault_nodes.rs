//! `--vault-nodes`: the active node found by asking the Vault nodes
//! themselves (in-test fakes of three nodes), no Consul: status flips, a
//! hung node, a refused node, two nodes answering 200, TLS nodes, the
//! health JSON and the exit codes.

use crate::client::get;
use crate::daemon::{Daemon, SOON, command, eventually};
use crate::fake_vault::{FakeVault, Health};
use crate::pki::Pki;
use crate::tls::{put, temp_dir};
use std::time::{Duration, Instant};

fn location(d: &Daemon, target: &str) -> Option<String> {
    get(d.addr, target).header("Location").map(str::to_owned)
}

fn health(d: &Daemon) -> serde_json::Value {
    get(d.addr, "/vault-redirector-health").json()
}

fn list(nodes: &[&FakeVault]) -> String {
    nodes.iter().map(|n| n.url()).collect::<Vec<_>>().join(",")
}

fn start(poll: &str, nodes: &[&FakeVault]) -> Daemon {
    Daemon::start(&["-P", "0", "-p", poll, "--vault-nodes", &list(nodes)])
}

/// Node `i`'s entry of the health JSON's `vault_nodes`.
fn node_health(d: &Daemon, i: usize) -> serde_json::Value {
    health(d)["vault_nodes"][i].clone()
}

#[test]
fn the_location_follows_the_node_answering_200() {
    let (a, b, c) = (
        FakeVault::start(200),
        FakeVault::start(429),
        FakeVault::start(429),
    );
    let d = start("1", &[&a, &b, &c]);
    // The listed URL of the active node + the target exactly as received.
    let target = "/v1/secret/data/x%2Fy?version=2&list=true";
    assert_eq!(location(&d, target), Some(format!("{}{target}", a.url())));
    a.set_code(429);
    b.set_code(200);
    let want = format!("{}/v1/x", b.url());
    assert!(
        eventually(SOON, || location(&d, "/v1/x").as_deref()
            == Some(want.as_str())),
        "{}",
        d.log()
    );
    let (host_a, host_b) = (a.addr.to_string(), b.addr.to_string());
    assert!(
        d.log()
            .contains(&format!("Active vault node changed from {host_a} to "))
    );
    assert!(eventually(SOON, || d.count_log(&format!(
        "Active vault node changed from None to {host_b}"
    )) + d.count_log(&format!(
        "Active vault node changed from {host_a} to {host_b}"
    )) == 1));
    // Each node's change of state is logged once, however often it is probed.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        d.count_log(&format!(
            "Vault node {} is now standby (was active",
            a.url()
        )),
        1,
        "{}",
        d.log()
    );
    assert_eq!(
        d.count_log(&format!("Vault node {} is now active", b.url())),
        1
    );
    let json = health(&d);
    assert_eq!(json["active_vault"], host_b);
    assert_eq!(json["vault_nodes"][0]["status"], "standby");
    assert_eq!(json["vault_nodes"][1]["status"], "active");
}

#[test]
fn the_active_is_probed_often_and_the_others_once_per_interval() {
    let (a, b, c) = (
        FakeVault::start(200),
        FakeVault::start(429),
        FakeVault::start(429),
    );
    let d = start("2", &[&a, &b, &c]);
    let (a0, b0) = (a.requests(), b.requests());
    std::thread::sleep(Duration::from_secs(4));
    let (a1, b1) = (a.requests() - a0, b.requests() - b0);
    // 4 s at -p 2: the active about 8 times; a standby about twice (each
    // probe of a standby asks /v1/sys/health and /v1/sys/leader).
    assert!(a1 >= 6, "the active was probed {a1} times in 4 s");
    assert!(b1 <= 2 * 3, "a standby was asked {b1} times in 4 s");
    drop(d);
}

#[test]
fn a_hung_node_does_not_delay_the_answers_of_the_others() {
    let (a, b, c) = (
        FakeVault::start(200),
        FakeVault::start(429),
        FakeVault::start(429),
    );
    b.set(Health::Hang);
    // -p 10: each probe may take 5 s; the active is probed every 2.5 s.
    let d = start("10", &[&a, &b, &c]);
    a.set_code(503);
    c.set_code(200);
    let flipped = Instant::now();
    let want = format!("{}/v1/x", c.url());
    assert!(
        eventually(SOON, || location(&d, "/v1/x").as_deref()
            == Some(want.as_str())),
        "{}",
        d.log()
    );
    let took = flipped.elapsed();
    // The active's next probe is at most 2.5 s away; waiting for the hung
    // node's 5 s timeout would take longer.
    assert!(
        took < Duration::from_millis(4500),
        "switched after {took:?}"
    );
    assert_eq!(node_health(&d, 1)["status"], "unreachable");
    assert_eq!(node_health(&d, 0)["status"], "sealed");
    assert_eq!(node_health(&d, 0)["code"], 503);
}

#[test]
fn a_refused_node_is_unreachable_and_a_killed_active_is_replaced() {
    let (mut a, mut b, c) = (
        FakeVault::start(200),
        FakeVault::start(429),
        FakeVault::start(429),
    );
    b.refuse();
    let d = start("1", &[&a, &b, &c]);
    let node = node_health(&d, 1);
    assert_eq!(node["status"], "unreachable");
    assert!(node["error"].is_string(), "{node}");
    assert_eq!(node["code"], serde_json::Value::Null);
    assert_eq!(node_health(&d, 0)["code"], 200);
    assert!(node_health(&d, 0)["last_seen"].is_string());
    // The active is killed: refused at once; the others still answer, so
    // clients get 503 rather than the dead node, then the new active.
    a.refuse();
    assert!(
        eventually(SOON, || get(d.addr, "/v1/x").code == 503),
        "{}",
        d.log()
    );
    c.set_code(200);
    let want = format!("{}/v1/x", c.url());
    assert!(eventually(SOON, || location(&d, "/v1/x").as_deref()
        == Some(want.as_str())));
    b.listen_again();
    assert!(eventually(SOON, || node_health(&d, 1)["status"] == "standby"));
    a.listen_again();
}

#[test]
fn two_nodes_answering_200_the_one_the_others_name_wins_without_flipping() {
    let (a, b, c) = (
        FakeVault::start(200),
        FakeVault::start(200),
        FakeVault::start(429),
    );
    c.name_leader(&b.url());
    let d = start("1", &[&a, &b, &c]);
    let want = format!("{}/v1/x", b.url());
    assert_eq!(
        location(&d, "/v1/x").as_deref(),
        Some(want.as_str()),
        "{}",
        d.log()
    );
    // Several rounds later: still the same node, and one warning.
    let rounds_later = Instant::now() + Duration::from_secs(3);
    while Instant::now() < rounds_later {
        assert_eq!(location(&d, "/v1/x").as_deref(), Some(want.as_str()));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        d.count_log("Several Vault nodes answer as active"),
        1,
        "{}",
        d.log()
    );
    assert_eq!(d.count_log("Active vault node changed"), 0, "{}", d.log());
    // The old active notices: no change for clients, no new warning.
    a.set_code(429);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(location(&d, "/v1/x").as_deref(), Some(want.as_str()));
    assert_eq!(d.count_log("Several Vault nodes answer as active"), 1);
}

#[test]
fn every_node_unreachable_keeps_the_last_active_for_two_intervals() {
    let (mut a, mut b) = (FakeVault::start(200), FakeVault::start(429));
    let d = start("1", &[&a, &b]);
    let cut = Instant::now();
    a.refuse();
    b.refuse();
    assert!(
        d.wait_for_log(
            "Exception encountered when polling active node: no Vault node answers",
            SOON
        )
        .is_some()
    );
    assert!(
        d.wait_for_log("Active vault node changed from", SOON)
            .is_some(),
        "{}",
        d.log()
    );
    let dropped = cut.elapsed();
    assert!(
        dropped >= Duration::from_millis(1900),
        "dropped after {dropped:?}"
    );
    let answer = get(d.addr, "/vault-redirector-health");
    assert_eq!(answer.code, 503);
    assert!(answer.json()["last_vault_error"].is_string());
    // Back: served again.
    a.listen_again();
    b.listen_again();
    let want = format!("{}/v1/x", a.url());
    assert!(eventually(SOON, || location(&d, "/v1/x").as_deref()
        == Some(want.as_str())));
}

#[test]
fn the_health_json_keeps_the_original_keys_and_lists_every_node() {
    let (a, b, c) = (
        FakeVault::start(429),
        FakeVault::start(200),
        FakeVault::start(503),
    );
    let d = start("5", &[&a, &b, &c]);
    let answer = get(d.addr, "/vault-redirector-health");
    assert_eq!(answer.code, 200);
    let json = answer.json();
    for key in [
        "healthy",
        "application",
        "source",
        "version",
        "active_vault",
    ] {
        assert!(!json[key].is_null(), "{key}: {json}");
    }
    assert_eq!(json["consul_host_port"], serde_json::Value::Null);
    assert_eq!(json["active_vault"], b.addr.to_string());
    let statuses: Vec<&str> = (0..3)
        .map(|i| json["vault_nodes"][i]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["standby", "active", "sealed"]);
    assert_eq!(json["vault_nodes"][2]["code"], 503);
    assert_eq!(json["vault_nodes"][0]["url"], a.url());
}

#[test]
fn tls_nodes_are_verified_against_the_vault_ca() {
    let pki = Pki::new();
    let leaf = pki.leaf();
    let (a, b) = (
        FakeVault::start_tls(200, leaf.server_config()),
        FakeVault::start_tls(429, leaf.server_config()),
    );
    let dir = temp_dir();
    let ca = dir.join("ca.pem");
    put(&ca, &pki.ca_pem());
    let nodes = list(&[&a, &b]);
    let d = Daemon::start(&[
        "-P",
        "0",
        "--vault-ca",
        ca.to_str().unwrap(),
        "--vault-nodes",
        &nodes,
    ]);
    assert_eq!(location(&d, "/v1/x"), Some(format!("{}/v1/x", a.url())));
    assert!(a.url().starts_with("https://"));
    drop(d);
    // VAULT_CACERT works the same.
    let mut cmd = command(&["-P", "0", "--vault-nodes", &nodes]);
    cmd.env("VAULT_CACERT", &ca);
    drop(Daemon::start_command(cmd));
    // A CA that did not sign the nodes' certificates: nobody answers, exit 1.
    let wrong = dir.join("wrong.pem");
    put(&wrong, &Pki::new().ca_pem());
    let mut cmd = command(&["-P", "0", "--vault-nodes", &nodes]);
    cmd.env("VAULT_CACERT", &wrong);
    let mut refused = Daemon::spawn_command(cmd);
    assert_eq!(refused.wait_exit(SOON).and_then(|s| s.code()), Some(1));
    assert!(
        refused.log().contains("Could not poll the Vault nodes"),
        "{}",
        refused.log()
    );
    // VAULT_SKIP_VERIFY=true: accepted without the CA.
    let mut cmd = command(&["-P", "0", "--vault-nodes", &nodes]);
    cmd.env("VAULT_CACERT", &wrong)
        .env("VAULT_SKIP_VERIFY", "true");
    drop(Daemon::start_command(cmd));
}

/// Start against `nodes` with Vault's TLS variables `env`; the exit code
/// if it does not come up (no node answers: exit 1), else None.
fn tls_start(nodes: &str, env: &[(&str, &std::path::Path)]) -> Option<i32> {
    let mut cmd = command(&["-P", "0", "--vault-nodes", nodes]);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let mut d = Daemon::spawn_command(cmd);
    if d.wait_for_log("listening on ", SOON).is_some() {
        return None;
    }
    d.wait_exit(SOON).and_then(|s| s.code())
}

#[test]
fn vault_capath_client_certificates_and_the_server_name_are_used() {
    let pki = Pki::new();
    let dir = temp_dir();
    let cas = dir.join("cas");
    std::fs::create_dir(&cas).unwrap();
    put(&cas.join("ca.pem"), &pki.ca_pem());
    let empty = dir.join("no-cas");
    std::fs::create_dir(&empty).unwrap();
    // VAULT_CAPATH: a directory of CA certificates.
    let node = FakeVault::start_tls(200, pki.leaf().server_config());
    assert_eq!(tls_start(&node.url(), &[("VAULT_CAPATH", &cas)]), None);
    assert_eq!(tls_start(&node.url(), &[("VAULT_CAPATH", &empty)]), Some(1));
    // A node that verifies its clients: only with VAULT_CLIENT_CERT/KEY.
    let leaf = pki.leaf();
    let verifying = FakeVault::start_tls(200, leaf.server_config_requiring_clients(&pki));
    let (cert, key) = (dir.join("client.pem"), dir.join("client.key"));
    put(&cert, &leaf.cert_pem);
    put(&key, &leaf.key_pem);
    let ca: &[(&str, &std::path::Path)] = &[("VAULT_CAPATH", &cas)];
    assert_eq!(tls_start(&verifying.url(), ca), Some(1));
    let with_client = [
        ("VAULT_CAPATH", cas.as_path()),
        ("VAULT_CLIENT_CERT", cert.as_path()),
        ("VAULT_CLIENT_KEY", key.as_path()),
    ];
    assert_eq!(tls_start(&verifying.url(), &with_client), None);
    // A certificate for another name: only with VAULT_TLS_SERVER_NAME.
    let named = FakeVault::start_tls(200, pki.leaf_for(&["vault.example"]).server_config());
    assert_eq!(tls_start(&named.url(), ca), Some(1));
    let mut cmd = command(&["-P", "0", "--vault-nodes", &named.url()]);
    cmd.env("VAULT_CAPATH", &cas)
        .env("VAULT_TLS_SERVER_NAME", "vault.example");
    let d = Daemon::start_command(cmd);
    assert_eq!(location(&d, "/v1/x"), Some(format!("{}/v1/x", named.url())));
}

#[test]
fn exit_codes_without_consul() {
    let (a, b) = (FakeVault::start(429), FakeVault::start(503));
    // Nodes answer, none is active: exit 3, nothing listens.
    let mut d = Daemon::spawn(&["-P", "0", "--vault-nodes", &list(&[&a, &b])]);
    assert_eq!(
        d.wait_exit(SOON).and_then(|s| s.code()),
        Some(3),
        "{}",
        d.log()
    );
    assert!(d.log().contains("Could not get active vault node"));
    // No node answers: exit 1.
    let mut down = FakeVault::start(200);
    down.refuse();
    let mut d = Daemon::spawn(&["-P", "0", "--vault-nodes", &down.url()]);
    assert_eq!(
        d.wait_exit(SOON).and_then(|s| s.code()),
        Some(1),
        "{}",
        d.log()
    );
    // Bad command lines: exit 2 with one error line.
    for args in [
        &["--vault-nodes", "http://127.0.0.1:1", "127.0.0.1:8500"][..],
        &["-S", "--vault-nodes", "http://127.0.0.1:1"][..],
        &["-I", "--vault-nodes", "http://127.0.0.1:1"][..],
        &["--vault-nodes", "127.0.0.1:8200"][..],
        &[][..],
    ] {
        let out = command(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.lines().filter(|l| l.contains("error:")).count(),
            1,
            "{err}"
        );
    }
}
