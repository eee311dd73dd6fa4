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

/// Raise the soft limit on open descriptors towards the hard limit, so the
/// connection cap, not a distribution's default of 1024, is what binds.
/// Returns the soft limit in force afterwards.
pub fn raise_descriptor_limit(max_connections: usize) -> Option<u64> {
    // Listener, epoll, waker, signal pipe, Consul socket, stdio, slack.
    const RESERVED: u64 = 32;
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return None;
    }
    let wanted = (max_connections as u64)
        .saturating_add(RESERVED)
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
