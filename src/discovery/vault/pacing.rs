//! When to probe which node: a round over every node each poll interval,
//! the active node alone at least four times per interval, and, from the
//! moment the active fails a probe until a node answers 200, every node at
//! once and then at most 250 ms apart. One probe per node at a time, so a
//! hung node holds one thread, never a pile. Pure logic; the loop keeps
//! the clock.

use std::time::{Duration, Instant};

/// Probes of the active node per poll interval.
pub const ACTIVE_PROBES_PER_INTERVAL: u32 = 4;
/// The most time between two probes of a node while no node is active.
pub const HUNT_GAP: Duration = Duration::from_millis(250);
/// The longest a probe may take: below the poll interval (half of it), and
/// at most this.
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one probe may take for this poll interval.
pub fn probe_timeout(interval: Duration) -> Duration {
    (interval / 2).min(MAX_PROBE_TIMEOUT)
}

struct NodePace {
    next: Instant,
    in_flight: bool,
    last_sent: Instant,
}

pub struct VaultPacing {
    interval: Duration,
    nodes: Vec<NodePace>,
    /// No active node, or the active failed: every node at HUNT_GAP.
    hunting: bool,
}

impl VaultPacing {
    /// After the start-up round (sent at `sent`), with `active` known or not.
    pub fn new(interval: Duration, count: usize, active: Option<usize>, sent: Instant) -> Self {
        let mut pacing = VaultPacing {
            interval,
            nodes: (0..count)
                .map(|_| NodePace {
                    next: sent + interval,
                    in_flight: false,
                    last_sent: sent,
                })
                .collect(),
            hunting: false,
        };
        match active {
            Some(a) => pacing.nodes[a].next = sent + pacing.active_gap(),
            None => pacing.hunt(sent),
        }
        pacing
    }

    fn active_gap(&self) -> Duration {
        self.interval / ACTIVE_PROBES_PER_INTERVAL
    }

    pub fn hunting(&self) -> bool {
        self.hunting
    }

    /// When the next probe is due, if any node is not being probed.
    pub fn next(&self) -> Option<Instant> {
        self.nodes
            .iter()
            .filter(|n| !n.in_flight)
            .map(|n| n.next)
            .min()
    }

    /// When the oldest probe still out was sent.
    pub fn oldest_in_flight(&self) -> Option<Instant> {
        self.nodes
            .iter()
            .filter(|n| n.in_flight)
            .map(|n| n.last_sent)
            .min()
    }

    /// The nodes to probe now; they count as in flight from here.
    pub fn take_due(&mut self, now: Instant) -> Vec<usize> {
        let mut due = Vec::new();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if !node.in_flight && node.next <= now {
                node.in_flight = true;
                node.last_sent = now;
                due.push(i);
            }
        }
        due
    }

    /// A probe of `node` sent at `sent` came back; `active` is the node
    /// clients are sent to after it (None while hunting).
    pub fn on_result(&mut self, node: usize, sent: Instant, active: Option<usize>) {
        let gap = if self.hunting {
            HUNT_GAP
        } else if active == Some(node) {
            self.active_gap()
        } else {
            self.interval
        };
        let pace = &mut self.nodes[node];
        pace.in_flight = false;
        pace.next = sent + gap;
    }

    /// The active failed a probe, or none is known: ask every node now
    /// (those in flight as soon as they are back).
    pub fn hunt(&mut self, now: Instant) {
        if self.hunting {
            return;
        }
        self.hunting = true;
        for node in &mut self.nodes {
            node.next = node.next.min(now);
        }
    }

    /// A node answers 200: back to rounds, the active probed often.
    pub fn settle(&mut self, active: usize) {
        self.hunting = false;
        let (interval, gap) = (self.interval, self.active_gap());
        for (i, node) in self.nodes.iter_mut().enumerate() {
            node.next = node.last_sent + if i == active { gap } else { interval };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_active_is_probed_four_times_per_interval_the_others_once() {
        let t = Instant::now();
        let mut p = VaultPacing::new(SECOND, 3, Some(1), t);
        let mut probes = [0; 3];
        let mut now = t;
        while now < t + 4 * SECOND {
            for i in p.take_due(now) {
                probes[i] += 1;
                p.on_result(i, now, Some(1));
            }
            now = p.next().unwrap();
        }
        // In the 4 s after the start-up round (+4 s itself excluded): every
        // 250 ms for the active, every second for the others.
        assert_eq!(probes, [3, 15, 3]);
    }

    #[test]
    fn a_failed_active_sends_every_node_at_once_then_250_ms_apart() {
        let t = Instant::now();
        let mut p = VaultPacing::new(SECOND, 3, Some(0), t);
        let at = t + 250 * MS;
        assert_eq!(p.take_due(at), [0]);
        // The active's probe fails (the loop records the result, then
        // hunts): every node now, the failed one included.
        p.on_result(0, at, Some(0));
        p.hunt(at + 2 * MS);
        assert_eq!(p.next(), Some(at + 2 * MS));
        assert_eq!(p.take_due(at + 2 * MS), [0, 1, 2]);
        for node in 0..3 {
            p.on_result(node, at + 2 * MS, None);
        }
        assert_eq!(p.next(), Some(at + 2 * MS + HUNT_GAP), "then 250 ms apart");
        assert_eq!(p.take_due(at + 2 * MS + HUNT_GAP), [0, 1, 2]);
        let at = at + 2 * MS + HUNT_GAP;
        for node in 0..3 {
            p.on_result(node, at, None);
        }
        // Node 2 answers 200: rounds again, node 2 probed often.
        p.settle(2);
        assert!(!p.hunting());
        assert_eq!(p.next(), Some(at + SECOND / 4));
        assert_eq!(p.take_due(at + SECOND / 4), [2]);
    }

    #[test]
    fn a_hung_node_is_not_probed_twice_at_once() {
        let t = Instant::now();
        let mut p = VaultPacing::new(SECOND, 2, None, t);
        assert!(p.hunting());
        assert_eq!(p.take_due(t), [0, 1]);
        p.on_result(1, t, None);
        // Node 0 hangs: only node 1 is probed again.
        assert_eq!(p.take_due(t + 5 * SECOND), [1]);
    }

    #[test]
    fn the_oldest_probe_out_is_what_the_watchdog_checks() {
        let t = Instant::now();
        let mut p = VaultPacing::new(SECOND, 2, None, t);
        assert_eq!(p.oldest_in_flight(), None);
        assert_eq!(p.take_due(t), [0, 1]);
        p.on_result(0, t, None);
        assert_eq!(p.oldest_in_flight(), Some(t), "node 1 is still out");
        p.on_result(1, t, None);
        assert_eq!(p.oldest_in_flight(), None);
    }

    #[test]
    fn probe_timeouts_stay_below_the_interval() {
        assert_eq!(probe_timeout(SECOND), 500 * MS);
        assert_eq!(probe_timeout(60 * SECOND), MAX_PROBE_TIMEOUT);
        assert!(probe_timeout(100 * MS) < 100 * MS);
    }
}
