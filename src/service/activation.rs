//! Socket activation (sd_listen_fds(3)): when `LISTEN_PID` names us,
//! `LISTEN_FDS` listening sockets wait for us from descriptor 3 on, opened
//! by the service manager (or `systemd-socket-activate`), and we serve
//! those instead of binding.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};

pub const LISTEN_FDS: &str = "LISTEN_FDS";
pub const LISTEN_PID: &str = "LISTEN_PID";
/// The first passed descriptor (SD_LISTEN_FDS_START).
const FIRST_FD: RawFd = 3;
/// More would be a mistake in the unit: the loop's tokens leave room for
/// this many listeners.
pub const MAX_LISTENERS: usize = 8;

/// Why the passed sockets cannot be served.
#[derive(Debug)]
pub enum ActivationError {
    BadCount(String),
    /// The descriptor is not a listening TCP socket.
    NotListening(RawFd, String),
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::BadCount(v) => write!(
                f,
                "{LISTEN_FDS}={v:?}: expected 1 to {MAX_LISTENERS} passed sockets"
            ),
            ActivationError::NotListening(fd, why) => write!(
                f,
                "descriptor {fd} passed by the service manager is not a listening TCP socket: {why}"
            ),
        }
    }
}

/// How many sockets were passed to us: `None` when the variables are
/// unset or meant for another process (they are inherited by children).
pub fn passed_count(
    fds: Option<&OsStr>,
    pid: Option<&OsStr>,
    our_pid: u32,
) -> Result<Option<usize>, ActivationError> {
    let (Some(fds), Some(pid)) = (fds, pid) else {
        return Ok(None);
    };
    if pid.to_str().and_then(|p| p.trim().parse::<u32>().ok()) != Some(our_pid) {
        return Ok(None);
    }
    let text = fds.to_string_lossy();
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_LISTENERS).contains(&n) => Ok(Some(n)),
        _ => Err(ActivationError::BadCount(text.into_owned())),
    }
}

/// Take the passed sockets from the environment, if any were passed to us.
pub fn inherited_listeners() -> Result<Option<Vec<TcpListener>>, ActivationError> {
    let fds = std::env::var_os(LISTEN_FDS);
    let pid = std::env::var_os(LISTEN_PID);
    let Some(count) = passed_count(fds.as_deref(), pid.as_deref(), std::process::id())? else {
        return Ok(None);
    };
    (FIRST_FD..FIRST_FD + count as RawFd)
        .map(take_listener)
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Own descriptor `fd` as a listener, once it proves to be a listening
/// stream socket; close-on-exec like every descriptor we open.
fn take_listener(fd: RawFd) -> Result<TcpListener, ActivationError> {
    let not_listening = |why: String| ActivationError::NotListening(fd, why);
    let kind = socket_option(fd, libc::SO_TYPE).map_err(|e| not_listening(e.to_string()))?;
    if kind != libc::SOCK_STREAM {
        return Err(not_listening("not a stream socket".into()));
    }
    if socket_option(fd, libc::SO_ACCEPTCONN).map_err(|e| not_listening(e.to_string()))? == 0 {
        return Err(not_listening("not listening".into()));
    }
    // SAFETY: fcntl on a descriptor that exists (getsockopt succeeded).
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: the manager handed this descriptor to us alone; nothing else
    // in the process owns it.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    listener
        .local_addr()
        .map_err(|e| not_listening(format!("no TCP address: {e}")))?;
    Ok(listener)
}

fn socket_option(fd: RawFd, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: an int-sized option into an int we own, its size given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::fd::IntoRawFd;

    fn count(fds: Option<&str>, pid: Option<&str>) -> Result<Option<usize>, ActivationError> {
        let (fds, pid) = (fds.map(OsString::from), pid.map(OsString::from));
        passed_count(fds.as_deref(), pid.as_deref(), 42)
    }

    #[test]
    fn only_sockets_passed_to_us_count() {
        assert_eq!(count(None, None).unwrap(), None);
        assert_eq!(count(Some("1"), None).unwrap(), None);
        assert_eq!(count(Some("1"), Some("41")).unwrap(), None);
        assert_eq!(count(Some("1"), Some("42")).unwrap(), Some(1));
        assert_eq!(count(Some("2"), Some("42")).unwrap(), Some(2));
        for bad in ["0", "-1", "x", "9"] {
            assert!(count(Some(bad), Some("42")).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_listening_socket_is_taken_anything_else_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let taken = take_listener(listener.into_raw_fd()).unwrap();
        assert_eq!(taken.local_addr().unwrap(), addr);

        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = file.into_raw_fd();
        assert!(matches!(
            take_listener(fd),
            Err(ActivationError::NotListening(..))
        ));
        // SAFETY: ours, and refused above without being taken.
        unsafe { libc::close(fd) };

        let unconnected = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = unconnected.into_raw_fd();
        assert!(take_listener(fd).is_err());
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
}
