//! One client connection: socket I/O around a `Session`, its phase
//! (open, closing after the last response, lingering), its deadline, and the
//! readiness interest it needs. Per-connection problems end here as a close.

use crate::server::limits::{LINGER, Limits};
use crate::server::responses::Site;
use crate::server::session::{Flow, Session};
use crate::server::transport::Transport;
use mio::{Interest, Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// Stop reading requests while this much output waits for a slow reader.
const OUT_HIGH_WATER: usize = 64 * 1024;
/// Reads of discarded input per wake-up while lingering.
const LINGER_READS_PER_WAKE: usize = 16;
/// Size of the loop's shared read buffer.
pub const READ_BUF_BYTES: usize = 16 * 1024;

/// Buffers shared by all connections of the loop: a connection holds memory
/// of its own only while a head is split across reads or output is stuck.
pub struct Scratch {
    read: Vec<u8>,
    out: Vec<u8>,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            read: vec![0; READ_BUF_BYTES],
            out: Vec::with_capacity(READ_BUF_BYTES),
        }
    }
}

/// What handling any connection needs from the loop, for one wake-up.
pub struct LoopEnv<'a> {
    pub registry: &'a Registry,
    pub scratch: &'a mut Scratch,
    pub site: &'a Site,
    pub limits: &'a Limits,
    pub now: Instant,
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
    Close,
}

/// What mio said about the socket. Readable and writable are not needed:
/// every wake-up tries whatever the connection's phase wants, and a
/// spurious attempt costs one `WouldBlock`.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    /// The peer will send nothing more (FIN seen with or after the data):
    /// with edge triggering no further event would tell us.
    pub read_closed: bool,
}

pub struct Conn {
    transport: Transport,
    peer: SocketAddr,
    session: Session,
    /// Response bytes the socket has not taken yet.
    out: Vec<u8>,
    phase: Phase,
    deadline: Instant,
    /// The deadline is a head deadline (not pushed back by more bytes).
    head_clock: bool,
    /// WRITABLE interest is registered (only while output is pending).
    writable_interest: bool,
    peer_closed: bool,
    /// The last read left nothing in the socket's receive queue.
    drained: bool,
    /// TCP_NODELAY is set (once the connection is kept alive).
    nodelay: bool,
}

impl Conn {
    /// A new connection; its first head (and TLS handshake) must arrive
    /// within the head timeout.
    pub fn new(transport: Transport, peer: SocketAddr, now: Instant, limits: &Limits) -> Conn {
        Conn {
            transport,
            peer,
            session: Session::default(),
            out: Vec::new(),
            phase: Phase::Open,
            deadline: now + limits.head_timeout,
            head_clock: true,
            writable_interest: false,
            peer_closed: false,
            drained: true,
            nodelay: false,
        }
    }

