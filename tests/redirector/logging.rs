//! Logging cannot hang or kill the daemon (stderr a pipe nobody reads, or
//! a reader gone), clients cannot drive its volume at the default level,
//! and control characters from Consul or clients reach the log escaped.

use crate::client::{Client, get};
use crate::daemon::{Daemon, SOON, command, eventually};
use crate::fake_consul::{Answer, FakeConsul, active_node};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStderr, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound for a health check: a loop blocked in a log write never answers,
/// so any finite bound catches it; SOON leaves room for a loaded 2-core
/// machine and for emulation (10-20x slower).
const PROMPT: Duration = SOON;
/// A target as large as the probe used.
const LONG_TARGET_BYTES: usize = 8 * 1024;

/// The daemon with its stderr a pipe that the test reads only up to the
/// listening line, then leaves alone (or closes).
struct UnreadDaemon {
    child: Child,
    addr: SocketAddr,
    stderr: Option<BufReader<ChildStderr>>,
}

impl UnreadDaemon {
    fn start(args: &[&str]) -> UnreadDaemon {
        let mut child = command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vault-redirector");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let addr = loop {
            let mut line = String::new();
            // The daemon prints the line at once or exits (EOF).
            let n = stderr.read_line(&mut line).expect("read stderr");
            assert!(n > 0, "daemon exited before listening");
            if let Some(addr) = line.trim_end().rsplit("listening on ").next() {
                if line.contains("listening on ") {
                    let mut addr: SocketAddr = addr.trim_end_matches(')').parse().unwrap();
                    addr.set_ip("127.0.0.1".parse().unwrap());
                    break addr;
                }
            }
        };
        UnreadDaemon {
            child,
            addr,
            stderr: Some(stderr),
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Start reading stderr again; returns the lines as they come.
    fn resume_reading(&mut self) -> Arc<Mutex<Vec<String>>> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let stderr = self.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        lines
    }
}

impl Drop for UnreadDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn timed_health(addr: SocketAddr) -> (u16, Duration) {
    let start = Instant::now();
    let code = get(addr, "/vault-redirector-health").code;
    (code, start.elapsed())
}

#[test]
fn a_stderr_nobody_reads_does_not_block_the_loop() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    // -v: a log line per request, the most a client can make us write.
    let mut d = UnreadDaemon::start(&["-v", "-P", "0", "-p", "0.2", &consul.host_port()]);
    consul.set(Answer::Json(b"[]".to_vec()));
    assert!(eventually(SOON, || get(d.addr, "/v1/x").code == 503));

    flood_with_503s(d.addr);
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let (code, took) = timed_health(d.addr);
        assert_eq!(code, 503);
        assert!(took < PROMPT, "health check took {took:?}");
        slowest = slowest.max(took);
    }
    eprintln!("slowest of 20 health checks after the flood: {slowest:?}");
    // Consul comes back: the loop is not stuck, the redirect follows.
    consul.set(Answer::Json(active_node("vault-b", "10.0.0.2", 8200)));
    assert!(eventually(SOON, || get(d.addr, "/v1/x").code == 307));
    let (code, took) = timed_health(d.addr);
    assert_eq!((code, took < PROMPT), (200, true), "{took:?}");
    assert!(d.alive());

    // Once stderr is read again, the writer says what it had to drop.
    let lines = d.resume_reading();
    assert!(
        eventually(SOON, || lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("log lines dropped"))),
        "no report of dropped lines"
    );
    for line in lines.lock().unwrap().iter() {
        if line.contains("log lines dropped") {
            eprintln!("{line}");
        }
    }
    // Targets are cut in the log: no line carries the 8 KiB target.
    let lines = lines.lock().unwrap();
    assert!(lines.iter().all(|l| l.len() < 2 * 1024), "a long log line");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("…({} bytes)", LONG_TARGET_BYTES + 4))),
        "no truncated target in the log"
    );
}

/// Requests with long targets answered 503, at -v a log line each: far
/// more than the pipe (64 KiB) and the log queue hold.
fn flood_with_503s(addr: SocketAddr) {
    let request = format!(
        "GET /v1/{} HTTP/1.1\r\nHost: lb\r\n\r\n",
        "a".repeat(LONG_TARGET_BYTES)
    );
    let mut client = Client::connect(addr);
    for _ in 0..2000 {
        client.send(request.as_bytes());
        assert_eq!(client.response(false).code, 503);
    }
}

