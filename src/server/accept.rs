//! Accepting connections: the listening socket, whether it may have
//! connections waiting (edge-triggered readiness), and the back-off while
//! the process is out of descriptors, logged once per episode. How many
//! connections may be open at once is the loop's to say.

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Out of descriptors: wait this long before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long the kernel holds a silent new connection before accepting it
/// anyway (the head timeout then starts). The kernel rounds it to its SYN-ACK
/// retransmissions: 1 s is the shortest.
const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// The listener and what is known about its backlog.
pub struct Acceptor {
    /// None once shutdown has closed it.
    listener: Option<TcpListener>,
    /// Connections may be waiting: set by a readiness event, cleared when
    /// `accept` finds the backlog empty.
    ready: bool,
    paused_until: Option<Instant>,
    /// Set once per EMFILE episode, so the log is not flooded.
    exhausted: bool,
}

impl Acceptor {
    /// Take a bound listener: non-blocking, connections handed over with
    /// their first bytes, registered with the loop under `token`.
    pub fn new(
        listener: std::net::TcpListener,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Acceptor> {
        listener.set_nonblocking(true)?;
        defer_accept(&listener);
        let mut listener = TcpListener::from_std(listener);
        registry.register(&mut listener, token, Interest::READABLE)?;
        Ok(Acceptor {
            listener: Some(listener),
            // Connections may have queued before registration.
            ready: true,
            paused_until: None,
            exhausted: false,
        })
    }

    /// The poll said connections are waiting.
    pub fn set_ready(&mut self) {
        self.ready = true;
    }

    /// Connections may be waiting, and we may take them now.
    pub fn can_accept(&self, now: Instant) -> bool {
        self.ready && self.listener.is_some() && self.paused_until.is_none_or(|t| now >= t)
    }

    /// When accepting resumes after running out of descriptors.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// The next waiting connection, or None when there is none now (the
    /// backlog is empty, or descriptors ran out and accepting pauses).
    pub fn next(&mut self, now: Instant) -> Option<(TcpStream, SocketAddr)> {
        self.paused_until = None;
        loop {
            let listener = self.listener.as_ref()?;
            match listener.accept() {
                Ok(accepted) => return Some(accepted),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Caught up with the backlog: an exhaustion episode is over.
                    if self.exhausted {
                        log::warn!("Accepting connections again");
                        self.exhausted = false;
                    }
                    self.ready = false;
                    return None;
                }
                Err(e) if is_out_of_descriptors(&e) => {
                    if !self.exhausted {
                        log::error!(
                            "Cannot accept connections: {e}; retrying every {} ms",
                            ACCEPT_BACKOFF.as_millis()
                        );
                        self.exhausted = true;
                    }
                    self.paused_until = Some(now + ACCEPT_BACKOFF);
                    return None;
                }
                // Aborted or reset before we got to it: nothing to do.
                Err(e) => log::debug!("accept: {e}"),
            }
        }
    }

    /// Stop accepting (shutdown): new connections are refused by the kernel.
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut listener) = self.listener.take() {
            let _ = registry.deregister(&mut listener);
        }
    }
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Let the kernel hand us a connection only once its first bytes are in
/// (or after about a second of silence): the request is then read at
/// accept, and a one-request connection is answered and closed with no
/// epoll registration and no extra wake-up. Without it (an old kernel),
/// connections are only accepted earlier.
fn defer_accept(listener: &std::net::TcpListener) {
    use std::os::fd::AsRawFd;
    let seconds: libc::c_int = DEFER_ACCEPT_SECS;
    // SAFETY: a valid socket and an int option of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        log::debug!("TCP_DEFER_ACCEPT: {}", io::Error::last_os_error());
    }
}
