//! One client connection: I/O on its byte stream around a `Session`, its
//! phase (open, closing after the last response, lingering), its deadline,
//! the readiness interest it needs, and how much of a loop turn it may take
//! (reads, TLS handshake steps). Per-connection problems end here as a
//! close. Generic over the stream, so that its phases can be driven in unit
//! tests without sockets; the loop registers the socket.

use crate::server::limits::{LINGER, Limits};
use crate::server::responses::Responses;
use crate::server::session::{Answering, Session};
use crate::server::transport::{Stream, Transport};
use mio::Interest;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// Stop answering while this much output waits for a slow reader; the
/// requests behind wait unparsed (at most one read's worth) and nothing
/// more is read. The kernel's send buffer already holds far more for a slow
/// reader: ours only has to hold what the kernel refused.
const OUT_HIGH_WATER: usize = 16 * 1024;
/// Reads per wake-up while requests keep coming: a client that sends
/// faster than we answer gets the loop back after this many, and the
/// connection is visited again on the next turn.
const READS_PER_WAKE: usize = 4;
/// Reads of discarded input per wake-up while lingering.
const LINGER_READS_PER_WAKE: usize = 16;
/// Size of the loop's shared read buffer.
pub const READ_BUF_BYTES: usize = 16 * 1024;

/// Buffers shared by all connections of the loop: a connection holds memory
/// of its own only while a head is split across reads or output is stuck.
pub struct SharedBuffers {
    read: Vec<u8>,
    out: Vec<u8>,
}

impl SharedBuffers {
    pub fn new() -> SharedBuffers {
        SharedBuffers {
            read: vec![0; READ_BUF_BYTES],
            out: Vec::with_capacity(READ_BUF_BYTES),
        }
    }
}

/// What serving any connection needs from the loop, for one turn.
pub struct Turn<'a> {
    pub buffers: &'a mut SharedBuffers,
    pub responses: &'a Responses,
    pub limits: &'a Limits,
    /// The daemon is shutting down: every answer closes its connection.
    pub stopping: bool,
    pub now: Instant,
    /// TLS handshake steps this turn of the loop may still run.
    pub handshakes_left: &'a mut usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading requests and answering them.
    Open,
    /// The last response is being written; close once it is out.
    CloseAfterFlush,
    /// Write side shut down; discarding input until EOF or the deadline.
    Lingering,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Keep, and visit again on the next turn without waiting for an
    /// event: work is left (input not read yet, a handshake put off) that
    /// an edge-triggered poll would never report again.
    Again,
    Close,
}

/// What mio said about the socket. Writable is not needed: every wake-up
/// tries whatever the connection's phase wants, and a spurious attempt
/// costs one `WouldBlock`.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    /// New input may have arrived since the last read.
    pub readable: bool,
    /// The peer will send nothing more (FIN seen with or after the data):
    /// with edge triggering no further event would tell us.
    pub read_closed: bool,
}

impl Readiness {
    /// A visit asked for by `Verdict::Again`, not by the poll.
    pub const REVISIT: Readiness = Readiness {
        readable: false,
        read_closed: false,
    };
}

/// One client connection over a stream `S` (plain TCP or TLS in service).
pub struct Conn<S: Stream = Transport> {
    stream: S,
    peer: SocketAddr,
    session: Session,
    /// Response bytes the socket has not taken yet.
    out: Vec<u8>,
    phase: Phase,
    deadline: Instant,
    /// The deadline is a request deadline (not pushed back by more bytes
    /// of the same request).
    request_clock: bool,
    /// WRITABLE interest is registered (only while output is pending).
    writable_interest: bool,
    peer_closed: bool,
    /// Nothing is left to read: the last read found the receive queue
    /// empty, and no readiness event came since.
    drained: bool,
    /// The last wake-up stopped at `READS_PER_WAKE` with input left.
    reads_left_over: bool,
    /// TCP_NODELAY is set (once the connection is kept alive).
    nodelay: bool,
}

impl<S: Stream> Conn<S> {
    /// A new connection; its first head (and TLS handshake) must arrive
    /// within the head timeout.
    pub fn new(stream: S, peer: SocketAddr, now: Instant, limits: &Limits) -> Conn<S> {
        Conn {
            stream,
            peer,
            session: Session::default(),
            out: Vec::new(),
            phase: Phase::Open,
            deadline: now + limits.head_timeout,
            request_clock: true,
            writable_interest: false,
            peer_closed: false,
            drained: false,
            reads_left_over: false,
            nodelay: false,
        }
    }

