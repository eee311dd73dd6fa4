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

use consul::FetchBudget;
use pacing::Pacing;
use poller::Poller;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
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
    /// The longest a query can take before the thread counts as stuck.
    budget: FetchBudget,
    /// When the query in flight must have been answered by, at the latest.
    answer_by: Option<Instant>,
}

/// Beyond a query's own timeouts: scheduling and parsing on a loaded machine.
const STUCK_SLACK: Duration = Duration::from_secs(5);

impl Discovery {
    /// Start the poller thread, waking the loop through `waker`.
    pub fn start(
        client: consul::Client,
        pacing: Pacing,
        tracker: Tracker,
        waker: Arc<mio::Waker>,
    ) -> io::Result<Discovery> {
        let budget = client.budget();
        Ok(Discovery {
            budget,
            answer_by: None,
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
            let query = self.pacing.query();
            if !self.poller.request(query) {
                return Err(poller_gone());
            }
            self.in_flight = true;
            self.sent = now;
            self.answer_by = Some(now + self.budget.of(query) + STUCK_SLACK);
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
            self.answer_by = None;
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

    /// The discovery thread is doing its work: idle, or on a query that
    /// has not outlasted every timeout it runs under. A thread stuck past
    /// that (a bug, a deadlock) stops the watchdog, so that the service
    /// manager restarts a daemon that would redirect to a stale node.
    pub fn is_responsive(&self, now: Instant) -> bool {
        self.answer_by.is_none_or(|by| now < by)
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
        let discovery =
            Discovery::start(client, pacing, tracker::knowing("a:8200"), waker).unwrap();
        (discovery, silent)
    }

    #[test]
    fn a_query_outlasting_every_timeout_means_a_stuck_thread() {
        let interval = Duration::from_secs(5);
        let (mut discovery, _silent) = asking_a_silent_agent(interval);
        // The clock is ours to set: the query is due at `start`.
        let start = discovery.pacing.next();
        assert!(discovery.is_responsive(start), "idle");
        discovery.on_timer(start).unwrap();
        assert!(discovery.in_flight);
        // The agent's timeout (the poll interval here) has not run out.
        assert!(discovery.is_responsive(start + interval));
        // Long past every timeout the query runs under: stuck.
        assert!(!discovery.is_responsive(start + interval + STUCK_SLACK + interval));
    }
}
