//! Running under a service manager (systemd): readiness, status, reload
//! and stop notifications and the watchdog (`notify`), and the listening
//! sockets it may pass us (`activation`). `Service` is what the event loop
//! drives; without `NOTIFY_SOCKET` every call does nothing.

pub mod activation;
pub mod notify;

use crate::discovery::tracker::Tracker;
use crate::logging;
use log::Level;
use notify::{NOTIFY_SOCKET, Notifier, WATCHDOG_PID, WATCHDOG_USEC};
use std::time::{Duration, Instant};

/// The loop's side of the notification protocol.
pub struct Service {
    notifier: Option<Notifier>,
    /// Half the manager's watchdog timeout: `WATCHDOG=1` this often.
    ping_every: Option<Duration>,
    next_ping: Option<Instant>,
    /// The `STATUS=` last sent, so that only changes are sent.
    status: String,
    /// A ping was held back because discovery is stuck (logged once).
    holding_back: bool,
    /// A send failed (logged once).
    send_failed: bool,
}

impl Service {
    /// As the environment says; a variable that cannot be used is logged
    /// and ignored (the daemon still serves).
    pub fn from_env() -> Service {
        let mut service = Service::none();
        let Some(address) = std::env::var_os(NOTIFY_SOCKET) else {
            return service;
        };
        match Notifier::connect(&address) {
            Ok(notifier) => service.notifier = Some(notifier),
            Err(e) => {
                log::warn!("Not notifying the service manager: {e}");
                return service;
            }
        }
        let usec = std::env::var_os(WATCHDOG_USEC);
        let pid = std::env::var_os(WATCHDOG_PID);
        match notify::watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id()) {
            Ok(interval) => service.ping_every = interval.map(|i| i / 2),
            Err(e) => log::warn!("No watchdog pings: {e}"),
        }
        service
    }

    /// Not under a service manager.
    pub fn none() -> Service {
        Service {
            notifier: None,
            ping_every: None,
            next_ping: None,
            status: String::new(),
            holding_back: false,
            send_failed: false,
        }
    }

    /// Listening, and the first discovery answer is in.
    pub fn ready(&mut self, tracker: &Tracker, now: Instant) {
        self.status = status_text(tracker);
        self.send(&format!("READY=1\nSTATUS={}", self.status));
        self.next_ping = self.ping_every.map(|every| now + every);
    }

    /// What discovery knows may have changed: say so when it did.
    pub fn update(&mut self, tracker: &Tracker) {
        if self.notifier.is_none() {
            return;
        }
        let status = status_text(tracker);
        if status != self.status {
            self.send(&format!("STATUS={status}"));
            self.status = status;
        }
    }

    /// A reload (SIGHUP) begins; `reloaded` ends it.
    pub fn reloading(&mut self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            notify::monotonic_usec()
        ));
    }

    pub fn reloaded(&mut self) {
        self.send(&format!("READY=1\nSTATUS={}", self.status));
    }

    pub fn stopping(&mut self) {
        self.send("STOPPING=1\nSTATUS=Shutting down");
    }

    /// When `on_timer` must run next, if ever.
    pub fn next_timer(&self) -> Option<Instant> {
        self.next_ping
    }

    /// Ping the watchdog when due, but only while discovery does its work:
    /// a loop that turns while discovery is stuck would serve a stale node
    /// forever, so the manager should restart us.
    pub fn on_timer(&mut self, now: Instant, discovery_responsive: bool) {
        let (Some(at), Some(every)) = (self.next_ping, self.ping_every) else {
            return;
        };
        if now < at {
            return;
        }
        self.next_ping = Some(now + every);
        if discovery_responsive {
            self.holding_back = false;
            self.send("WATCHDOG=1");
        } else if !self.holding_back {
            self.holding_back = true;
            // Even with -l: the operator must learn why we were restarted.
            logging::always(
                Level::Error,
                format_args!(
                    "The Consul poller thread is stuck past every timeout: no more watchdog \
                     pings, the service manager will restart us"
                ),
            );
        }
    }

    fn send(&mut self, message: &str) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        match notifier.send(message) {
            Ok(()) => self.send_failed = false,
            Err(e) if !self.send_failed => {
                self.send_failed = true;
                log::warn!("Could not notify the service manager: {e}");
            }
            Err(_) => {}
        }
    }
}

/// `STATUS=` text: what clients are sent to.
fn status_text(tracker: &Tracker) -> String {
    match tracker.active() {
        Some(node) => format!("Redirecting to the active Vault node {node}"),
        None => "No active Vault node known: answering 503".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::tracker;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    /// A service speaking to a test socket (abstract, unique per test).
    fn with_manager(test: &str, ping_every: Option<Duration>) -> (Service, UnixDatagram) {
        let name = format!("vr-service-{test}-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let manager = UnixDatagram::bind_addr(&addr).unwrap();
        manager.set_nonblocking(true).unwrap();
        let mut service = Service::none();
        service.notifier = Some(Notifier::connect(format!("@{name}").as_ref()).unwrap());
        service.ping_every = ping_every;
        (service, manager)
    }

    fn messages(manager: &UnixDatagram) -> Vec<String> {
        let mut buf = [0u8; 512];
        let mut out = Vec::new();
        while let Ok(n) = manager.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn the_watchdog_is_pinged_only_while_discovery_is_responsive() {
        let every = Duration::from_secs(15);
        let (mut service, manager) = with_manager("watchdog", Some(every));
        let start = Instant::now();
        service.ready(&tracker::knowing("a:8200"), start);
        assert_eq!(
            messages(&manager),
            ["READY=1\nSTATUS=Redirecting to the active Vault node a:8200"]
        );
        assert_eq!(service.next_timer(), Some(start + every));
        service.on_timer(start + every / 2, true);
        assert!(messages(&manager).is_empty(), "not due yet");
        service.on_timer(start + every, true);
        assert_eq!(messages(&manager), ["WATCHDOG=1"]);
        // Discovery stuck: no ping, so that the manager restarts us.
        service.on_timer(start + every * 2, false);
        assert!(messages(&manager).is_empty());
        service.on_timer(start + every * 3, true);
        assert_eq!(messages(&manager), ["WATCHDOG=1"]);
    }

    #[test]
    fn status_is_sent_on_changes_only() {
        let (mut service, manager) = with_manager("status", None);
        service.ready(&tracker::knowing("a:8200"), Instant::now());
        service.update(&tracker::knowing("a:8200"));
        service.update(&tracker::knowing("b:8200"));
        service.update(&tracker::knowing("b:8200"));
        assert_eq!(
            messages(&manager)[1..],
            ["STATUS=Redirecting to the active Vault node b:8200"]
        );
        assert_eq!(service.next_timer(), None, "no watchdog asked for");
    }

    #[test]
    fn without_a_manager_nothing_is_sent_or_scheduled() {
        let mut service = Service::none();
        service.ready(&tracker::knowing("a:8200"), Instant::now());
        service.reloading();
        service.stopping();
        assert_eq!(service.next_timer(), None);
    }
}
