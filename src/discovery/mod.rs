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

use consul::{Answer, PollError, Query};
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
}

impl ConsulWatch {
    fn next_due(&self) -> Option<Instant> {
        (!self.in_flight).then_some(self.pacing.next())
    }

    fn start_due(&mut self, now: Instant) -> bool {
        if self.in_flight || now < self.pacing.next() {
            return true;
        }
        self.in_flight = true;
        self.sent = now;
        self.poller.request(self.pacing.query())
    }

    fn take_outcomes(&mut self, now: Instant, tracker: &mut Tracker) -> Result<bool, ()> {
        let mut took = false;
        while let Some(result) = self.poller.try_outcome()? {
            took = true;
            self.in_flight = false;
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
