//! Connection limits and deadlines: the named defaults, and the values in
//! force (operators may change some with long options).

use std::time::Duration;

/// Concurrent connections; at the cap we stop accepting until one closes.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// A request head must arrive within this long of its first byte (or of
/// the connection opening): slow-header clients cannot pin a connection.
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection with nothing going on is closed after this.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// After the last response: how long to drain the client's input so that
/// closing does not reset the connection and destroy the response.
pub const LINGER: Duration = Duration::from_secs(2);
/// A graceful shutdown waits at most this long for responses in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The limits in force for client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Descriptors kept for everything that is not a client connection: stdio,
/// the listener, epoll, the waker, the signal pipe, Consul sockets (ureq
/// keeps a few idle), name resolution, the token file, the TLS files on a
/// reload. Client connections never take these: at RLIMIT_NOFILE 40, 60
/// keep-alive clients once made the token file unreadable and, after the
/// grace period, every client got a 503.
pub const DESCRIPTOR_RESERVE: u64 = 32;
/// However low the open-file limit, serve at least this many clients.
const MIN_CONNECTIONS: usize = 1;

/// Raise the soft limit on open descriptors towards the hard limit, so the
/// connection cap, not a distribution's default of 1024, is what binds.
/// Returns the soft limit in force afterwards.
pub fn raise_descriptor_limit(max_connections: usize) -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return None;
    }
    let wanted = (max_connections as u64)
        .saturating_add(DESCRIPTOR_RESERVE)
        .min(rl.rlim_max);
    if wanted > rl.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: rl.rlim_max,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(wanted);
        }
    }
    Some(rl.rlim_cur)
}

/// How many client connections fit beside the reserve under the soft
/// open-file limit `soft`: the cap the loop accepts up to.
pub fn connection_cap(max_connections: usize, soft: u64) -> usize {
    let fits = usize::try_from(soft.saturating_sub(DESCRIPTOR_RESERVE)).unwrap_or(usize::MAX);
    max_connections.min(fits).max(MIN_CONNECTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_the_reserve_free() {
        assert_eq!(connection_cap(10_000, 40), 8);
        assert_eq!(connection_cap(10_000, 1024), 1024 - 32);
        assert_eq!(connection_cap(10_000, 65_536), 10_000);
        assert_eq!(connection_cap(5, 40), 5);
        assert_eq!(connection_cap(10_000, 20), MIN_CONNECTIONS);
        assert_eq!(connection_cap(10_000, u64::MAX), 10_000);
    }
}
