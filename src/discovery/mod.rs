//! Finding the active Vault node, off the event loop: the source (Consul,
//! or the Vault nodes themselves), when to ask it (`pacing` for Consul,
//! `vault::pacing`), what its answers mean over time (`tracker`), and the
//! hand-off between its threads and the loop (`poller`). The loop drives
//! it through `Discovery` and only ever sees a tracker: an active node or
//! none.

pub mod client_tls;
pub mod consul;
pub mod pacing;
pub mod poller;
pub mod resolver;
pub mod target;
pub mod tracker;
pub mod vault;

use consul::{Answer, FetchBudget, PollError, Query};
use pacing::Pacing;
use poller::{Poller, Reply};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracker::Tracker;
use vault::watch::{FirstRound, VaultWatch};

/// Consul as the loop drives it: one query at a time on the poller thread.
struct ConsulWatch {
    poller: Poller<Query, Result<Answer, PollError>>,
    pacing: Pacing,
    /// A query is on the poller thread; the next waits for its outcome.
    in_flight: bool,
    /// When the query in flight was sent.
    sent: Instant,
    /// The longest a query can take before the thread counts as stuck.
    budget: FetchBudget,
    /// When the query in flight must have been answered by, at the latest.
    answer_by: Option<Instant>,
}

/// Beyond a query's own timeouts: scheduling and parsing on a loaded machine.
pub const STUCK_SLACK: Duration = Duration::from_secs(5);

impl ConsulWatch {
    fn next_due(&self) -> Option<Instant> {
        (!self.in_flight).then_some(self.pacing.next())
    }

    fn start_due(&mut self, now: Instant) -> bool {
        if self.in_flight || now < self.pacing.next() {
            return true;
        }
        let query = self.pacing.query();
        self.in_flight = true;
        self.sent = now;
        self.answer_by = Some(now + self.budget.of(query) + STUCK_SLACK);
        self.poller.request(query)
    }

    fn take_outcomes(&mut self, now: Instant, tracker: &mut Tracker) -> Result<bool, ()> {
        let mut took = false;
        while let Some(result) = self.poller.try_outcome()? {
            took = true;
            self.in_flight = false;
            self.answer_by = None;
            match result {
                Ok(answer) => {
                    self.pacing.on_answer(answer.index, self.sent, now);
                    tracker.on_answer(answer, SystemTime::now());
                }
                Err(e) => {
                    self.pacing.on_error(now);
                    tracker.on_error(&e, now);
                }
            }
        }
        Ok(took)
    }
}

/// Where the active node comes from; the loop does not know which.
enum Source {
    Consul(ConsulWatch),
    Vault(VaultWatch),
}

/// What start-up found, ready to be driven by the loop.
pub enum Started {
    Consul {
        client: consul::Client,
        pacing: Pacing,
    },
    Vault {
        first: FirstRound,
        interval: Duration,
    },
}

/// Discovery as the event loop drives it: its timer starts queries on the
/// poller thread, and the poller's wake-up hands the outcomes back.
pub struct Discovery {
    source: Source,
    tracker: Tracker,
    /// Shutting down: no new queries.
    stopped: bool,
}

impl Discovery {
    /// Start the source's thread, waking the loop through `waker`.
    pub fn start(started: Started, tracker: Tracker, waker: Arc<mio::Waker>) -> io::Result<Self> {
        let source = match started {
            Started::Consul { mut client, pacing } => Source::Consul(ConsulWatch {
                budget: client.budget(),
                answer_by: None,
                poller: Poller::spawn(
                    "consul-poller",
                    move |query, reply: &Reply<_>| reply.send(client.fetch(query)),
                    waker,
                )?,
                pacing,
                in_flight: false,
                sent: Instant::now(),
            }),
            Started::Vault { first, interval } => {
                Source::Vault(VaultWatch::start(first, interval, waker)?)
            }
        };
        Ok(Discovery {
            source,
            tracker,
            stopped: false,
        })
    }

