//! The event loop: one thread, one `mio::Poll`. Dispatches readiness to
//! the acceptor, the connections, discovery's hand-off and the signals;
//! runs the timers (discovery, connection deadlines, TLS file checks);
//! visits connections that asked for another turn; shuts down gracefully.
//! Never blocks on anything but `poll`.

use crate::discovery::Discovery;
use crate::logging;
use crate::server::accept::Acceptor;
use crate::server::conn::{Conn, Readiness, SharedBuffers, Turn, Verdict};
use crate::server::limits::{Limits, SHUTDOWN_GRACE};
use crate::server::responses::Responses;
use crate::server::tls::TlsSource;
use crate::server::transport::Transport;
use crate::service::Service;
use crate::service::activation::MAX_LISTENERS;
use log::Level;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAKER: Token = Token(1);
const SIGNALS: Token = Token(2);
/// Listener tokens: this plus the listener's index (several when the
/// service manager passes several sockets).
const FIRST_LISTENER: usize = 8;
/// Connection tokens start here, past the fixed ones and the listeners'.
/// A connection's token is its slab key plus this.
const FIRST_CONN: usize = 16;
const _: () = assert!(FIRST_LISTENER + MAX_LISTENERS <= FIRST_CONN);

/// Connections accepted per loop turn, so a connect flood cannot starve
/// clients already connected.
const ACCEPTS_PER_TURN: usize = 256;
/// Sweeps of expired connections happen at most this often.
const MIN_SWEEP_GAP: Duration = Duration::from_millis(100);
const EVENTS_CAPACITY: usize = 256;
/// TLS handshake steps per loop turn (a step that answers a ClientHello
/// costs a key exchange and a signature, up to a millisecond with RSA):
/// a handshake flood adds at most this many to any established client's
/// wait. The rest wait for the next turn, which comes at once.
const HANDSHAKES_PER_TURN: usize = 4;

/// The event loop and everything it owns.
pub struct Reactor {
    poll: Poll,
    acceptor: Acceptor,
    conns: Slab<Conn>,
    buffers: SharedBuffers,
    limits: Limits,
    responses: Responses,
    discovery: Discovery,
    /// Notifications to the service manager, and its watchdog.
    service: Service,
    signals: Signals,
    /// The certificate in service, when the listener speaks TLS.
    tls: Option<TlsSource>,
    /// When the earliest connection deadline may have passed.
    next_sweep: Option<Instant>,
    /// `--drain`: how long a termination signal leaves us serving first.
    drain: Duration,
    /// Set by the first SIGTERM/SIGINT with `--drain`: serve (health says
    /// 503, every answer closes its connection) until then, then shut down.
    draining_until: Option<Instant>,
    /// Set when shutdown begins: the loop ends by then at the latest.
    shutdown_by: Option<Instant>,
    revisits: Revisits,
}

/// Connections to visit on the next turn without waiting for an event
/// (`Verdict::Again`), and what a turn may still spend on handshakes.
struct Revisits {
    again: Vec<usize>,
    /// The ones being visited this turn (kept to reuse its memory).
    visiting: Vec<usize>,
    handshakes_left: usize,
}