    /// Serve a just-accepted connection. A client's first bytes usually
    /// arrive before we accept: reading at once answers a one-request
    /// connection with no epoll registration at all, and an empty read costs
    /// one `WouldBlock`. The loop registers a connection that stays with
    /// `interest()` afterwards: epoll reports a socket that is already
    /// readable, so nothing is lost.
    pub fn start(&mut self, turn: &mut Turn<'_>) -> Verdict {
        let ready = Readiness {
            readable: true,
            read_closed: false,
        };
        let verdict = self.serve_or_close(ready, turn);
        self.writable_interest = self.wants_writable();
        verdict
    }

    /// The stream, for the loop to register its socket.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Between requests, after at least one, with nothing to send: safe to
    /// close at shutdown. A connection that has sent nothing yet may be a
    /// request on its way: it gets its answer (or its head timeout).
    pub fn between_requests(&self) -> bool {
        self.session.answered() > 0 && self.is_idle()
    }

    /// Between requests with nothing to send.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Open
            && self.session.is_idle()
            && self.out.is_empty()
            && !self.stream.has_pending_output()
    }

    /// Handle readiness; `Close` means drop the connection now.
    pub fn ready(&mut self, ready: Readiness, turn: &mut Turn<'_>) -> Verdict {
        self.serve_or_close(ready, turn)
    }

    /// The interest to register anew, if it changed since the last time
    /// (WRITABLE is wanted only while output is pending).
    #[inline]
    pub fn interest_change(&mut self) -> Option<Interest> {
        let want_writable = self.wants_writable();
        if want_writable == self.writable_interest {
            return None;
        }
        self.writable_interest = want_writable;
        Some(self.interest())
    }

    fn serve_or_close(&mut self, ready: Readiness, turn: &mut Turn<'_>) -> Verdict {
        self.serve(ready, turn).unwrap_or_else(|e| {
            log::debug!("Closing connection from {}: {e}", self.peer);
            // Not a close by the client (that is no error): bad or non-TLS
            // data, an alert, no common protocol, a reset.
            if self.stream.is_handshaking() {
                turn.responses.counters().tls_handshake_failed();
            }
            Verdict::Close
        })
    }

    fn wants_writable(&self) -> bool {
        !self.out.is_empty() || self.stream.has_pending_output()
    }

    /// WRITABLE only while output is pending: otherwise every write would
    /// wake the loop again.
    pub fn interest(&self) -> Interest {
        if self.writable_interest {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Do whatever the connection's phase wants: flush, read and answer,
    /// close or linger. Returns what the loop should do with it.
    fn serve(&mut self, ready: Readiness, turn: &mut Turn<'_>) -> io::Result<Verdict> {
        let now = turn.now;
        if ready.read_closed {
            self.peer_closed = true;
        }
        if ready.readable || ready.read_closed {
            self.drained = false;
        }
        // A handshake step may cost a key exchange and a signature: only a
        // few per turn, so that a handshake flood cannot starve the
        // connections already established.
        if self.stream.is_handshaking() {
            if *turn.handshakes_left == 0 {
                return Ok(Verdict::Again);
            }
            *turn.handshakes_left -= 1;
        }
        let mut progress = false;
        if !self.out.is_empty() {
            progress |= self.flush()? > 0;
        } else if self.stream.has_pending_output() {
            self.stream.flush()?;
        }
        if self.phase == Phase::Lingering {
            return self.drain_linger(turn.buffers);
        }
        let answered_before = self.session.answered();
        if self.phase == Phase::Open {
            progress |= self.read_requests(turn)?;
        }
        // The client is done sending: answer everything it sent, then close.
        if self.peer_closed
            && self.phase == Phase::Open
            && self.drained
            && !self.session.holds_back_requests()
        {
            self.phase = Phase::CloseAfterFlush;
        }
        if self.phase == Phase::CloseAfterFlush && self.out.is_empty() {
            return self.close_after_last_answer(now, turn.buffers);
        }
        if progress {
            self.restart_clock(answered_before, now, turn.limits);
        }
        if self.phase == Phase::Open && self.reads_left_over {
            return Ok(Verdict::Again);
        }
        Ok(Verdict::Keep)
    }

    /// The last answer is out: close, at once if nothing is unread, else
    /// after lingering.
    fn close_after_last_answer(
        &mut self,
        now: Instant,
        buffers: &mut SharedBuffers,
    ) -> io::Result<Verdict> {
        self.stream.send_close_notify();
        if !self.stream.flush()? {
            return Ok(Verdict::Keep);
        }
        // Nothing unread and nothing more coming: a plain close sends a FIN
        // after the response, as the client expects.
        if self.drained && (self.peer_closed || self.session.ended_cleanly()) {
            return Ok(Verdict::Close);
        }
        // Otherwise shut down our side, then read until the client's EOF so
        // that unread input does not turn the close into a reset.
        self.stream.shutdown_write();
        self.phase = Phase::Lingering;
        self.deadline = now + LINGER;
        self.drain_linger(buffers)
    }

    /// A request, head and body, must arrive within the head timeout of
    /// the read that brought its first bytes: more bytes of the same
    /// request do not push it back, a new request does. Between requests
    /// (or while our answers wait for the client) the idle timeout runs
    /// from the last progress.
    fn restart_clock(&mut self, answered_before: u64, now: Instant, limits: &Limits) {
        if self.session.in_request() {
            let new_request = self.session.answered() != answered_before;
            if !self.request_clock || new_request {
                self.request_clock = true;
                self.deadline = now + limits.head_timeout;
            }
        } else {
            self.request_clock = false;
            self.deadline = now + limits.idle_timeout;
        }
    }

    /// Answer requests held back, then read and answer more, until the
    /// socket is drained, the session closes, too much output is waiting,
    /// or `READS_PER_WAKE` reads are done. Returns whether anything came
    /// in or was answered.
    fn read_requests(&mut self, turn: &mut Turn<'_>) -> io::Result<bool> {
        let buffers = &mut *turn.buffers;
        let mut progress = false;
        let mut reads = 0;
        self.reads_left_over = false;
        while self.out.len() < OUT_HIGH_WATER {
            let n = if self.session.holds_back_requests() {
                0
            } else if reads == READS_PER_WAKE {
                self.reads_left_over = true;
                break;
            } else {
                reads += 1;
                match self.read_some(&mut buffers.read)? {
                    Some(n) => n,
                    None => break,
                }
            };
            progress = true;
            buffers.out.clear();
            // Answers beyond the high-water mark wait, with their requests.
            let how = Answering {
                responses: turn.responses,
                peer: self.peer,
                stopping: turn.stopping,
                out_budget: OUT_HIGH_WATER - self.out.len(),
            };
            self.session
                .feed(&buffers.read[..n], &how, &mut buffers.out);
            self.send(&buffers.out)?;
            if self.session.is_closing() {
                self.phase = Phase::CloseAfterFlush;
                break;
            }
            // Kept alive: later responses must not wait for the client's
            // delayed ACK (Nagle). Like nginx, a one-request connection skips
            // the extra system call.
            if !self.nodelay && !buffers.out.is_empty() {
                self.nodelay = true;
                self.stream.set_nodelay();
            }
            // A short read drained the socket: the next bytes bring a new event.
            if self.drained && !self.session.holds_back_requests() {
                break;
            }
        }
        Ok(progress)
    }

    /// One read: `None` when nothing more can be had now (the end of the
    /// stream, or it would block); notes whether the stream is drained.
    #[inline]
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    self.peer_closed = true;
                    self.drained = true;
                    return Ok(None);
                }
                Ok(n) => {
                    self.drained = self.stream.short_read_drains() && n < buf.len();
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained = true;
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Write `data` after anything already pending; keep what the socket
    /// does not take.
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.out.is_empty() {
            let n = write_some(&mut self.stream, data)?;
            self.out.extend_from_slice(&data[n..]);
        } else {
            self.out.extend_from_slice(data);
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<usize> {
        let n = write_some(&mut self.stream, &self.out)?;
        self.out.drain(..n);
        if self.out.is_empty() {
            // Stuck output is rare: give the memory back.
            self.out = Vec::new();
        }
        Ok(n)
    }

    fn drain_linger(&mut self, buffers: &mut SharedBuffers) -> io::Result<Verdict> {
        for _ in 0..LINGER_READS_PER_WAKE {
            match self.stream.discard(&mut buffers.read) {
                Ok(0) => return Ok(Verdict::Close),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Verdict::Keep),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Ok(Verdict::Close),
            }
        }
        // A client that keeps sending after our last answer is not owed more.
        Ok(Verdict::Close)
    }
}

/// Write until everything is taken or the socket would block.
fn write_some(stream: &mut impl Stream, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match stream.write(&data[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    //! A connection driven directly: its phases over an in-memory stream
    //! (no sockets, no clock: `now` is passed in), and its share of a turn
    //! over a real loopback socket.

    use super::*;
    use crate::discovery::tracker;
    use std::io::Write;
    use std::time::Duration;

    fn responses() -> Responses {
        let mut responses = Responses::new("http", Some("consul:8500"), 5.0);
        responses.update(&tracker::knowing("vault-a:8200"));
        responses
    }

    /// Bytes waiting in a socket's receive queue.
    fn unread_bytes(sock: &std::net::TcpStream) -> usize {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int to the pointer we pass.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut n) };
        assert_eq!(rc, 0);
        n as usize
    }

    fn request_text() -> String {
        format!(
            "PUT /v1/kv/x HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{}",
            "b".repeat(1000)
        )
    }

    #[test]
    fn a_fast_sender_gets_a_bounded_share_of_a_wake_up_and_then_more() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        // Requests with bodies: cheap to skip, short answers, so only the
        // bound on reads can end a wake-up while input keeps coming.
        let request = request_text();
        const REQUESTS: usize = 1000;
        let writer = {
            let mut client = client.try_clone().unwrap();
            std::thread::spawn(move || {
                client
                    .write_all(request.repeat(REQUESTS).as_bytes())
                    .unwrap()
            })
        };
        // More than one wake-up's worth of reads is waiting (the server's
        // receive buffer starts at 128 KiB).
        const WAITING_BYTES: usize = 96 * 1024;
        assert!(READS_PER_WAKE.saturating_mul(READ_BUF_BYTES) < WAITING_BYTES);
        let started = Instant::now();
        while unread_bytes(&server) < WAITING_BYTES {
            assert!(started.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(1));
        }
        server.set_nonblocking(true).unwrap();
        let (responses, limits) = (responses(), Limits::default());
        let mut buffers = SharedBuffers::new();
        let mut handshakes_left = 0;
        let mut turn = Turn {
            buffers: &mut buffers,
            responses: &responses,
            limits: &limits,
            stopping: false,
            now: Instant::now(),
            handshakes_left: &mut handshakes_left,
        };
        let transport = Transport::plain(mio::net::TcpStream::from_std(server));
        let mut conn = Conn::new(transport, peer, turn.now, &limits);
        // Accepting reads at once; a fast sender is not read dry.
        assert_eq!(conn.start(&mut turn), Verdict::Again);
        // Visited again (and woken as a poll would), it is served to the end.
        // Every answer is a head of a few lines: count them by line ends.
        let lines_per_answer = {
            let mut out = Vec::new();
            let how = Answering {
                responses: &responses,
                peer,
                stopping: false,
                out_budget: usize::MAX,
            };
            Session::default().feed(request_text().as_bytes(), &how, &mut out);
            out.iter().filter(|&&b| b == b'\n').count()
        };
        let reader = std::thread::spawn(move || {
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut answered = 0;
            while answered < REQUESTS * lines_per_answer {
                let Ok(n) = std::io::Read::read(&mut client, &mut buf) else {
                    break;
                };
                if n == 0 {
                    break;
                }
                answered += buf[..n].iter().filter(|&&b| b == b'\n').count();
            }
            answered
        });
        let ready = Readiness {
            readable: true,
            read_closed: false,
        };
        let mut visits = 1;
        while !(reader.is_finished() && writer.is_finished()) {
            turn.now = Instant::now();
            if conn.ready(ready, &mut turn) != Verdict::Again {
                std::thread::sleep(Duration::from_millis(1));
            }
            visits += 1;
            assert!(started.elapsed() < Duration::from_secs(20), "never done");
        }
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), REQUESTS * lines_per_answer);
        assert!(visits > 1);
    }

    /// A client on the other end of an in-memory stream: what it sent and
    /// we did not read yet, whether it closed its side, what we wrote, and
    /// how much more the "socket" takes before it would block.
    struct MemStream {
        input: std::collections::VecDeque<u8>,
        client_closed: bool,
        output: Vec<u8>,
        room: usize,
        write_shut: bool,
    }

    impl MemStream {
        fn sending(input: &str) -> MemStream {
            MemStream {
                input: input.bytes().collect(),
                client_closed: false,
                output: Vec::new(),
                room: usize::MAX,
                write_shut: false,
            }
        }

        fn answers(&self) -> Vec<u16> {
            let text = String::from_utf8_lossy(&self.output);
            text.split("HTTP/1.1 ")
                .skip(1)
                .map(|r| r[..3].parse().unwrap())
                .collect()
        }
    }

    impl Stream for MemStream {
        fn is_handshaking(&self) -> bool {
            false
        }
        fn short_read_drains(&self) -> bool {
            true
        }
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.input.is_empty() {
                return if self.client_closed {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = buf.len().min(self.input.len());
            for (slot, byte) in buf.iter_mut().zip(self.input.drain(..n)) {
                *slot = byte;
            }
            Ok(n)
        }
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = data.len().min(self.room);
            self.room -= n;
            self.output.extend_from_slice(&data[..n]);
            Ok(n)
        }
        fn has_pending_output(&self) -> bool {
            false
        }
        fn flush(&mut self) -> io::Result<bool> {
            Ok(true)
        }
        fn send_close_notify(&mut self) {}
        fn shutdown_write(&mut self) {
            self.write_shut = true;
        }
        fn set_nodelay(&mut self) {}
        fn discard(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.read(buf)
        }
    }

    /// What the loop lends a connection for a turn, at a time of the test's.
    struct Loop {
        buffers: SharedBuffers,
        responses: Responses,
        limits: Limits,
        handshakes_left: usize,
        stopping: bool,
    }

    impl Loop {
        fn new() -> Loop {
            Loop {
                buffers: SharedBuffers::new(),
                responses: responses(),
                limits: Limits::default(),
                handshakes_left: usize::MAX,
                stopping: false,
            }
        }

        fn turn(&mut self, now: Instant) -> Turn<'_> {
            Turn {
                buffers: &mut self.buffers,
                responses: &self.responses,
                limits: &self.limits,
                stopping: self.stopping,
                now,
                handshakes_left: &mut self.handshakes_left,
            }
        }
    }

    const READABLE: Readiness = Readiness {
        readable: true,
        read_closed: false,
    };

    fn peer() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    fn conn(input: &str, at: Instant) -> Conn<MemStream> {
        Conn::new(MemStream::sending(input), peer(), at, &Limits::default())
    }

    #[test]
    fn keep_alive_answers_and_waits_idle() {
        let (mut lp, t0) = (Loop::new(), Instant::now());
        let mut c = conn(
            "GET /v1/a?b=1 HTTP/1.1\r\n\r\nLIST /v1/k HTTP/1.1\r\n\r\n",
            t0,
        );
        assert_eq!(c.start(&mut lp.turn(t0)), Verdict::Keep);
        assert_eq!(c.stream.answers(), [307, 307]);
        let out = String::from_utf8_lossy(&c.stream.output).into_owned();
        assert!(
            out.contains("Location: http://vault-a:8200/v1/a?b=1\r\n"),
            "{out}"
        );
        assert_eq!(c.deadline(), t0 + lp.limits.idle_timeout);
        assert!(c.is_idle());
        assert_eq!(c.interest(), Interest::READABLE);
    }

    #[test]
    fn connection_close_is_answered_then_closed_with_a_plain_close() {
        let (mut lp, t0) = (Loop::new(), Instant::now());
        let mut c = conn("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", t0);
        assert_eq!(c.start(&mut lp.turn(t0)), Verdict::Close);
        assert_eq!(c.stream.answers(), [307]);
        assert!(!c.stream.write_shut, "nothing unread: no linger needed");
    }

    #[test]
    fn unread_input_after_a_rejection_lingers_until_the_client_closes() {
        let (mut lp, t0) = (Loop::new(), Instant::now());
        let mut c = conn("GET http://evil/x HTTP/1.1\r\n\r\nmore bytes", t0);
        assert_eq!(c.start(&mut lp.turn(t0)), Verdict::Keep);
        assert_eq!(c.stream.answers(), [400]);
        assert!(c.stream.write_shut, "our side is shut down first");
        assert_eq!(c.phase, Phase::Lingering);
        assert_eq!(c.deadline(), t0 + LINGER);
        c.stream.input.extend(b"still more");
        c.stream.client_closed = true;
        let ready = Readiness {
            readable: true,
            read_closed: true,
        };
        assert_eq!(c.ready(ready, &mut lp.turn(t0)), Verdict::Close);
    }

    #[test]
    fn a_slow_reader_holds_requests_back_then_gets_them_all() {
        let (mut lp, t0) = (Loop::new(), Instant::now());
        let request = "GET /vault-redirector-health HTTP/1.1\r\n\r\n";
        let mut c = conn(&request.repeat(200), t0);
        c.stream.room = 1000;
        assert_eq!(c.start(&mut lp.turn(t0)), Verdict::Keep);
        assert!(c.out.len() <= OUT_HIGH_WATER + 1024, "{}", c.out.len());
        assert!(c.session.holds_back_requests());
        // Registered wanting WRITABLE, since output is stuck.
        assert_eq!(c.interest(), Interest::READABLE | Interest::WRITABLE);
        let mut turns = 0;
        while c.stream.answers().len() < 200 {
            c.stream.room = 64 * 1024;
            assert_eq!(c.ready(READABLE, &mut lp.turn(t0)), Verdict::Keep);
            turns += 1;
            assert!(turns < 100, "never caught up");
        }
        assert!(c.is_idle());
        assert_eq!(c.interest_change(), Some(Interest::READABLE));
    }

    #[test]
    fn a_client_that_half_closes_after_pipelining_gets_every_answer() {
        let (mut lp, t0) = (Loop::new(), Instant::now());
        let mut c = conn(&"GET /x HTTP/1.1\r\n\r\n".repeat(2000), t0);
        c.stream.client_closed = true;
        c.stream.room = 4096;
        let mut verdict = c.start(&mut lp.turn(t0));
        let ready = Readiness {
            readable: true,
            read_closed: true,
        };
        for _ in 0..10_000 {
            if verdict == Verdict::Close {
                break;
            }
            c.stream.room = 4096;
            verdict = c.ready(ready, &mut lp.turn(t0));
        }
        assert_eq!(verdict, Verdict::Close);
        assert_eq!(c.stream.answers().len(), 2000);
    }

    #[test]
    fn each_request_gets_its_own_head_deadline_and_bodies_have_one_too() {
        let (mut lp, t0) = (Loop::new(), Instant::now());
        let head_timeout = lp.limits.head_timeout;
        let later = |ms| t0 + Duration::from_millis(ms);
        let mut c = conn("GE", t0);
        assert_eq!(c.start(&mut lp.turn(t0)), Verdict::Keep);
        assert_eq!(c.deadline(), t0 + head_timeout);
        // More bytes of the same head do not push its deadline back...
        c.stream.input.extend(b"T /a HTTP");
        c.ready(READABLE, &mut lp.turn(later(100)));
        assert_eq!(c.deadline(), t0 + head_timeout);
        // ...a new request does, even when the read ends inside it.
        c.stream.input.extend(b"/1.1\r\n\r\nGE");
        c.ready(READABLE, &mut lp.turn(later(200)));
        assert_eq!(c.stream.answers(), [307]);
        assert_eq!(c.deadline(), later(200) + head_timeout);
        // A body trickled a byte at a time keeps the deadline of its head.
        c.stream
            .input
            .extend(b"T /b HTTP/1.1\r\nContent-Length: 5\r\n\r\na");
        c.ready(READABLE, &mut lp.turn(later(300)));
        assert_eq!(c.deadline(), later(300) + head_timeout);
        c.stream.input.extend(b"b");
        c.ready(READABLE, &mut lp.turn(later(400)));
        assert_eq!(c.deadline(), later(300) + head_timeout);
    }

    #[test]
    fn when_stopping_every_answer_closes() {
        let (mut lp, t0) = (Loop::new(), Instant::now());
        lp.stopping = true;
        let mut c = conn("GET /a HTTP/1.1\r\n\r\n", t0);
        assert_eq!(c.start(&mut lp.turn(t0)), Verdict::Close);
        let out = String::from_utf8_lossy(&c.stream.output).into_owned();
        assert!(out.contains("Connection: close\r\n"), "{out}");
    }
}
