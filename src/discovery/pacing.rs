//! When to ask Consul next, and with which blocking index: long polls that
//! Consul releases on a change, a floor between queries so a flapping
//! cluster cannot make the poller spin, a growing back-off after errors, and
//! a last try just before the grace period drops the active node. Pure
//! logic; the reactor keeps the clock.

use crate::discovery::consul::Query;
use crate::discovery::tracker::GRACE_INTERVALS;
use std::time::{Duration, Instant};

/// The least time between the starts of two queries.
pub const MIN_GAP: Duration = Duration::from_millis(100);
/// The first retry after an error; doubled per error up to the poll interval.
pub const FIRST_RETRY: Duration = Duration::from_millis(250);
/// The last try before the grace period ends starts this long before it:
/// time for a local agent to answer, so that an outage shorter than the
/// grace period never reaches clients as a 503.
pub const LAST_TRY_LEAD: Duration = Duration::from_millis(100);

/// When to send the next Consul query and with which blocking index:
/// soon after a blocking answer, one interval apart without an index, with
/// a growing back-off after errors and a last try just before the grace
/// period ends. Pure: the caller passes the time.
pub struct Pacing {
    interval: Duration,
    /// When the next query is due.
    next: Instant,
    /// `X-Consul-Index` of the last answer; 0 for none (plain polling).
    index: u64,
    errors: u32,
    /// Since when every query has failed, as the tracker counts it.
    failing_since: Option<Instant>,
}

impl Pacing {
    /// After the start-up query (sent at `sent`, answered with `index`).
    pub fn new(interval: Duration, index: Option<u64>, sent: Instant, now: Instant) -> Pacing {
        let mut pacing = Pacing {
            interval,
            next: now,
            index: 0,
            errors: 0,
            failing_since: None,
        };
        pacing.on_answer(index, sent, now);
        pacing
    }

    pub fn next(&self) -> Instant {
        self.next
    }

    /// The query to send now: blocking (wait = the poll interval, so a quiet
    /// cluster costs one request per interval) once an index is known.
    pub fn query(&self) -> Query {
        Query {
            index: self.index,
            wait: (self.index > 0).then_some(self.interval),
        }
    }

    /// An answer to a query sent at `sent`: returns when to send the next.
    pub fn on_answer(&mut self, index: Option<u64>, sent: Instant, now: Instant) -> Instant {
        self.next = self.after_answer(index, sent, now);
        self.next
    }

    fn after_answer(&mut self, index: Option<u64>, sent: Instant, now: Instant) -> Instant {
        self.errors = 0;
        self.failing_since = None;
        let asked_with = self.index;
        self.index = match index {
            // An index that goes backwards (a Consul snapshot restore, another
            // cluster) starts over from a plain query.
            Some(i) if i >= asked_with => i,
            _ => 0,
        };
        if self.index > 0 || asked_with > 0 {
            // Blocking, or the first plain query after a reset: soon.
            (sent + MIN_GAP).max(now)
        } else {
            // No index from this agent: plain polling, as the original.
            sent + self.interval
        }
    }

