//! Pipelining clients and slow clients: memory bounded while answers pile
//! up unread, every request answered before a half-close is honoured, and
//! the head and body deadlines measured per request.

use crate::client::Client;
use crate::daemon::{Daemon, SOON, start_against as start};
use crate::fake_consul::with_vault_a as consul;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

/// A client receive buffer that holds few answers.
pub const SMALL_RECEIVE_BUFFER: libc::c_int = 64 * 1024;
use std::time::{Duration, Instant};

/// Resident memory of the daemon, in KiB.
fn rss_kib(d: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A loopback connection whose receive buffer is fixed at `bytes` before
/// connecting (the kernel would otherwise grow it to many megabytes): what
/// the server sends us and we do not read then stays on the server's side.
pub fn connect_with_receive_buffer(addr: SocketAddr, bytes: libc::c_int) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only: {addr}")
    };
    // SAFETY: plain socket calls on a descriptor we create and then hand to
    // TcpStream, which owns it from there; every struct has its stated size.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let stream = TcpStream::from_raw_fd(fd);
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0);
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    }
}

#[test]
fn clients_that_pipeline_and_never_read_hold_bounded_memory() {
    const CLIENTS: usize = 200;
    const BATCHES: usize = 4;
    // The most a stuck connection may cost: output up to the high-water
    // mark plus one read of held-back requests, with slack for allocator
    // rounding. Unbounded, one read alone added ~200 KiB of answers.
    const MAX_KIB_PER_CLIENT: u64 = 40;
    let c = consul();
    let d = start(&c, &[]);
    let probe = |d: &Daemon| assert_eq!(crate::client::get(d.addr, "/probe").code, 307);
    probe(&d);
    let before = rss_kib(&d);
    // One read's worth (16 KiB) of the shortest requests with the longest
    // answers: each read turns into ~200 KB of health JSON.
    let batch = "G /vault-redirector-health HTTP/1.1\n\n".repeat(431);
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let s = connect_with_receive_buffer(d.addr, SMALL_RECEIVE_BUFFER);
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            s
        })
        .collect();
    for _ in 0..BATCHES {
        for mut s in &clients {
            // Once the server stops reading, the kernel's buffers fill and
            // a write may time out: that is the point.
            let _ = s.write_all(batch.as_bytes());
        }
    }
    // Every connection's input arrived before these probes: the loop has
    // been through all of them by the time the probes are answered.
    // Then wait until the memory stops growing.
    let mut peak = 0;
    let mut stable = 0;
    let started = Instant::now();
    while stable < 3 && started.elapsed() < SOON {
        probe(&d);
        let now = rss_kib(&d);
        stable = if now > peak { 0 } else { stable + 1 };
        peak = peak.max(now);
        std::thread::sleep(Duration::from_millis(200));
    }
    let grown = peak.saturating_sub(before);
    eprintln!(
        "RSS {before} KiB idle, {peak} KiB with {CLIENTS} stuck pipelining clients \
         (+{grown} KiB, {} KiB per client)",
        grown / CLIENTS as u64
    );
    assert!(
        grown < MAX_KIB_PER_CLIENT * CLIENTS as u64,
        "RSS grew by {grown} KiB for {CLIENTS} clients"
    );
    drop(clients);
}

#[test]
fn a_half_closing_pipeliner_gets_every_answer_then_a_clean_close() {
    const REQUESTS: usize = 20_000;
    let c = consul();
    let d = start(&c, &[]);
    // Whether requests are still unread when the end of input arrives is a
    // race: a few rounds make it near certain.
    for _ in 0..5 {
        half_close_after_pipelining(&d, REQUESTS);
    }
}

fn half_close_after_pipelining(d: &Daemon, requests: usize) {
    let s = TcpStream::connect(d.addr).unwrap();
    // Short requests with long answers: the kernel's buffers fill with
    // answers long before the server has read all the requests.
    let batch = "G /vault-redirector-health HTTP/1.1\n\n".repeat(requests);
    // Everything is sent and the sending side closed before reading a
    // single answer: the end of our input (the FIN after the last request)
    // reaches the server while it has requests unread, stopped behind its
    // output cap.
    s.set_write_timeout(Some(SOON)).unwrap();
    (&s).write_all(batch.as_bytes())
        .expect("the kernel's buffers hold all the requests");
    s.shutdown(Shutdown::Write).unwrap();
    let mut reader = Client::from_stream(s.try_clone().unwrap());
    let mut answered = 0;
    while answered < requests && !reader.closed() {
        assert_eq!(reader.response(false).code, 200);
        answered += 1;
    }
    eprintln!("{answered} of {requests} pipelined requests answered before the close");
    assert_eq!(answered, requests);
    // Then a FIN, not a reset.
    let mut s = s;
    s.set_read_timeout(Some(SOON)).unwrap();
    let mut rest = [0u8; 64];
    match s.read(&mut rest) {
        Ok(0) => {}
        other => panic!("expected a clean close, got {other:?}"),
    }
}

#[test]
fn each_pipelined_head_gets_its_own_head_deadline() {
    let c = consul();
    // Each head completes about 100 ms after it starts: a 2 s deadline
    // leaves this client almost 2 s of scheduling delay per head before it
    // could legitimately be closed.
    const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
    let d = start(&c, &["--head-timeout", "2"]);
    let mut client = Client::connect(d.addr);
    client.send(b"GE");
    // Every read ends in the middle of the next head, each head completes
    // within 100 ms: well past the timeout (three of them, and at least 20
    // heads however slow the machine), the client is still served.
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < HEAD_TIMEOUT * 3 || answered < 20 {
        std::thread::sleep(Duration::from_millis(100));
        client.send(b"T /x HTTP/1.1\r\n\r\nGE");
        let r = client.response(false);
        assert_eq!(r.code, 307, "{r:?}");
        answered += 1;
    }
    eprintln!(
        "{answered} answers in {:?} with a head always pending",
        started.elapsed()
    );
    assert!(answered >= 20, "{answered}");
}

#[test]
fn a_trickled_body_meets_a_deadline() {
    let c = consul();
    let d = start(&c, &["--head-timeout", "1", "--idle-timeout", "60"]);
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_nodelay(true).unwrap();
    // Timed from before the head is sent: the body deadline runs from when
    // the daemon reads the end of the head, so 1 s is an exact lower bound.
    let started = Instant::now();
    s.write_all(b"PUT /v1/kv/x HTTP/1.1\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // One body byte every 100 ms, each one a sign of life: the body still
    // must arrive within the head timeout.
    // Gives up after SOON (10 head timeouts): a deadline that each byte
    // pushed back would never close it; when it closes, no sooner than 1 s.
    let closed = loop {
        if started.elapsed() > SOON {
            break false;
        }
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
            Err(_) => {}
        }
        if s.write_all(b"x").is_err() {
            break true;
        }
    };
    let took = started.elapsed();
    eprintln!("a body trickled at 10 bytes/s was closed after {took:?}");
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 307"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(closed, "still open after {took:?}");
    assert!(took >= Duration::from_secs(1), "{took:?}");
}
