//! The TLS listener: PEM loading as the original (pooled files, leaf found
//! by its key), the chain served, every load error, HTTP over TLS behaving
//! as plain HTTP, garbage on the TLS port, and reloads.

use crate::daemon::{Daemon, SOON};
use crate::fake_consul::{FakeConsul, with_vault_a as consul};
use crate::pki::{ENCRYPTED_LEGACY_KEY, ENCRYPTED_PKCS8_KEY, Leaf, Pki};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A fresh directory for one test's PEM files.
pub fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "vr-tls-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Replace a file atomically, so a reload never sees half of it.
pub fn put(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The leaf's chain and key, written to `c.pem` and `k.pem` in a fresh directory.
fn pair_files(leaf: &Leaf) -> (PathBuf, PathBuf) {
    let dir = temp_dir();
    let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
    put(&cert, &leaf.cert_pem);
    put(&key, &leaf.key_pem);
    (cert, key)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Tls {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(SOON)).unwrap();
    let conn = ClientConnection::new(
        Arc::clone(config),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("handshake");
    }
    tls
}

/// Read one response with a Content-Length-framed body (never HEAD here).
fn response(tls: &mut Tls) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            tls.read(&mut byte).expect("read"),
            1,
            "EOF in a head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    tls.read_exact(&mut body).unwrap();
    head + &String::from_utf8(body).unwrap()
}

fn served_leaf(tls: &Tls) -> CertificateDer<'static> {
    tls.conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

fn start_tls(consul: &FakeConsul, cert: &Path, key: &Path, extra: &[&str]) -> Daemon {
    let (cert, key, hp) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        consul.host_port(),
    );
    let mut args = vec!["-P", "0", "--bind", "127.0.0.1", "-c", cert, "-k", key];
    args.extend_from_slice(extra);
    args.push(&hp);
    Daemon::start(&args)
}

#[test]
fn https_serves_the_chain_and_answers_like_http() {
    let pki = Pki::new();
    let leaf = pki.leaf();
    let (cert, key) = pair_files(&leaf);
    let c = consul();
    let d = start_tls(&c, &cert, &key, &["-S"]);
    assert!(
        d.log().contains("Setting TCP TLS listener on port"),
        "{}",
        d.log()
    );
    assert!(!d.log().contains("redirecting to http://"), "{}", d.log());

    let config = pki.client_config();
    let mut tls = connect(d.addr, &config);
    // Verification against the CA alone proves the intermediate was sent.
    assert_eq!(tls.conn.peer_certificates().unwrap().len(), 2);
    assert_eq!(served_leaf(&tls), leaf.der);
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    // Keep-alive and pipelining, as over plain HTTP.
    tls.write_all(
        b"GET /v1/a?x=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /vault-redirector-health HTTP/1.1\r\n\r\n",
    )
    .unwrap();
    let first = response(&mut tls);
    assert!(
        first.starts_with("HTTP/1.1 307 Temporary Redirect\r\n"),
        "{first}"
    );
    assert!(
        first.contains("\r\nLocation: https://vault-a:8200/v1/a?x=1\r\n"),
        "{first}"
    );
    let health = response(&mut tls);
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(
        health.contains("\"active_vault\": \"vault-a:8200\""),
        "{health}"
    );
    tls.write_all(b"GET /v1/b HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let last = response(&mut tls);
    assert!(
        last.contains("Location: https://vault-a:8200/v1/b\r\n"),
        "{last}"
    );
    // The close comes with close_notify: a clean end of stream.
    let mut rest = Vec::new();
    assert_eq!(tls.read_to_end(&mut rest).expect("clean close_notify"), 0);
}

#[test]
fn leaf_is_found_by_its_key_wherever_it_stands() {
    let pki = Pki::new();
    let leaf = pki.leaf();
    let dir = temp_dir();
    // Intermediate first, leaf last, and the key in the same file too.
    let both = dir.join("both.pem");
    put(
        &both,
        &(pki.intermediate_pem() + &leaf.key_pem + &leaf.leaf_pem),
    );
    let c = consul();
    let d = start_tls(&c, &both, &both, &["-S"]);
    let tls = connect(d.addr, &pki.client_config());
    assert_eq!(served_leaf(&tls), leaf.der);
    assert_eq!(tls.conn.peer_certificates().unwrap().len(), 2);
}

#[test]
fn tls_without_https_redirects_warns() {
    let pki = Pki::new();
    let leaf = pki.leaf();
    let (cert, key) = pair_files(&leaf);
    let c = consul();
    let d = start_tls(&c, &cert, &key, &[]);
    // The warning follows the listening line that `start_tls` waited for.
    assert!(
        d.wait_for_log(
            "Listening with TLS but redirecting to http:// (no -S)",
            SOON
        )
        .is_some(),
        "{}",
        d.log()
    );
}

#[test]
fn bad_certificate_files_exit_1_with_one_line_naming_the_file() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf(), pki.leaf());
    let dir = temp_dir();
    let p = |name: &str, text: &str| {
        let path = dir.join(name);
        put(&path, text);
        path
    };
    let cert_a = p("a.pem", &a.cert_pem);
    let key_a = p("a.key", &a.key_pem);
    let key_b = p("b.key", &b.key_pem);
    let two_keys = p("two.key", &(a.key_pem.clone() + &b.key_pem));
    let missing = dir.join("missing.pem");
    let c = consul();
    let cases: [(&Path, &Path, &str); 5] = [
        (&missing, &key_a, "missing.pem: cannot read"),
        (&cert_a, &cert_a, "no private key found"),
        (&cert_a, &two_keys, "2 private keys found"),
        (&cert_a, &key_b, "no certificate matches the private key"),
        (&key_a, &key_a, "no certificate found"),
    ];
    for (cert, key, text) in cases {
        let (cert, key, hp) = (cert.to_str().unwrap(), key.to_str().unwrap(), c.host_port());
        let mut d = Daemon::spawn(&["-P", "0", "-c", cert, "-k", key, &hp]);
        let status = d.wait_exit(SOON).expect("exits");
        assert_eq!(status.code(), Some(1), "{text}: {}", d.log());
        let log = d.log();
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(
            log.starts_with("ERROR: TLS: ") && log.contains(text),
            "{text}: {log}"
        );
        assert_eq!(
            c.request_count(),
            0,
            "nothing happens before the certificate is good"
        );
    }
}

