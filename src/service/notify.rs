//! systemd's readiness protocol (sd_notify(3)), without libsystemd: one
//! datagram per message to the Unix socket named by `NOTIFY_SOCKET` (a
//! path, or an abstract name written with a leading `@`). Sending never
//! blocks the event loop: a message the socket cannot take at once is
//! dropped, and the next one says the same or more.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// Why `NOTIFY_SOCKET` or `WATCHDOG_USEC` cannot be used.
#[derive(Debug)]
pub enum NotifyError {
    /// Neither an absolute path nor `@name`.
    BadAddress(String),
    Socket(io::Error),
    BadWatchdog(String),
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::BadAddress(a) => write!(
                f,
                "{NOTIFY_SOCKET}={a:?} is neither an absolute path nor an @abstract name"
            ),
            NotifyError::Socket(e) => write!(f, "{NOTIFY_SOCKET}: {e}"),
            NotifyError::BadWatchdog(v) => {
                write!(
                    f,
                    "{WATCHDOG_USEC}={v:?} is not a positive number of microseconds"
                )
            }
        }
    }
}

/// A socket to the service manager.
pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
}

impl Notifier {
    /// From the value of `NOTIFY_SOCKET`.
    pub fn connect(address: &OsStr) -> Result<Notifier, NotifyError> {
        let bytes = address.as_bytes();
        let to = match bytes.first() {
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
            Some(b'/') => SocketAddr::from_pathname(address),
            _ => {
                return Err(NotifyError::BadAddress(
                    address.to_string_lossy().into_owned(),
                ));
            }
        }
        .map_err(NotifyError::Socket)?;
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        socket.set_nonblocking(true).map_err(NotifyError::Socket)?;
        Ok(Notifier { socket, to })
    }

    /// Send one message (`KEY=value` lines). Fails rather than waits.
    pub fn send(&self, message: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(message.as_bytes(), &self.to)
            .map(drop)
    }
}

/// How often the manager wants `WATCHDOG=1`, from `WATCHDOG_USEC`; `None`
/// when it is unset, or set for another process (`WATCHDOG_PID`).
pub fn watchdog_interval(
    usec: Option<&OsStr>,
    pid: Option<&OsStr>,
    our_pid: u32,
) -> Result<Option<Duration>, NotifyError> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    if let Some(pid) = pid {
        if pid.to_str().and_then(|p| p.trim().parse::<u32>().ok()) != Some(our_pid) {
            return Ok(None);
        }
    }
    let text = usec.to_string_lossy();
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(Duration::from_micros(n))),
        _ => Err(NotifyError::BadWatchdog(text.into_owned())),
    }
}

/// `CLOCK_MONOTONIC` in microseconds, as `MONOTONIC_USEC=` wants it
/// (`Instant` does not expose its clock).
pub fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "vault-redirector-notify-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn received(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a datagram");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn messages_reach_a_socket_bound_to_a_path() {
        let dir = temp_dir("path");
        let path = dir.join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::connect(path.as_os_str()).unwrap();
        notifier.send("READY=1\nSTATUS=ok").unwrap();
        assert_eq!(received(&manager), "READY=1\nSTATUS=ok");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!("vault-redirector-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let manager = UnixDatagram::bind_addr(&addr).unwrap();
        let notifier = Notifier::connect(OsStr::new(&format!("@{name}"))).unwrap();
        notifier.send("WATCHDOG=1").unwrap();
        assert_eq!(received(&manager), "WATCHDOG=1");
    }

    #[test]
    fn a_manager_gone_is_an_error_not_a_wait() {
        let dir = temp_dir("gone");
        let path = dir.join("notify");
        drop(UnixDatagram::bind(&path).unwrap());
        let notifier = Notifier::connect(path.as_os_str()).unwrap();
        assert!(notifier.send("READY=1").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn addresses_that_are_neither_paths_nor_abstract_are_refused() {
        for bad in ["", "relative/notify", "notify"] {
            assert!(matches!(
                Notifier::connect(OsStr::new(bad)),
                Err(NotifyError::BadAddress(_))
            ));
        }
    }

    #[test]
    fn watchdog_interval_for_us_only() {
        let os = |s: &str| OsString::from(s);
        let interval = |usec: Option<&str>, pid: Option<&str>| {
            let (usec, pid) = (usec.map(os), pid.map(os));
            watchdog_interval(usec.as_deref(), pid.as_deref(), 42)
        };
        assert_eq!(interval(None, None).unwrap(), None);
        assert_eq!(
            interval(Some("30000000"), None).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            interval(Some("200000"), Some("42")).unwrap(),
            Some(Duration::from_millis(200))
        );
        assert_eq!(interval(Some("200000"), Some("43")).unwrap(), None);
        for bad in ["0", "-1", "soon", ""] {
            assert!(interval(Some(bad), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn monotonic_usec_follows_the_monotonic_clock() {
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(20));
        let b = monotonic_usec();
        assert!(a > 0 && b >= a + 20_000, "{a} {b}");
    }
}
