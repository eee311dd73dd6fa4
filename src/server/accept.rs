//! Accepting connections: the listening sockets (one we bound, or those
//! the service manager passed), whether each may have connections waiting
//! (edge-triggered readiness), and the back-off while the process is out
//! of descriptors, logged once per episode. How many connections may be
//! open at once is the loop's to say.

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

/// The listeners and what is known about their backlogs.
pub struct Acceptor {
    /// Empty once shutdown has closed them.
    listeners: Vec<Listening>,
    /// The listener to take from first, so that none starves the others.
    cursor: usize,
    paused_until: Option<Instant>,
    /// Set once per EMFILE episode, so the log is not flooded.
    exhausted: bool,
}

/// One listening socket.
struct Listening {
    listener: TcpListener,
    /// Connections may be waiting: set by a readiness event, cleared when
    /// `accept` finds the backlog empty.
    ready: bool,
}

impl Acceptor {
    /// Take bound listeners: non-blocking, connections handed over with
    /// their first bytes, registered with the loop under consecutive
    /// tokens from `first_token`.
    pub fn new(
        listeners: Vec<std::net::TcpListener>,
        registry: &Registry,
        first_token: usize,
    ) -> io::Result<Acceptor> {
        let mut taken = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.into_iter().enumerate() {
            listener.set_nonblocking(true)?;
            defer_accept(&listener);
            let mut listener = TcpListener::from_std(listener);
            registry.register(&mut listener, Token(first_token + i), Interest::READABLE)?;
            // Connections may have queued before registration.
            taken.push(Listening {
                listener,
                ready: true,
            });
        }
        Ok(Acceptor {
            listeners: taken,
            cursor: 0,
            paused_until: None,
            exhausted: false,
        })
    }

    /// The poll said connections are waiting on listener `index`.
    pub fn set_ready(&mut self, index: usize) {
        if let Some(l) = self.listeners.get_mut(index) {
            l.ready = true;
        }
    }

    /// Connections may be waiting, and we may take them now.
    pub fn can_accept(&self, now: Instant) -> bool {
        self.listeners.iter().any(|l| l.ready) && self.paused_until.is_none_or(|t| now >= t)
    }

    /// When accepting resumes after running out of descriptors.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// The next waiting connection, or None when there is none now (the
    /// backlogs are empty, or descriptors ran out and accepting pauses).
    pub fn next(&mut self, now: Instant) -> Option<(TcpStream, SocketAddr)> {
        self.paused_until = None;
        let count = self.listeners.len();
        for step in 0..count {
            let i = (self.cursor + step) % count;
            if !self.listeners[i].ready {
                continue;
            }
            if let Some(accepted) = self.next_from(i, now) {
                self.cursor = (i + 1) % count;
                return Some(accepted);
            }
            if self.paused_until.is_some() {
                return None;
            }
        }
        // Caught up with every backlog: an exhaustion episode is over.
        if self.exhausted {
            log::warn!("Accepting connections again");
            self.exhausted = false;
        }
        None
    }

    /// The next connection waiting on listener `i`.
    fn next_from(&mut self, i: usize, now: Instant) -> Option<(TcpStream, SocketAddr)> {
        loop {
            match self.listeners[i].listener.accept() {
                Ok(accepted) => return Some(accepted),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listeners[i].ready = false;
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

    /// Stop accepting (shutdown): new connections are refused by the
    /// kernel (a socket the manager passed stays open in the manager,
    /// which queues them for the next start).
    pub fn close(&mut self, registry: &Registry) {
        for mut l in self.listeners.drain(..) {
            let _ = registry.deregister(&mut l.listener);
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