#[test]
fn encrypted_listener_keys_exit_1_saying_they_are_not_supported() {
    let leaf = Pki::new().leaf();
    let dir = temp_dir();
    let cert = dir.join("c.pem");
    put(&cert, &leaf.cert_pem);
    let c = consul();
    for (name, text) in [
        ("pkcs8.key", ENCRYPTED_PKCS8_KEY),
        ("legacy.key", ENCRYPTED_LEGACY_KEY),
    ] {
        let key = dir.join(name);
        put(&key, text);
        let (cert, key, hp) = (cert.to_str().unwrap(), key.to_str().unwrap(), c.host_port());
        let mut d = Daemon::spawn(&["-P", "0", "-c", cert, "-k", key, &hp]);
        let status = d.wait_exit(SOON).expect("exits");
        let log = d.log();
        assert_eq!(status.code(), Some(1), "{name}: {log}");
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(
            log.starts_with("ERROR: TLS: ")
                && log.contains(name)
                && log.contains("encrypted keys are not supported"),
            "{name}: {log}"
        );
    }
}

#[test]
fn plain_http_or_garbage_on_the_tls_port_is_closed_without_disturbing_others() {
    let pki = Pki::new();
    let leaf = pki.leaf();
    let (cert, key) = pair_files(&leaf);
    let c = consul();
    // A 60 s head timeout: "closed at once" must not be mistaken for the
    // head deadline, which leaves room for a generous bound below.
    let d = start_tls(&c, &cert, &key, &["-S", "--head-timeout", "60"]);
    let config = pki.client_config();
    let mut good = connect(d.addr, &config);
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"\x00\x01\x02garbage\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(SOON)).unwrap();
        s.write_all(junk).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 256];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Err(e) => break e.kind() == ErrorKind::ConnectionReset,
                // A TLS alert may come first; no HTTP ever does.
                Ok(n) => assert!(!buf[..n].starts_with(b"HTTP/"), "HTTP over the TLS port"),
            }
        };
        // Closed by the server (not our read timeout), and long before the
        // 60 s head deadline: SOON is generous for "at once" on a loaded
        // or emulated machine.
        assert!(closed, "still open after {:?}", started.elapsed());
        assert!(started.elapsed() < SOON, "{:?}", started.elapsed());
    }
    // A reset in the middle of a handshake is a quiet close too.
    drop(TcpStream::connect(d.addr).unwrap());
    good.write_all(b"GET /v1/still HTTP/1.1\r\n\r\n").unwrap();
    assert!(response(&mut good).contains("Location: https://vault-a:8200/v1/still"));
    assert_eq!(d.count_log("ERROR"), 0, "{}", d.log());
}

