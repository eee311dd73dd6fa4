//! Finding the active Vault node, off the event loop: the source (Consul
//! today), when to ask it (`pacing`), what its answers mean over time
//! (`tracker`), and the hand-off between its thread and the loop
//! (`poller`). The loop drives it through `Discovery` and only ever sees a
//! tracker: an active node or none.

pub mod consul;
pub mod pacing;
pub mod poller;
pub mod target;
pub mod tracker;

use pacing::Pacing;
use poller::Poller;
use std::io;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tracker::Tracker;

/// Discovery as the event loop drives it: its timer starts queries on the
/// poller thread, and the poller's wake-up hands the outcomes back.
pub struct Discovery {
    poller: Poller,
    pacing: Pacing,
    tracker: Tracker,
    /// A query is on the poller thread; the next waits for its outcome.
    in_flight: bool,
    /// When the query in flight was sent.
    sent: Instant,
    /// Shutting down: no new queries.
    stopped: bool,
}

impl Discovery {
    /// Start the poller thread, waking the loop through `waker`.
    pub fn start(
        client: consul::Client,
        pacing: Pacing,
        tracker: Tracker,
        waker: Arc<mio::Waker>,
    ) -> io::Result<Discovery> {
        Ok(Discovery {
            poller: Poller::spawn(client, waker)?,
            pacing,
            tracker,
            in_flight: false,
            sent: Instant::now(),
            stopped: false,
        })
    }

    /// What is known about the active node.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// When the loop must call `on_timer` next, if ever.
    pub fn next_timer(&self) -> Option<Instant> {
        let next_query = (!self.in_flight && !self.stopped).then_some(self.pacing.next());
        [next_query, self.tracker.expiry()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Start a query when one is due; drop the node when the grace period
    /// ran out. Returns true if what the tracker knows changed.
    pub fn on_timer(&mut self, now: Instant) -> io::Result<bool> {
        if !self.in_flight && !self.stopped && now >= self.pacing.next() {
            if !self.poller.request(self.pacing.query()) {
                return Err(poller_gone());
            }
            self.in_flight = true;
            self.sent = now;
        }
        Ok(self.tracker.expiry().is_some_and(|at| now >= at) && self.tracker.expire(now))
    }

    /// The poller woke the loop: take every outcome waiting (wake-ups
    /// coalesce). Returns true if any came in.
    pub fn on_wake(&mut self, now: Instant) -> io::Result<bool> {
        let mut took = false;
        loop {
            let outcome = match self.poller.try_outcome() {
                Ok(Some(outcome)) => outcome,
                Ok(None) => return Ok(took),
                Err(()) => return Err(poller_gone()),
            };
            took = true;
            self.in_flight = false;
            match outcome.result {
                Ok(answer) => {
                    self.pacing.on_answer(answer.index, self.sent, now);
                    self.tracker.on_answer(answer, SystemTime::now());
                }
                Err(e) => {
                    self.pacing.on_error(now);
                    self.tracker.on_error(&e, now);
                }
            }
        }
    }

    /// Shutting down: ask nothing more.
    pub fn stop(&mut self) {
        self.stopped = true;
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
