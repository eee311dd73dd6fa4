//! Accepting connections: the listening sockets (one we bound, with
//! SO_REUSEPORT if asked, or those the service manager passed), whether
//! each may have connections waiting
//! (edge-triggered readiness), and the back-off while the process is out
//! of descriptors, logged once per episode. How many connections may be
//! open at once is the loop's to say.

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Out of descriptors: wait this long before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long the kernel holds a silent new connection before accepting it
/// anyway (the head timeout then starts). The kernel rounds it to its SYN-ACK
/// retransmissions: 1 s is the shortest.
const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// Connections the kernel may queue before we accept them (it caps this
/// at `net.core.somaxconn`). Generous: a draining process, or a loop busy
/// for a moment, must not see new connections refused.
const LISTEN_BACKLOG: libc::c_int = 4096;

/// A listening TCP socket on `addr`, with SO_REUSEADDR as usual and, if
/// `reuse_port`, SO_REUSEPORT: other processes (each also asking for it)
/// may then listen on the same port, and the kernel spreads new
/// connections over them.
pub fn bind_listener(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket creation; the descriptor is owned at once.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just created and nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int_option(&socket, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if reuse_port {
        set_int_option(&socket, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    let (storage, len) = socket_address(addr);
    // SAFETY: `storage` holds a sockaddr of `len` bytes for this family.
    let rc = unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a bound stream socket.
    if unsafe { libc::listen(fd, LISTEN_BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::net::TcpListener::from(socket))
}

/// `addr` as the C socket API takes it.
fn socket_address(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage (and the unspecified
    // address of either family).
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any
            // sockaddr type.
            let sin = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let sin6 = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn set_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid socket and an int option of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

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
            defer_accept(&listener, DEFER_ACCEPT_SECS);
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

    /// Connections may be waiting on every listener, whatever the poll
    /// has said so far (shutdown takes every backlog before closing).
    pub fn assume_ready(&mut self) {
        for l in &mut self.listeners {
            l.ready = true;
        }
    }

    /// Hand over new connections as soon as they are established, not with
    /// their first bytes: a process about to close its listener must not
    /// leave connections waiting for data in the kernel, where the close
    /// would reset them.
    pub fn stop_deferring(&self) {
        for l in &self.listeners {
            defer_accept(&l.listener, 0);
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
/// connections are only accepted earlier. Zero seconds turns it off.
fn defer_accept(listener: &impl AsRawFd, seconds: libc::c_int) {
    if let Err(e) = set_int_option(listener, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, seconds) {
        log::debug!("TCP_DEFER_ACCEPT: {e}");
    }
}
