//! Accepting connections: binding the listening socket (with SO_REUSEPORT
//! if asked), whether it may have connections waiting (edge-triggered
//! readiness), and the back-off while the process is out of descriptors,
//! logged once per episode. How many connections may be open at once is
//! the loop's to say.

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
        defer_accept(&listener, DEFER_ACCEPT_SECS);
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

    /// Hand over new connections as soon as they are established, not with
    /// their first bytes: a process about to close its listener must not
    /// leave connections waiting for data in the kernel, where the close
    /// would reset them.
    pub fn stop_deferring(&self) {
        if let Some(listener) = &self.listener {
            defer_accept(listener, 0);
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
/// connections are only accepted earlier. Zero seconds turns it off.
fn defer_accept(listener: &impl AsRawFd, seconds: libc::c_int) {
    if let Err(e) = set_int_option(listener, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, seconds) {
        log::debug!("TCP_DEFER_ACCEPT: {e}");
    }
}
