//! What clients get: the 307, the health JSON, 503 without an active node,
//! 400/431 for what cannot be redirected, keep-alive, pipelining, bodies.

use crate::client::{Client, get, request};
use crate::daemon::Daemon;
use crate::fake_consul::{FakeConsul, active_node, fixture};

const SERVER: &str = concat!("vault-redirector/", env!("CARGO_PKG_VERSION"));

fn daemon(extra: &[&str]) -> (FakeConsul, Daemon) {
    let consul = FakeConsul::serving(active_node("vault-b", "10.0.0.2", 8200));
    let mut args = vec!["-P", "0"];
    args.extend_from_slice(extra);
    let hp = consul.host_port();
    args.push(&hp);
    let d = Daemon::start(&args);
    (consul, d)
}

#[test]
fn redirect_is_byte_exact_and_keeps_the_target_untouched() {
    let (_c, d) = daemon(&[]);
    let r = get(d.addr, "/v1/secret/data/a%2Fb?version=2&list=true");
    assert_eq!(
        String::from_utf8(r.raw).unwrap(),
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nServer: {SERVER}\r\n\
             Location: http://vault-b:8200/v1/secret/data/a%2Fb?version=2&list=true\r\n\
             Content-Type: text/html; charset=UTF-8\r\nContent-Length: 0\r\n\r\n"
        )
    );
}

#[test]
fn ip_and_https_flags_shape_the_location() {
    let (_c, d) = daemon(&["-SI"]);
    assert_eq!(
        get(d.addr, "/v1/x").header("Location"),
        Some("https://10.0.0.2:8200/v1/x")
    );
}