#[test]
fn sighup_and_changed_files_reload_the_pair_without_dropping_connections() {
    let pki = Pki::new();
    let (first, second, third) = (pki.leaf(), pki.leaf(), pki.leaf());
    let (cert, key) = pair_files(&first);
    let c = consul();
    let d = start_tls(&c, &cert, &key, &["-S"]);
    let config = pki.client_config();
    let mut old = connect(d.addr, &config);
    assert_eq!(served_leaf(&old), first.der);

    // SIGHUP: new connections get the new pair, the open one keeps working.
    put(&cert, &second.cert_pem);
    put(&key, &second.key_pem);
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_for_log("Reloaded the TLS certificate and key after SIGHUP", SOON)
            .is_some(),
        "{}",
        d.log()
    );
    assert_eq!(served_leaf(&connect(d.addr, &config)), second.der);
    old.write_all(b"GET /v1/old HTTP/1.1\r\n\r\n").unwrap();
    assert!(response(&mut old).contains("Location: https://vault-a:8200/v1/old"));

    // A broken pair (key of another certificate) is refused; the good one stays.
    put(&key, &third.key_pem);
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_for_log("Keeping the TLS certificate in service", SOON)
            .is_some(),
        "{}",
        d.log()
    );
    assert_eq!(served_leaf(&connect(d.addr, &config)), second.der);

    // Fixing the files is noticed without a signal.
    put(&cert, &third.cert_pem);
    assert!(
        d.wait_for_log(
            "Reloaded the TLS certificate and key after a changed file",
            Duration::from_secs(15)
        )
        .is_some(),
        "{}",
        d.log()
    );
    assert_eq!(served_leaf(&connect(d.addr, &config)), third.der);
}

#[test]
fn a_stalled_handshake_is_closed_at_the_head_deadline() {
    let pki = Pki::new();
    let leaf = pki.leaf();
    let (cert, key) = pair_files(&leaf);
    let c = consul();
    let d = start_tls(&c, &cert, &key, &["-S", "--head-timeout", "0.5"]);
    // Timed from before connecting: the deadline runs from the accept, so
    // 0.5 s is an exact lower bound.
    let started = Instant::now();
    let mut s = TcpStream::connect(d.addr).unwrap();
    // The start of a ClientHello record, and then nothing.
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    let closed = crate::client::closed_within(&mut s, SOON);
    let took = started.elapsed();
    // The upper bound is the read timeout, SOON (20 head timeouts): a
    // stalled handshake without a deadline is never closed.
    assert!(closed, "still open after {took:?}");
    assert!(took >= Duration::from_millis(500), "{took:?}");
}

#[test]
fn sessions_resume_unless_turned_off() {
    use rustls::HandshakeKind;
    let pki = Pki::new();
    let leaf = pki.leaf();
    let (cert, key) = pair_files(&leaf);
    let c = consul();
    for (extra, second) in [
        (&["-S"][..], HandshakeKind::Resumed),
        (&["-S", "--no-tls-resumption"][..], HandshakeKind::Full),
    ] {
        let d = start_tls(&c, &cert, &key, extra);
        // One client config: it keeps the session (ticket) between connections.
        let config = pki.client_config();
        let mut first = connect(d.addr, &config);
        assert_eq!(first.conn.handshake_kind(), Some(HandshakeKind::Full));
        // TLS 1.3 tickets arrive after the handshake: a request fetches them.
        first.write_all(b"GET /v1/a HTTP/1.1\r\n\r\n").unwrap();
        let _ = response(&mut first);
        let again = connect(d.addr, &config);
        assert_eq!(again.conn.handshake_kind(), Some(second), "{extra:?}");
    }
}
