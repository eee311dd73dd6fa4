//! The event loop: one thread, one `mio::Poll`. Owns the listener, the slab
//! of connections, the Consul poll timer and the hand-off from the poller
//! thread, signals, connection deadlines and shutdown. Never blocks on
//! anything but `poll`.

use crate::discovery::consul::Client;
use crate::discovery::pacing::Pacing;
use crate::discovery::poller::Poller;
use crate::discovery::tracker::Tracker;
use crate::logging;
use crate::server::conn::{Conn, LoopEnv, Readiness, Scratch, Verdict};
use crate::server::limits::{Limits, SHUTDOWN_GRACE};
use crate::server::responses::Site;
use crate::server::tls::TlsSource;
use crate::server::transport::Transport;
use log::Level;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const SIGNALS: Token = Token(2);
/// Connection tokens start here, past the fixed ones.
const FIRST_CONN: usize = 16;

/// Connections accepted per loop turn, so a connect flood cannot starve
/// clients already connected.
const ACCEPTS_PER_TURN: usize = 256;
/// How long the kernel holds a silent new connection before accepting it
/// anyway (the head timeout then starts). The kernel rounds it to its SYN-ACK
/// retransmissions: 1 s is the shortest.
const DEFER_ACCEPT_SECS: libc::c_int = 1;
/// Out of descriptors: wait this long before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Sweeps of expired connections happen at most this often.
const MIN_SWEEP_GAP: Duration = Duration::from_millis(100);
const EVENTS_CAPACITY: usize = 256;
/// TLS handshake steps per loop turn (a step that answers a ClientHello
/// costs a key exchange and a signature, up to a millisecond with RSA):
/// a handshake flood adds at most this many to any established client's
/// wait. The rest wait for the next turn, which comes at once.
const HANDSHAKES_PER_TURN: usize = 4;
/// How often the certificate and key files are checked for changes.
const TLS_FILE_CHECK: Duration = Duration::from_secs(5);

pub struct Reactor {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    scratch: Scratch,
    limits: Limits,
    site: Site,
    tracker: Tracker,
    poller: Poller,
    signals: Signals,
    pacing: Pacing,
    poll_in_flight: bool,
    /// When the query in flight was sent.
    poll_sent: Instant,
    /// The listener may have connections waiting (edge-triggered).
    accept_ready: bool,
    accept_paused_until: Option<Instant>,
    /// Set once per EMFILE episode, so the log is not flooded.
    descriptors_exhausted: bool,
    next_sweep: Option<Instant>,
    shutdown_by: Option<Instant>,
    expired: Vec<usize>,
    /// Connections to visit on the next turn without waiting for an event
    /// (`Verdict::Again`), and the ones being visited this turn.
    again: Vec<usize>,
    revisiting: Vec<usize>,
    /// TLS handshake steps left in this turn.
    handshakes_left: usize,
    /// The certificate in service, when the listener speaks TLS.
    tls: Option<TlsSource>,
    next_tls_check: Option<Instant>,
}