#[test]
fn every_method_is_redirected() {
    let (_c, d) = daemon(&[]);
    for method in [
        "GET", "PUT", "POST", "DELETE", "LIST", "PATCH", "OPTIONS", "list", "FROB",
    ] {
        let r = request(
            d.addr,
            &format!("{method} /v1/kv/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        );
        assert_eq!(r.code, 307, "{method}");
        assert_eq!(r.header("Location"), Some("http://vault-b:8200/v1/kv/"));
    }
    let r = request(d.addr, "HEAD /v1/kv HTTP/1.1\r\n\r\n");
    assert_eq!(r.code, 307);
    assert!(r.body.is_empty());
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let (_c, d) = daemon(&[]);
    let mut c = Client::connect(d.addr);
    for i in 0..5 {
        c.send(format!("GET /v1/n{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let r = c.response(false);
        assert_eq!(
            r.header("Location"),
            Some(format!("http://vault-b:8200/v1/n{i}").as_str())
        );
        assert_eq!(r.header("Connection"), None);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_c, d) = daemon(&[]);
    let mut c = Client::connect(d.addr);
    let mut batch = String::new();
    for i in 0..20 {
        batch.push_str(&format!("GET /v1/p{i} HTTP/1.1\r\nHost: x\r\n\r\n"));
    }
    batch.push_str("GET /vault-redirector-health HTTP/1.1\r\n\r\nHEAD /v1/h HTTP/1.1\r\n\r\n");
    c.send(batch.as_bytes());
    for i in 0..20 {
        let r = c.response(false);
        assert_eq!(
            r.header("Location"),
            Some(format!("http://vault-b:8200/v1/p{i}").as_str())
        );
    }
    assert_eq!(c.response(false).code, 200);
    assert_eq!(
        c.response(true).header("Location"),
        Some("http://vault-b:8200/v1/h")
    );
}

#[test]
fn request_split_into_single_bytes_still_gets_the_redirect() {
    let (_c, d) = daemon(&[]);
    let mut c = Client::connect(d.addr);
    for b in b"GET /v1/slow?x=1 HTTP/1.1\r\nHost: x\r\nX-Vault-Token: s.abc\r\n\r\n" {
        c.send(&[*b]);
    }
    assert_eq!(
        c.response(false).header("Location"),
        Some("http://vault-b:8200/v1/slow?x=1")
    );
}

#[test]
fn request_bodies_are_skipped_by_content_length() {
    let (_c, d) = daemon(&[]);
    let mut c = Client::connect(d.addr);
    let body = "{\"data\":{\"GET /v1/evil HTTP/1.1\":1}}";
    c.send(
        format!(
            "PUT /v1/kv/a HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let first = c.response(false);
    assert_eq!(
        first.header("Location"),
        Some("http://vault-b:8200/v1/kv/a")
    );
    // The body arrives after the answer, in two pieces, with the next request.
    c.send(&body.as_bytes()[..10]);
    c.send(format!("{}GET /v1/after HTTP/1.1\r\n\r\n", &body[10..]).as_bytes());
    assert_eq!(
        c.response(false).header("Location"),
        Some("http://vault-b:8200/v1/after")
    );
}

#[test]
fn http10_is_answered_as_http10_and_closed() {
    let (_c, d) = daemon(&[]);
    let mut c = Client::connect(d.addr);
    c.send(b"GET /v1/old HTTP/1.0\r\n\r\n");
    let r = c.response(false);
    assert!(
        r.status_line.starts_with("HTTP/1.0 307 "),
        "{}",
        r.status_line
    );
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed());
}

#[test]
fn connection_close_is_honoured() {
    let (_c, d) = daemon(&[]);
    let mut c = Client::connect(d.addr);
    c.send(b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.header("Location"), Some("http://vault-b:8200/a"));
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed(), "nothing after a Connection: close answer");
}

#[test]
fn chunked_and_expect_continue_bodies_are_answered_then_closed() {
    let (_c, d) = daemon(&[]);
    let mut c = Client::connect(d.addr);
    c.send(b"POST /v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    let r = c.response(false);
    assert_eq!((r.code, r.header("Connection")), (307, Some("close")));
    assert!(c.closed());

    let mut c = Client::connect(d.addr);
    c.send(b"PUT /v1/y HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n");
    let r = c.response(false);
    assert_eq!(
        (r.code, r.header("Location")),
        (307, Some("http://vault-b:8200/v1/y"))
    );
    assert!(c.closed());
}

#[test]
fn targets_that_are_not_paths_get_400_and_close() {
    let (_c, d) = daemon(&[]);
    for target in ["http://evil.example/x", "*", "evil.example:443", "v1/x"] {
        let mut c = Client::connect(d.addr);
        c.send(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let r = c.response(false);
        assert_eq!(r.code, 400, "{target}");
        assert_eq!(r.header("Location"), None);
        assert!(c.closed(), "{target}");
    }
}

#[test]
fn malformed_requests_get_400_and_close() {
    let (_c, d) = daemon(&[]);
    for raw in [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -3\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET / SMTP/1.0\r\n\r\n",
    ] {
        let mut c = Client::connect(d.addr);
        c.send(raw);
        let r = c.response(false);
        assert_eq!(r.code, 400, "{:?}", String::from_utf8_lossy(raw));
        assert_eq!(r.header("Connection"), Some("close"));
        assert!(c.closed());
    }
}

#[test]
fn oversized_heads_get_431_and_close() {
    let (_c, d) = daemon(&[]);
    let mut c = Client::connect(d.addr);
    c.send(format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000)).as_bytes());
    let r = c.response(false);
    assert_eq!(r.code, 431);
    assert!(c.closed());

    let mut c = Client::connect(d.addr);
    let many: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
    c.send(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes());
    assert_eq!(c.response(false).code, 431);
    assert!(c.closed());
}

#[test]
fn health_has_the_original_keys_in_order() {
    let (c, d) = daemon(&[]);
    let r = get(d.addr, "/vault-redirector-health");
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let text = r.body_text();
    let keys = [
        "\"healthy\": true",
        "\"application\": \"vault-redirector\"",
        "\"source\": ",
        &format!("\"version\": \"{}\"", env!("CARGO_PKG_VERSION")),
        &format!("\"consul_host_port\": \"{}\"", c.host_port()),
        "\"active_vault\": \"vault-b:8200\"",
        "\"last_consul_poll\": \"",
    ];
    let mut at = 0;
    for key in keys {
        let found = text[at..]
            .find(key)
            .unwrap_or_else(|| panic!("{key} after {at} in {text}"));
        at += found + key.len();
    }
    let json = r.json();
    let poll = json["last_consul_poll"].as_str().unwrap();
    assert_eq!(poll.len(), "YYYY-MM-DDTHH:MM:SS.ffffff".len(), "{poll}");
    assert_eq!(json["last_consul_error"], serde_json::Value::Null);

    let head = request(d.addr, "HEAD /vault-redirector-health HTTP/1.1\r\n\r\n");
    assert_eq!(head.code, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        request(d.addr, "POST /vault-redirector-health HTTP/1.1\r\n\r\n").code,
        200
    );
}

#[test]
fn only_the_exact_health_path_is_health() {
    let (_c, d) = daemon(&[]);
    for target in [
        "/vault-redirector-health?x=1",
        "/Vault-Redirector-Health",
        "/vault-redirector-health/",
    ] {
        let r = get(d.addr, target);
        assert_eq!(r.code, 307, "{target}");
        assert_eq!(
            r.header("Location"),
            Some(format!("http://vault-b:8200{target}").as_str())
        );
    }
}

#[test]
fn crashed_active_node_still_tagged_active_is_never_the_target() {
    // killed_tag_active.json: the SIGKILLed node keeps its `active` tag with
    // a critical check and is listed first; the new active is 8220.
    let consul = FakeConsul::serving(fixture("killed_tag_active.json"));
    let d = Daemon::start(&["-I", "-P", "0", &consul.host_port()]);
    assert_eq!(
        get(d.addr, "/v1/x").header("Location"),
        Some("http://127.0.0.1:8220/v1/x")
    );
    let asked = consul.requests();
    assert!(asked[0].contains("/v1/health/service/vault?"), "{asked:?}");
    assert!(
        asked[0].contains("passing") && asked[0].contains("tag=active"),
        "{asked:?}"
    );
}
