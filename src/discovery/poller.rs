//! The hand-off between the discovery thread and the event loop: the loop
//! asks for a query (its timer paces them), the thread runs it, sends the
//! outcome over a channel and wakes the loop with a `mio::Waker`. The loop
//! never waits for discovery; no lock is shared.

use super::consul::{Answer, Client, PollError, Query};
use mio::Waker;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};

/// One finished query, as the event loop receives it.
#[derive(Debug)]
pub struct PollOutcome {
    pub result: Result<Answer, PollError>,
}

/// The event loop's handle on the poller thread: it asks for a query, the
/// thread runs it, answers over a channel and wakes the loop.
pub struct Poller {
    requests: Sender<Query>,
    outcomes: Receiver<PollOutcome>,
}

/// The poller only runs ureq and parses JSON: a small stack is plenty.
const POLLER_STACK_BYTES: usize = 256 * 1024;

impl Poller {
    pub fn spawn(mut client: Client, waker: Arc<Waker>) -> std::io::Result<Poller> {
        Poller::spawn_with(move |query| client.fetch(query), waker)
    }

    /// The thread around any way of answering a query (tests use this).
    fn spawn_with(
        mut fetch: impl FnMut(Query) -> Result<Answer, PollError> + Send + 'static,
        waker: Arc<Waker>,
    ) -> std::io::Result<Poller> {
        let (request_tx, request_rx) = mpsc::channel::<Query>();
        let (outcome_tx, outcome_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("consul-poller".into())
            .stack_size(POLLER_STACK_BYTES)
            .spawn(move || {
                for query in request_rx {
                    let result = fetch(query);
                    if outcome_tx.send(PollOutcome { result }).is_err() {
                        break;
                    }
                    // A failed wake leaves the outcome queued for the next wake-up.
                    let _ = waker.wake();
                }
            })?;
        Ok(Poller {
            requests: request_tx,
            outcomes: outcome_rx,
        })
    }

    /// Ask for one query; false if the thread is gone.
    pub fn request(&self, query: Query) -> bool {
        self.requests.send(query).is_ok()
    }

    /// The next finished poll, if any; `Err` if the thread is gone.
    pub fn try_outcome(&self) -> Result<Option<PollOutcome>, ()> {
        match self.outcomes.try_recv() {
            Ok(o) => Ok(Some(o)),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_dead_poller_thread_is_noticed_not_waited_for() {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let poller = Poller::spawn_with(
            |query: Query| {
                assert_eq!(query.index, 0, "the test's query");
                panic!("a bug in the poller thread");
            },
            waker,
        )
        .unwrap();
        assert!(poller.request(Query {
            index: 0,
            wait: None
        }));
        // The loop only ever polls the channel: it sees the thread gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match poller.try_outcome() {
                Err(()) => break,
                Ok(None) => assert!(std::time::Instant::now() < deadline, "never noticed"),
                Ok(Some(outcome)) => panic!("an outcome from a dead thread: {outcome:?}"),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!poller.request(Query {
            index: 0,
            wait: None
        }));
    }
}
