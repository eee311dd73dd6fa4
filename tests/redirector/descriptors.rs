//! Client connections never take the descriptors that discovery (the
//! Consul socket, the token file), TLS reloads and logging need.

use crate::daemon::{Daemon, SOON, command, eventually};
use crate::fake_consul::{FakeConsul, active_node};
use crate::tls::{put, temp_dir};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

/// A tiny open-file limit, as in the security review.
const OPEN_FILE_LIMIT: libc::rlim_t = 40;
const CLIENTS: usize = 60;
const REQUEST: &[u8] = b"GET /v1/x HTTP/1.1\r\nHost: lb\r\n\r\n";

/// A keep-alive client read without blocking, so that 60 of them can be
/// watched from one thread while most wait in the kernel's backlog.
struct KeepAlive {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl KeepAlive {
    fn open(addr: std::net::SocketAddr) -> KeepAlive {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.write_all(REQUEST).unwrap();
        stream.set_nonblocking(true).unwrap();
        KeepAlive {
            stream,
            buf: Vec::new(),
        }
    }

    /// The status code and Location of a complete response, if one is in.
    fn try_response(&mut self) -> Option<(u16, Option<String>)> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        let length: usize = header("Content-Length:").map_or(0, |v| v.parse().unwrap());
        if self.buf.len() < end + length {
            return None;
        }
        self.buf.drain(..end + length);
        let code = head.split(' ').nth(1).unwrap().parse().unwrap();
        Some((code, header("Location:")))
    }

    fn ask_again(&mut self) {
        self.stream.set_nonblocking(false).unwrap();
        self.stream.write_all(REQUEST).unwrap();
        self.stream.set_nonblocking(true).unwrap();
    }
}

#[test]
fn keep_alive_clients_cannot_starve_the_token_file_of_descriptors() {
    let consul = FakeConsul::serving(active_node("vault-b", "10.0.0.2", 8200));
    consul.require_token("file-token");
    let token = temp_dir().join("token");
    put(&token, "file-token\n");
    let mut cmd = command(&[
        "-P",
        "0",
        "-p",
        "0.5",
        "--consul-token-file",
        token.to_str().unwrap(),
        &consul.host_port(),
    ]);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: OPEN_FILE_LIMIT,
                rlim_max: OPEN_FILE_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let d = Daemon::start_command(cmd);
    let mut clients: Vec<KeepAlive> = (0..CLIENTS).map(|_| KeepAlive::open(d.addr)).collect();

    // Collect the first answers; the clients past the cap stay in the backlog.
    // Until one is answered (a condition wait), then for a second more so
    // that the others the daemon takes in answer too.
    let mut answered = [false; CLIENTS];
    let mut codes = Vec::new();
    let mut collect = |clients: &mut [KeepAlive]| {
        for (i, c) in clients.iter_mut().enumerate() {
            if let Some(r) = c.try_response() {
                answered[i] = true;
                codes.push(r);
            }
        }
        !codes.is_empty()
    };
    assert!(eventually(SOON, || collect(&mut clients)), "{}", d.log());
    let settle = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle {
        collect(&mut clients);
        std::thread::sleep(Duration::from_millis(10));
    }
    let served: Vec<usize> = (0..CLIENTS).filter(|&i| answered[i]).collect();
    assert!(!served.is_empty(), "{}", d.log());

    // Three grace periods (2 x 0.5 s) of keep-alive requests on the
    // connections held: the token file must still be read every poll. At
    // least 3 s, and until three more polls were made however slow the
    // machine (SOON more at most).
    let tokens_before = consul.tokens().len();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3)
        || (consul.tokens().len() < tokens_before + 3
            && started.elapsed() < SOON + Duration::from_secs(3))
    {
        for &i in &served {
            clients[i].ask_again();
            let mut r = None;
            assert!(
                eventually(SOON, || {
                    r = clients[i].try_response();
                    r.is_some()
                }),
                "no answer\n{}",
                d.log()
            );
            codes.push(r.unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = d.log();
    let want = Some("http://vault-b:8200/v1/x".to_owned());
    assert!(
        codes
            .iter()
            .all(|(code, location)| *code == 307 && *location == want),
        "{:?}\n{log}",
        codes
            .iter()
            .filter(|(code, _)| *code != 307)
            .collect::<Vec<_>>()
    );
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("Exception encountered"), "{log}");
    let tokens = consul.tokens();
    assert!(
        tokens.len() >= tokens_before + 3,
        "{} polls\n{log}",
        tokens.len()
    );
    assert!(
        tokens.iter().all(|t| t.as_deref() == Some("file-token")),
        "{tokens:?}"
    );
    assert!(log.contains("accepting at most"), "{log}");
    eprintln!(
        "{} of {CLIENTS} clients held a connection; {} answers, all 307",
        served.len(),
        codes.len()
    );
}