impl Reactor {
    pub fn new(
        listener: std::net::TcpListener,
        site: Site,
        tracker: Tracker,
        consul: Client,
        pacing: Pacing,
        limits: Limits,
        tls: Option<TlsSource>,
    ) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        listener.set_nonblocking(true)?;
        defer_accept(&listener);
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let poller = Poller::spawn(consul, waker)?;
        Ok(Reactor {
            poll,
            listener: Some(listener),
            conns: Slab::with_capacity(64),
            scratch: Scratch::new(),
            limits,
            site,
            tracker,
            poller,
            signals,
            pacing,
            poll_in_flight: false,
            poll_sent: Instant::now(),
            accept_ready: true,
            accept_paused_until: None,
            descriptors_exhausted: false,
            next_sweep: None,
            shutdown_by: None,
            expired: Vec::new(),
            again: Vec::new(),
            revisiting: Vec::new(),
            handshakes_left: HANDSHAKES_PER_TURN,
            next_tls_check: tls.as_ref().map(|_| Instant::now() + TLS_FILE_CHECK),
            tls,
        })
    }

    /// Run until a signal ends it.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            let timeout = self.timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            self.handshakes_left = HANDSHAKES_PER_TURN;
            self.revisit(now);
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_ready = true,
                    WAKER => self.take_poll_outcomes(now)?,
                    SIGNALS => {
                        if self.handle_signals(now) {
                            return Ok(());
                        }
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
            if let Some(by) = self.shutdown_by {
                if self.conns.is_empty() || now >= by {
                    log::warn!("Shutdown complete");
                    return Ok(());
                }
            }
        }
    }

    /// Sleep until the earliest thing that has a time.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        if self.can_accept(now) || !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let candidates = [
            (!self.poll_in_flight && self.shutdown_by.is_none()).then_some(self.pacing.next()),
            self.tracker.expiry(),
            self.next_sweep,
            self.accept_paused_until,
            self.shutdown_by,
            self.next_tls_check,
        ];
        candidates
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    fn can_accept(&self, now: Instant) -> bool {
        self.accept_ready
            && self.listener.is_some()
            && self.conns.len() < self.limits.max_connections
            && self.accept_paused_until.is_none_or(|t| now >= t)
    }

    fn accept(&mut self, now: Instant) {
        if !self.can_accept(now) {
            return;
        }
        self.accept_paused_until = None;
        for _ in 0..ACCEPTS_PER_TURN {
            if self.conns.len() >= self.limits.max_connections {
                return;
            }
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((sock, peer)) => {
                    let transport = match &self.tls {
                        None => Transport::plain(sock),
                        Some(tls) => match Transport::tls(sock, tls.config()) {
                            Ok(t) => t,
                            Err(e) => {
                                log::debug!("TLS for {peer}: {e}");
                                continue;
                            }
                        },
                    };
                    let mut conn = Conn::new(transport, peer, now, &self.limits);
                    let kept = self.with_env(now, |conns, env| {
                        let entry = conns.vacant_entry();
                        let key = entry.key();
                        let verdict = conn.start(Token(key + FIRST_CONN), env);
                        if verdict == Verdict::Close {
                            return None;
                        }
                        let deadline = conn.deadline();
                        entry.insert(conn);
                        Some((key, verdict, deadline))
                    });
                    if let Some((key, verdict, deadline)) = kept {
                        if verdict == Verdict::Again {
                            self.again.push(key);
                        }
                        self.note_deadline(deadline);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Caught up with the backlog: an exhaustion episode is over.
                    if self.descriptors_exhausted {
                        log::warn!("Accepting connections again");
                        self.descriptors_exhausted = false;
                    }
                    self.accept_ready = false;
                    return;
                }
                Err(e) if is_out_of_descriptors(&e) => {
                    if !self.descriptors_exhausted {
                        log::error!(
                            "Cannot accept connections: {e}; retrying every {} ms",
                            ACCEPT_BACKOFF.as_millis()
                        );
                        self.descriptors_exhausted = true;
                    }
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
                // Aborted or reset before we got to it: nothing to do.
                Err(e) => log::debug!("accept: {e}"),
            }
        }
    }

    fn conn_ready(&mut self, key: usize, ready: Readiness, now: Instant) {
        let draining = self.shutdown_by.is_some();
        let kept = self.with_env(now, |conns, env| {
            // A stale event for a closed (or reused) slot is harmless: the
            // connection just finds nothing to read.
            let conn = conns.get_mut(key)?;
            let verdict = conn.ready(ready, Token(key + FIRST_CONN), env);
            if verdict == Verdict::Close || (draining && conn.is_idle()) {
                conns.remove(key);
                return None;
            }
            Some((verdict, conn.deadline()))
        });
        if let Some((verdict, deadline)) = kept {
            if verdict == Verdict::Again {
                self.again.push(key);
            }
            self.note_deadline(deadline);
        }
    }

    /// Visit the connections that asked for another turn, first (they
    /// have waited longest), once each. A closed or reused slot just finds
    /// nothing to do.
    fn revisit(&mut self, now: Instant) {
        std::mem::swap(&mut self.again, &mut self.revisiting);
        self.revisiting.sort_unstable();
        self.revisiting.dedup();
        for i in 0..self.revisiting.len() {
            let key = self.revisiting[i];
            self.conn_ready(key, Readiness::REVISIT, now);
        }
        self.revisiting.clear();
    }

    /// The connections, and what handling one of them needs from the loop.
    fn with_env<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Slab<Conn>, &mut LoopEnv<'_>) -> R,
    ) -> R {
        let mut env = LoopEnv {
            registry: self.poll.registry(),
            scratch: &mut self.scratch,
            site: &self.site,
            limits: &self.limits,
            now,
            handshakes_left: &mut self.handshakes_left,
        };
        f(&mut self.conns, &mut env)
    }

    fn note_deadline(&mut self, deadline: Instant) {
        if self.next_sweep.is_none_or(|s| deadline < s) {
            self.next_sweep = Some(deadline);
        }
    }

    fn run_timers(&mut self, now: Instant) -> io::Result<()> {
        if !self.poll_in_flight && self.shutdown_by.is_none() && now >= self.pacing.next() {
            self.start_poll(now)?;
        }
        if self.tracker.expiry().is_some_and(|at| now >= at) && self.tracker.expire(now) {
            self.site.update(&self.tracker);
        }
        if self.next_sweep.is_some_and(|at| now >= at) {
            self.sweep(now);
        }
        if self.next_tls_check.is_some_and(|at| now >= at) {
            self.next_tls_check = Some(now + TLS_FILE_CHECK);
            if self.tls.as_ref().is_some_and(TlsSource::changed) {
                self.reload_tls("a changed file");
            }
        }
        Ok(())
    }

    /// New connections get the re-read pair; open ones keep theirs. A
    /// broken pair is logged and the one in service stays.
    fn reload_tls(&mut self, why: &str) {
        let Some(tls) = &mut self.tls else {
            log::info!("Reload requested by {why}: no TLS certificate to reload");
            return;
        };
        match tls.reload() {
            Ok(()) => log::warn!("Reloaded the TLS certificate and key after {why}"),
            Err(e) => log::error!(
                "Keeping the TLS certificate in service: reload after {why} failed: {e}"
            ),
        }
    }

    fn start_poll(&mut self, now: Instant) -> io::Result<()> {
        if !self.poller.request(self.pacing.query()) {
            return Err(poller_gone());
        }
        self.poll_in_flight = true;
        self.poll_sent = now;
        Ok(())
    }

    fn take_poll_outcomes(&mut self, now: Instant) -> io::Result<()> {
        // Wake-ups coalesce: take everything that is there.
        loop {
            match self.poller.try_outcome() {
                Ok(Some(outcome)) => {
                    self.poll_in_flight = false;
                    match outcome.result {
                        Ok(answer) => {
                            self.pacing.on_answer(answer.index, self.poll_sent, now);
                            self.tracker.on_answer(answer, SystemTime::now());
                        }
                        Err(e) => {
                            self.pacing.on_error(now);
                            self.tracker.on_error(&e, now);
                        }
                    }
                    self.site.update(&self.tracker);
                }
                Ok(None) => return Ok(()),
                Err(()) => return Err(poller_gone()),
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        let mut earliest: Option<Instant> = None;
        self.expired.clear();
        for (key, conn) in self.conns.iter() {
            let d = conn.deadline();
            if d <= now {
                self.expired.push(key);
            } else if earliest.is_none_or(|e| d < e) {
                earliest = Some(d);
            }
        }
        for &key in &self.expired {
            log::debug!("Closing a connection past its deadline");
            self.conns.remove(key);
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
                SIGHUP => self.reload_tls("SIGHUP"),
                _ if self.shutdown_by.is_some() => {
                    log::warn!("Second termination signal: exiting now");
                    return true;
                }
                _ => self.begin_shutdown(now),
            }
        }
        false
    }

    /// Stop accepting, close idle connections, let responses in flight
    /// finish (each closing its connection), for at most `SHUTDOWN_GRACE`.
    fn begin_shutdown(&mut self, now: Instant) {
        log::warn!(
            "Shutting down: finishing {} open connection(s) within {} s",
            self.conns.len(),
            SHUTDOWN_GRACE.as_secs()
        );
        self.shutdown_by = Some(now + SHUTDOWN_GRACE);
        self.site.draining = true;
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.conns.retain(|_, conn| !conn.is_idle());
    }
}

/// The poller thread cannot fail: every failure of a query is a `PollError`
/// answered over the channel, and the thread ends only when the loop drops
/// its handle. Only a panic (a bug) can end it sooner, and the release build
/// aborts the process on a panic (`panic = "abort"`), for its supervisor to
/// restart. A build that unwinds (tests, debug) ends the loop here with an
/// error instead: the same outcome, rather than a restart path that the
/// release build could never run.
fn poller_gone() -> io::Error {
    io::Error::other("the Consul poller thread is gone (it panicked)")
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