    /// Serve a just-accepted connection, then register it if it stays.
    /// A client's first bytes usually arrive before we accept: reading at
    /// once answers a one-request connection with no epoll registration at
    /// all, and an empty read costs one `WouldBlock`. Registering after the
    /// read loses nothing: epoll reports a socket that is already readable.
    pub fn start(&mut self, token: Token, env: &mut LoopEnv<'_>) -> Verdict {
        if self.pump_or_close(Readiness { read_closed: false }, env) == Verdict::Close {
            return Verdict::Close;
        }
        self.writable_interest = self.wants_writable();
        let interest = self.interest();
        match env
            .registry
            .register(self.transport.socket(), token, interest)
        {
            Ok(()) => Verdict::Keep,
            Err(_) => Verdict::Close,
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Between requests with nothing to send: safe to close at shutdown.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Open
            && self.session.is_idle()
            && self.out.is_empty()
            && !self.transport.has_pending_output()
    }

    /// Handle readiness; `Close` means drop the connection now.
    pub fn ready(&mut self, ready: Readiness, token: Token, env: &mut LoopEnv<'_>) -> Verdict {
        if self.pump_or_close(ready, env) == Verdict::Close {
            return Verdict::Close;
        }
        let want_writable = self.wants_writable();
        if want_writable != self.writable_interest {
            self.writable_interest = want_writable;
            let interest = self.interest();
            if env
                .registry
                .reregister(self.transport.socket(), token, interest)
                .is_err()
            {
                return Verdict::Close;
            }
        }
        Verdict::Keep
    }

    fn pump_or_close(&mut self, ready: Readiness, env: &mut LoopEnv<'_>) -> Verdict {
        self.pump(ready, env).unwrap_or_else(|e| {
            log::debug!("Closing connection from {}: {e}", self.peer);
            Verdict::Close
        })
    }

    fn wants_writable(&self) -> bool {
        !self.out.is_empty() || self.transport.has_pending_output()
    }

    /// WRITABLE only while output is pending: otherwise every write would
    /// wake the loop again.
    fn interest(&self) -> Interest {
        if self.writable_interest {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    fn pump(&mut self, ready: Readiness, env: &mut LoopEnv<'_>) -> io::Result<Verdict> {
        let now = env.now;
        if ready.read_closed {
            self.peer_closed = true;
        }
        let mut progress = false;
        if !self.out.is_empty() {
            progress |= self.flush()? > 0;
        } else if self.transport.has_pending_output() {
            self.transport.flush()?;
        }
        if self.phase == Phase::Lingering {
            return self.drain_linger(env.scratch);
        }
        if self.phase == Phase::Open {
            progress |= self.read_requests(env.scratch, env.site)?;
        }
        if self.peer_closed && self.phase == Phase::Open {
            self.phase = Phase::CloseAfterFlush;
        }
        if self.phase == Phase::CloseAfterFlush && self.out.is_empty() {
            self.transport.send_close_notify();
            if !self.transport.flush()? {
                return Ok(Verdict::Keep);
            }
            // Nothing unread and nothing more coming: a plain close sends a
            // FIN after the response, as the client expects.
            if self.drained && (self.peer_closed || self.session.ended_cleanly()) {
                return Ok(Verdict::Close);
            }
            // Otherwise shut down our side, then read until the client's EOF so that
            // unread input does not turn the close into a reset.
            self.transport.shutdown_write();
            self.phase = Phase::Lingering;
            self.deadline = now + LINGER;
            return self.drain_linger(env.scratch);
        }
        if progress {
            if self.session.in_head() {
                if !self.head_clock {
                    self.head_clock = true;
                    self.deadline = now + env.limits.head_timeout;
                }
            } else {
                self.head_clock = false;
                self.deadline = now + env.limits.idle_timeout;
            }
        }
        Ok(Verdict::Keep)
    }

    /// Read and answer requests until the socket is drained, the session
    /// closes, or too much output is waiting. Returns whether bytes came in.
    fn read_requests(&mut self, scratch: &mut Scratch, site: &Site) -> io::Result<bool> {
        let mut got_bytes = false;
        while self.out.len() < OUT_HIGH_WATER {
            let n = match self.transport.read(&mut scratch.read) {
                Ok(0) => {
                    self.peer_closed = true;
                    self.drained = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            got_bytes = true;
            self.drained = self.transport.short_read_drains() && n < scratch.read.len();
            scratch.out.clear();
            let flow = self
                .session
                .feed(&scratch.read[..n], site, self.peer, &mut scratch.out);
            self.send(&scratch.out)?;
            if flow == Flow::Close {
                self.phase = Phase::CloseAfterFlush;
                break;
            }
            // Kept alive: later responses must not wait for the client's
            // delayed ACK (Nagle). Like nginx, a one-request connection skips
            // the extra system call.
            if !self.nodelay && !scratch.out.is_empty() {
                self.nodelay = true;
                self.transport.set_nodelay();
            }
            // A short read drained the socket: the next bytes bring a new event.
            if self.drained {
                break;
            }
        }
        Ok(got_bytes)
    }

    /// Write `data` after anything already pending; keep what the socket
    /// does not take.
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.out.is_empty() {
            let n = write_some(&mut self.transport, data)?;
            self.out.extend_from_slice(&data[n..]);
        } else {
            self.out.extend_from_slice(data);
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<usize> {
        let n = write_some(&mut self.transport, &self.out)?;
        self.out.drain(..n);
        if self.out.is_empty() {
            // Stuck output is rare: give the memory back.
            self.out = Vec::new();
        }
        Ok(n)
    }

    fn drain_linger(&mut self, scratch: &mut Scratch) -> io::Result<Verdict> {
        for _ in 0..LINGER_READS_PER_WAKE {
            match self.transport.discard(&mut scratch.read) {
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
fn write_some(transport: &mut Transport, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match transport.write(&data[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}