    /// A failed query: start over without an index, after a back-off, but
    /// try once more just before the grace period ends if the back-off
    /// would only try after it.
    pub fn on_error(&mut self, now: Instant) -> Instant {
        self.index = 0;
        self.errors = self.errors.saturating_add(1);
        let factor = 1u32 << (self.errors - 1).min(16);
        let backed_off = now + FIRST_RETRY.saturating_mul(factor).min(self.interval);
        let since = *self.failing_since.get_or_insert(now);
        let last_try = (since + self.interval * GRACE_INTERVALS).checked_sub(LAST_TRY_LEAD);
        self.next = match last_try {
            Some(at) if now < at && at < backed_off => at,
            _ => backed_off,
        };
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const MILLI: Duration = Duration::from_millis(1);

    #[test]
    fn blocks_with_the_last_index_and_the_interval_as_wait() {
        let t = Instant::now();
        let mut p = Pacing::new(5 * SECOND, Some(10), t, t);
        assert_eq!(
            p.next(),
            t + MIN_GAP,
            "blocking starts right after start-up"
        );
        assert_eq!(
            p.query(),
            Query {
                index: 10,
                wait: Some(5 * SECOND)
            }
        );
        // A long poll that returned after 5 s: the next one goes at once.
        assert_eq!(p.on_answer(Some(12), t, t + 5 * SECOND), t + 5 * SECOND);
        assert_eq!(p.query().index, 12);
    }

    #[test]
    fn quick_answers_are_rate_limited() {
        let t = Instant::now();
        let mut p = Pacing::new(5 * SECOND, Some(10), t, t);
        let next = p.on_answer(Some(11), t, t + Duration::from_millis(5));
        assert_eq!(next, t + MIN_GAP);
    }

    #[test]
    fn an_index_going_backwards_or_zero_resets_once() {
        let t = Instant::now();
        let mut p = Pacing::new(5 * SECOND, Some(50), t, t);
        assert_eq!(p.on_answer(Some(7), t, t), t + MIN_GAP);
        assert_eq!(
            p.query(),
            Query {
                index: 0,
                wait: None
            }
        );
        // A plain query answered without an index: back to the interval,
        // never index 0 twice in a tight loop.
        assert_eq!(p.on_answer(None, t, t), t + 5 * SECOND);
        assert_eq!(p.on_answer(Some(0), t, t), t + 5 * SECOND);
        // Then an index: blocking queries start.
        assert_eq!(p.on_answer(Some(9), t, t), t + MIN_GAP);
        assert_eq!(p.query().index, 9);
    }

    #[test]
    fn without_an_index_it_polls_every_interval() {
        let t = Instant::now();
        let p = Pacing::new(5 * SECOND, None, t, t);
        assert_eq!(p.next(), t + 5 * SECOND);
        assert_eq!(
            p.query(),
            Query {
                index: 0,
                wait: None
            }
        );
    }

    #[test]
    fn errors_back_off_up_to_the_interval() {
        let t = Instant::now();
        let mut p = Pacing::new(2 * SECOND, Some(50), t, t);
        let delays: Vec<Duration> = (0..6).map(|_| p.on_error(t) - t).collect();
        assert_eq!(
            delays,
            [250, 500, 1000, 2000, 2000, 2000]
                .map(Duration::from_millis)
                .to_vec()
        );
        assert_eq!(
            p.query(),
            Query {
                index: 0,
                wait: None
            }
        );
        p.on_answer(Some(60), t, t);
        assert_eq!(
            p.on_error(t) - t,
            FIRST_RETRY,
            "an answer resets the back-off"
        );
    }

    #[test]
    fn a_last_try_comes_just_before_the_grace_period_ends() {
        // -p 1: the node is dropped 2 s after the first failure; the back-off
        // alone would next try at +2.75 s, after the drop.
        let t = Instant::now();
        let mut p = Pacing::new(SECOND, Some(50), t, t);
        let mut at = t;
        let mut tries = Vec::new();
        for _ in 0..5 {
            at = p.on_error(at);
            tries.push(at - t);
        }
        let last_try = 2 * SECOND - LAST_TRY_LEAD;
        assert_eq!(
            tries,
            [
                250 * MILLI,
                750 * MILLI,
                1750 * MILLI,
                last_try,
                last_try + SECOND
            ]
        );
        // An answer ends the episode: the next one has its own last try.
        let t2 = at + 10 * SECOND;
        p.on_answer(None, t2, t2);
        assert_eq!(p.on_error(t2) - t2, FIRST_RETRY);
        assert_eq!(
            p.on_error(t2 + 1750 * MILLI) - t2,
            2 * SECOND - LAST_TRY_LEAD
        );
    }

    #[test]
    fn a_grace_period_shorter_than_the_lead_adds_no_try() {
        let t = Instant::now();
        let mut p = Pacing::new(Duration::from_millis(20), Some(50), t, t);
        assert_eq!(p.on_error(t) - t, Duration::from_millis(20));
    }
}