    /// What is known about the active node.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// When the loop must call `on_timer` next, if ever.
    pub fn next_timer(&self) -> Option<Instant> {
        let next_query = match &self.source {
            _ if self.stopped => None,
            Source::Consul(watch) => watch.next_due(),
            Source::Vault(watch) => watch.next_due(),
        };
        [next_query, self.tracker.expiry()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Start the queries that are due; drop the node when the grace period
    /// ran out. Returns true if what the tracker knows changed.
    pub fn on_timer(&mut self, now: Instant) -> io::Result<bool> {
        if !self.stopped {
            let alive = match &mut self.source {
                Source::Consul(watch) => watch.start_due(now),
                Source::Vault(watch) => watch.start_due(now),
            };
            if !alive {
                return Err(poller_gone());
            }
        }
        Ok(self.tracker.expiry().is_some_and(|at| now >= at) && self.tracker.expire(now))
    }

    /// The poller woke the loop: take every outcome waiting (wake-ups
    /// coalesce). Returns true if any came in.
    pub fn on_wake(&mut self, now: Instant) -> io::Result<bool> {
        let took = match &mut self.source {
            Source::Consul(watch) => watch.take_outcomes(now, &mut self.tracker),
            Source::Vault(watch) => watch.take_outcomes(now, &mut self.tracker),
        };
        took.map_err(|()| poller_gone())
    }

    /// The discovery threads are doing their work: idle, or on queries that
    /// have not outlasted every timeout they run under. A thread stuck past
    /// that (a bug, a deadlock) stops the watchdog, so that the service
    /// manager restarts a daemon that would redirect to a stale node.
    pub fn is_responsive(&self, now: Instant) -> bool {
        match &self.source {
            Source::Consul(watch) => watch.answer_by.is_none_or(|by| now < by),
            Source::Vault(watch) => watch.is_responsive(now),
        }
    }

    /// Shutting down: ask nothing more.
    pub fn stop(&mut self) {
        self.stopped = true;
    }
}

/// The poller thread cannot fail: every failure of a query is an outcome
/// answered over the channel, and the thread ends only when the loop drops
/// its handle. Only a panic (a bug) can end it sooner, and the release build
/// aborts the process on a panic (`panic = "abort"`), for its supervisor to
/// restart. A build that unwinds (tests, debug) ends the loop here with an
/// error instead: the same outcome, rather than a restart path that the
/// release build could never run.
fn poller_gone() -> io::Error {
    io::Error::other("the discovery poller thread is gone (it panicked)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use consul::settings::{ConsulSettings, parse_agents};

    /// Discovery asking an agent that accepts and never answers.
    fn asking_a_silent_agent(poll_interval: Duration) -> (Discovery, std::net::TcpListener) {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let agents = parse_agents(&silent.local_addr().unwrap().to_string(), false).unwrap();
        let client =
            consul::Client::new(&ConsulSettings::for_agents(agents), false, poll_interval).unwrap();
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let now = Instant::now();
        let pacing = Pacing::new(poll_interval, None, now, now);
        let started = Started::Consul { client, pacing };
        let discovery = Discovery::start(started, tracker::knowing("a:8200"), waker).unwrap();
        (discovery, silent)
    }

    #[test]
    fn a_query_outlasting_every_timeout_means_a_stuck_thread() {
        let interval = Duration::from_secs(5);
        let (mut discovery, _silent) = asking_a_silent_agent(interval);
        // The clock is ours to set: the query is due at `start`.
        let start = discovery.next_timer().unwrap();
        assert!(discovery.is_responsive(start), "idle");
        discovery.on_timer(start).unwrap();
        assert!(discovery.next_timer().is_none(), "a query is in flight");
        // The agent's timeout (the poll interval here) has not run out.
        assert!(discovery.is_responsive(start + interval));
        // Long past every timeout the query runs under: stuck.
        assert!(!discovery.is_responsive(start + interval + STUCK_SLACK + interval));
    }
}