impl Reactor {
    /// Take the bound listeners and the first discovery answer, register
    /// everything with a new poll, and start discovery's thread.
    pub fn new(
        listeners: Vec<std::net::TcpListener>,
        responses: Responses,
        discovery: impl FnOnce(Arc<Waker>) -> io::Result<Discovery>,
        limits: Limits,
        drain: Duration,
        tls: Option<TlsSource>,
        service: Service,
    ) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let acceptor = Acceptor::new(listeners, poll.registry(), FIRST_LISTENER)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        Ok(Reactor {
            poll,
            acceptor,
            conns: Slab::with_capacity(64),
            buffers: SharedBuffers::new(),
            limits,
            responses,
            discovery: discovery(waker)?,
            service,
            signals,
            tls,
            next_sweep: None,
            drain,
            draining_until: None,
            shutdown_by: None,
            revisits: Revisits {
                again: Vec::new(),
                visiting: Vec::new(),
                handshakes_left: HANDSHAKES_PER_TURN,
            },
        })
    }

    /// Run until a signal ends it.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        self.service.ready(self.discovery.tracker(), Instant::now());
        loop {
            let timeout = self.timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            self.revisits.handshakes_left = HANDSHAKES_PER_TURN;
            self.revisit(now);
            for event in events.iter() {
                match event.token() {
                    WAKER => {
                        if self.discovery.on_wake(now)? {
                            self.discovery_changed();
                        }
                    }
                    SIGNALS => {
                        if self.handle_signals(now) {
                            return Ok(());
                        }
                    }
                    Token(t) if t < FIRST_CONN => {
                        self.acceptor.set_ready(t.wrapping_sub(FIRST_LISTENER))
                    }
                    Token(t) => {
                        let ready = Readiness {
                            readable: event.is_readable(),
                            read_closed: event.is_read_closed(),
                        };
                        self.conn_ready(t - FIRST_CONN, ready, now);
                    }
                }
            }
            self.accept(now);
            self.run_timers(now)?;
            if self
                .shutdown_by
                .is_some_and(|by| self.conns.is_empty() || now >= by)
            {
                log::warn!("Shutdown complete");
                return Ok(());
            }
        }
    }

    /// Sleep until the earliest thing that has a time.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        if self.can_accept(now) || !self.revisits.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let candidates = [
            self.discovery.next_timer(),
            self.next_sweep,
            self.acceptor.paused_until(),
            self.draining_until,
            self.shutdown_by,
            self.tls.as_ref().map(TlsSource::next_check),
            self.service.next_timer(),
        ];
        candidates
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    fn can_accept(&self, now: Instant) -> bool {
        self.conns.len() < self.limits.max_connections && self.acceptor.can_accept(now)
    }

    fn accept(&mut self, now: Instant) {
        if !self.can_accept(now) {
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            if self.conns.len() >= self.limits.max_connections {
                return;
            }
            match self.acceptor.next(now) {
                Some((sock, peer)) => self.open(sock, peer, now),
                None => return,
            }
        }
    }

    /// Serve a new connection at once (its first bytes are usually in), and
    /// keep it if it stays open.
    fn open(&mut self, sock: TcpStream, peer: SocketAddr, now: Instant) {
        let transport = match &self.tls {
            None => Transport::plain(sock),
            Some(tls) => match Transport::tls(sock, tls.config()) {
                Ok(t) => t,
                Err(e) => {
                    log::debug!("TLS for {peer}: {e}");
                    return;
                }
            },
        };
        let mut conn = Conn::new(transport, peer, now, &self.limits);
        let (registry, conns, mut turn) = self.split(now);
        let verdict = conn.start(&mut turn);
        if verdict == Verdict::Close {
            return;
        }
        let entry = conns.vacant_entry();
        let key = entry.key();
        let interest = conn.interest();
        let token = Token(key + FIRST_CONN);
        if registry
            .register(conn.stream_mut().socket(), token, interest)
            .is_err()
        {
            return;
        }
        let deadline = conn.deadline();
        entry.insert(conn);
        self.kept(key, verdict, deadline);
    }

    fn conn_ready(&mut self, key: usize, ready: Readiness, now: Instant) {
        let (registry, conns, mut turn) = self.split(now);
        let stopping = turn.stopping;
        // A stale event for a closed (or reused) slot is harmless: the
        // connection just finds nothing to read.
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        let mut verdict = conn.ready(ready, &mut turn);
        if let Some(interest) = conn.interest_change() {
            let token = Token(key + FIRST_CONN);
            if registry
                .reregister(conn.stream_mut().socket(), token, interest)
                .is_err()
            {
                verdict = Verdict::Close;
            }
        }
        if verdict == Verdict::Close || (stopping && conn.between_requests()) {
            conns.remove(key);
            return;
        }
        let deadline = conn.deadline();
        self.kept(key, verdict, deadline);
    }

    /// A connection stays: note its deadline, and whether it wants another
    /// turn.
    #[inline]
    fn kept(&mut self, key: usize, verdict: Verdict, deadline: Instant) {
        if verdict == Verdict::Again {
            self.revisits.again.push(key);
        }
        if self.next_sweep.is_none_or(|s| deadline < s) {
            self.next_sweep = Some(deadline);
        }
    }

    /// Visit the connections that asked for another turn, first (they
    /// have waited longest), once each. A closed or reused slot just finds
    /// nothing to do.
    fn revisit(&mut self, now: Instant) {
        let revisits = &mut self.revisits;
        std::mem::swap(&mut revisits.again, &mut revisits.visiting);
        revisits.visiting.sort_unstable();
        revisits.visiting.dedup();
        for i in 0..self.revisits.visiting.len() {
            let key = self.revisits.visiting[i];
            self.conn_ready(key, Readiness::REVISIT, now);
        }
        self.revisits.visiting.clear();
    }

    /// What serving a connection needs from the loop this turn, beside the
    /// connections and the registry to (re)register their sockets with.
    #[inline]
    fn split(&mut self, now: Instant) -> (&Registry, &mut Slab<Conn>, Turn<'_>) {
        let turn = Turn {
            buffers: &mut self.buffers,
            responses: &self.responses,
            limits: &self.limits,
            stopping: self.draining_until.is_some() || self.shutdown_by.is_some(),
            now,
            handshakes_left: &mut self.revisits.handshakes_left,
        };
        (self.poll.registry(), &mut self.conns, turn)
    }

    fn run_timers(&mut self, now: Instant) -> io::Result<()> {
        if self.draining_until.is_some_and(|until| now >= until) {
            self.draining_until = None;
            self.begin_shutdown(now);
        }
        if self.discovery.on_timer(now)? {
            self.discovery_changed();
        }
        self.service
            .on_timer(now, self.discovery.is_responsive(now));
        if self.next_sweep.is_some_and(|at| now >= at) {
            self.sweep(now);
        }
        if let Some(tls) = &mut self.tls {
            tls.on_timer(now);
        }
        Ok(())
    }

    /// Close the connections past their deadline; find the next deadline.
    fn sweep(&mut self, now: Instant) {
        let before = self.conns.len();
        let mut earliest: Option<Instant> = None;
        self.conns.retain(|_, conn| {
            let deadline = conn.deadline();
            if deadline <= now {
                return false;
            }
            earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
            true
        });
        if self.conns.len() < before {
            log::debug!(
                "Closed {} connection(s) past their deadline",
                before - self.conns.len()
            );
        }
        self.next_sweep = earliest.map(|e| e.max(now + MIN_SWEEP_GAP));
    }

    /// Returns true when the loop must end now.
    fn handle_signals(&mut self, now: Instant) -> bool {
        let pid = std::process::id();
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                SIGUSR1 => {
                    logging::always(
                        Level::Warn,
                        format_args!(
                            "Logging enabled via signal; send SIGUSR2 to PID {pid} to disable logging"
                        ),
                    );
                    logging::set_enabled(true);
                }
                SIGUSR2 => {
                    logging::always(
                        Level::Warn,
                        format_args!(
                            "Logging disabled via signal; send SIGUSR1 to PID {pid} to enable logging"
                        ),
                    );
                    logging::set_enabled(false);
                }
                SIGHUP => self.reload(),
                _ if self.shutdown_by.is_some() || self.draining_until.is_some() => {
                    log::warn!("Second termination signal: exiting now");
                    return true;
                }
                _ if !self.drain.is_zero() => self.begin_draining(now),
                _ => self.begin_shutdown(now),
            }
        }
        false
    }

    /// What discovery knows changed: answer and report accordingly.
    fn discovery_changed(&mut self) {
        self.responses.update(self.discovery.tracker());
        self.service.update(self.discovery.tracker());
    }

    /// SIGHUP: re-read the TLS files, bracketed for the service manager.
    fn reload(&mut self) {
        self.service.reloading();
        match &mut self.tls {
            Some(tls) => tls.reload_logged("SIGHUP"),
            None => log::info!("Reload requested by SIGHUP: no TLS certificate to reload"),
        }
        self.service.reloaded();
    }

    /// `--drain`: the health check answers 503 from now on, so that load
    /// balancers send new clients elsewhere; meanwhile whoever still comes
    /// is accepted and redirected, and every answer closes its connection
    /// so that keep-alive clients reconnect (elsewhere) without an error.
    /// Shutdown follows when the drain time is up.
    fn begin_draining(&mut self, now: Instant) {
        log::warn!(
            "Draining for {} s: health check answers 503, requests are still redirected",
            self.drain.as_secs_f64()
        );
        self.service.stopping();
        self.draining_until = Some(now + self.drain);
        self.responses.start_draining(self.discovery.tracker());
        self.acceptor.stop_deferring();
    }

    /// Take what is waiting in the backlog, then stop accepting and asking
    /// discovery, close idle connections, let responses in flight finish
    /// (each closing its connection), for at most `SHUTDOWN_GRACE`.
    fn begin_shutdown(&mut self, now: Instant) {
        self.shutdown_by = Some(now + SHUTDOWN_GRACE);
        let waiting = self.take_backlog(now);
        self.acceptor.close(self.poll.registry());
        for (sock, peer) in waiting {
            self.open(sock, peer, now);
        }
        log::warn!(
            "Shutting down: finishing {} open connection(s) within {} s",
            self.conns.len(),
            SHUTDOWN_GRACE.as_secs()
        );
        self.service.stopping();
        self.discovery.stop();
        self.conns.retain(|_, conn| !conn.between_requests());
    }

    /// Accept until the backlog is empty (up to the connection cap), to be
    /// served once the listener is closed: closing it resets whatever waits
    /// there. Nothing is done in between, to keep the window small in which
    /// the kernel may still queue a connection to a closing `--reuse-port`
    /// listener (`net.ipv4.tcp_migrate_req=1` hands those to a sibling).
    fn take_backlog(&mut self, now: Instant) -> Vec<(TcpStream, SocketAddr)> {
        // The poll may not have reported what queued since the last look.
        self.acceptor.assume_ready();
        let mut waiting = Vec::new();
        while self.conns.len() + waiting.len() < self.limits.max_connections {
            match self.acceptor.next(now) {
                Some(accepted) => waiting.push(accepted),
                None => break,
            }
        }
        waiting
    }
}