#[test]
fn a_full_stderr_does_not_hold_up_exit() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    let mut d = UnreadDaemon::start(&["-v", "-P", "0", "-p", "0.2", &consul.host_port()]);
    consul.set(Answer::Json(b"[]".to_vec()));
    assert!(eventually(SOON, || get(d.addr, "/v1/x").code == 503));
    flood_with_503s(d.addr);
    let start = Instant::now();
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) }, 0);
    // The grace period (5 s) and the log queue's drain (1 s) bound the
    // exit; SOON is generous for that.
    let mut status = None;
    assert!(
        eventually(SOON, || {
            status = d.child.try_wait().unwrap();
            status.is_some()
        }),
        "still running after SIGTERM"
    );
    let status = status.unwrap();
    assert!(status.success(), "{status:?}");
    eprintln!("exit with stderr full took {:?}", start.elapsed());
}

#[test]
fn the_last_lines_are_written_before_exit() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    let mut d = Daemon::start(&["-P", "0", &consul.host_port()]);
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(SOON).is_some_and(|s| s.success()));
    assert!(d.log().ends_with("Shutdown complete"), "{}", d.log());
}

#[test]
fn a_log_reader_gone_does_not_kill_the_daemon() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    let mut d = UnreadDaemon::start(&["-v", "-P", "0", "-p", "0.2", &consul.host_port()]);
    // Close our end of the pipe: every write to stderr now fails (EPIPE).
    drop(d.stderr.take());
    let mut client = Client::connect(d.addr);
    for _ in 0..50 {
        client.send(b"GET /v1/x HTTP/1.1\r\nHost: lb\r\n\r\n");
        let r = client.response(false);
        assert_eq!(r.code, 307);
    }
    assert_eq!(timed_health(d.addr).0, 200);
    assert!(d.alive(), "daemon died with its log reader");
}

#[test]
fn control_characters_reach_the_log_escaped() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    let d = Daemon::start(&["-v", "-P", "0", "-p", "0.2", &consul.host_port()]);
    assert_eq!(get(d.addr, "/v1/x\u{202E}gpj.exe").code, 307);
    assert!(
        d.wait_for_log("\\u{202e}gpj.exe", SOON).is_some(),
        "{}",
        d.log()
    );
    consul.set(Answer::Status(
        403,
        "boom\rFAKE: Initial Vault active node: attacker:8200 \x1b[31m".into(),
    ));
    let line = d
        .wait_for_log("Exception encountered when polling active node", SOON)
        .unwrap_or_else(|| panic!("{}", d.log()));
    assert!(
        line.contains("boom\\rFAKE: Initial Vault active node: attacker:8200 \\u{1b}[31m"),
        "{line:?}"
    );
    let log = d.log();
    for raw in ['\r', '\x1b', '\u{202E}'] {
        assert!(!log.contains(raw), "raw {raw:?} in the log:\n{log:?}");
    }
}

#[test]
fn requests_answered_503_do_not_drive_the_default_log() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    let d = Daemon::start(&["-P", "0", "-p", "0.2", &consul.host_port()]);
    consul.set(Answer::Json(b"[]".to_vec()));
    assert!(eventually(SOON, || get(d.addr, "/v1/x").code == 503));
    let start = Instant::now();
    let mut client = Client::connect(d.addr);
    let requests = 300;
    for _ in 0..requests {
        client.send(b"GET /v1/x HTTP/1.1\r\nHost: lb\r\n\r\n");
        assert_eq!(client.response(false).code, 503);
    }
    // A line queued after anything about them: once it is in, all are.
    d.signal(libc::SIGUSR2);
    assert!(
        d.wait_for_log("Logging disabled via signal", SOON)
            .is_some()
    );
    // One warning now, then at most one per 10 s.
    let allowed = 2 + start.elapsed().as_secs() as usize / 10;
    let lines = d.count_log("503");
    assert!(
        lines <= allowed,
        "{lines} lines about 503s for {requests} requests:\n{}",
        d.log()
    );
    assert_eq!(
        d.count_log("with 503 (no active Vault node)"),
        1,
        "{}",
        d.log()
    );
}

#[test]
fn verbose_logs_name_each_answer_with_its_status() {
    let consul = FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200));
    let d = Daemon::start(&["-v", "-P", "0", "-p", "0.2", &consul.host_port()]);
    assert_eq!(get(d.addr, "/v1/ok").code, 307);
    let mut c = Client::connect(d.addr);
    c.send(b"GET http://elsewhere/v1/x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.response(false).code, 400);
    consul.set(Answer::Json(crate::fake_consul::fixture(
        "stepdown_blocking_result_passing.json",
    )));
    assert!(eventually(SOON, || get(d.addr, "/v1/none").code == 503));
    for line in [
        "RESPOND 307 to http://vault-a:8200/v1/ok for GET request for /v1/ok from 127.0.0.1:",
        "RESPOND 400 for GET request for http://elsewhere/v1/x from 127.0.0.1:",
        "RESPOND 503 for GET request for /v1/none from 127.0.0.1:",
    ] {
        assert!(d.wait_for_log(line, SOON).is_some(), "{line}\n{}", d.log());
    }
}
