//! The hand-off between discovery's thread and the event loop: the loop
//! asks for a request (its timer paces them), the thread runs it (or hands
//! it to a short-lived thread of its own), sends the outcome over a channel
//! and wakes the loop with a `mio::Waker`. The loop never waits for
//! discovery; no lock is shared. Generic over what is asked and answered,
//! so that every source (Consul, the Vault nodes) uses the same hand-off.

use mio::Waker;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};

/// The event loop's handle on a discovery thread: it asks for a request,
/// the thread answers over a channel and wakes the loop.
pub struct Poller<Req, Out> {
    requests: Sender<Req>,
    outcomes: Receiver<Out>,
}

/// How a discovery thread (or a thread it started) hands an outcome back.
pub struct Reply<Out> {
    outcomes: Sender<Out>,
    waker: Arc<Waker>,
}

impl<Out> Clone for Reply<Out> {
    fn clone(&self) -> Self {
        Reply {
            outcomes: self.outcomes.clone(),
            waker: Arc::clone(&self.waker),
        }
    }
}

impl<Out> Reply<Out> {
    /// Queue the outcome and wake the loop; false once the loop is gone.
    pub fn send(&self, outcome: Out) -> bool {
        if self.outcomes.send(outcome).is_err() {
            return false;
        }
        // A failed wake leaves the outcome queued for the next wake-up.
        let _ = self.waker.wake();
        true
    }
}

/// The poller only runs ureq and parses JSON: a small stack is plenty.
pub const POLLER_STACK_BYTES: usize = 256 * 1024;

impl<Req: Send + 'static, Out: Send + 'static> Poller<Req, Out> {
    /// A thread named `name` that hands each request to `handle`, which
    /// answers through the `Reply` (now or from a thread of its own) and
    /// returns false when the loop is gone.
    pub fn spawn(
        name: &str,
        mut handle: impl FnMut(Req, &Reply<Out>) -> bool + Send + 'static,
        waker: Arc<Waker>,
    ) -> std::io::Result<Poller<Req, Out>> {
        let (request_tx, request_rx) = mpsc::channel::<Req>();
        let (outcome_tx, outcome_rx) = mpsc::channel();
        let reply = Reply {
            outcomes: outcome_tx,
            waker,
        };
        std::thread::Builder::new()
            .name(name.into())
            .stack_size(POLLER_STACK_BYTES)
            .spawn(move || {
                for request in request_rx {
                    if !handle(request, &reply) {
                        break;
                    }
                }
            })?;
        Ok(Poller {
            requests: request_tx,
            outcomes: outcome_rx,
        })
    }

    /// Ask for one request; false if the thread is gone.
    pub fn request(&self, request: Req) -> bool {
        self.requests.send(request).is_ok()
    }

    /// The next outcome, if any; `Err` if the thread is gone and nothing
    /// is left.
    pub fn try_outcome(&self) -> Result<Option<Out>, ()> {
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
        let poller: Poller<u64, ()> = Poller::spawn(
            "test-poller",
            |query: u64, _reply: &Reply<()>| {
                assert_eq!(query, 0, "the test's query");
                panic!("a bug in the poller thread");
            },
            waker,
        )
        .unwrap();
        assert!(poller.request(0));
        // The loop only ever polls the channel: it sees the thread gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match poller.try_outcome() {
                Err(()) => break,
                Ok(None) => assert!(std::time::Instant::now() < deadline, "never noticed"),
                Ok(Some(())) => panic!("an outcome from a dead thread"),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!poller.request(0));
    }
}
