//! The Vault-nodes source as the event loop drives it: probes handed to
//! short-lived threads (one per node at a time, started by the poller
//! thread, so a hung node never delays another's answer), each answer
//! folded into the nodes' views, and the verdict handed to the tracker
//! only when it changes. Logs each node's change of state once.

use super::node::NodeStatus;
use super::pacing::{VaultPacing, probe_timeout};
use super::prober::{Probe, Prober};
use super::selection::{NodeView, Verdict, select};
use super::settings::{NodeUrl, VaultSettings};
use crate::discovery::consul::{Answer, PollError, Selection};
use crate::discovery::poller::{POLLER_STACK_BYTES, Poller, Reply};
use crate::discovery::tracker::Tracker;
use crate::server::health::local_timestamp;
use mio::Waker;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// One node as the health JSON shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    pub url: String,
    pub status: &'static str,
    /// The last HTTP status of its `/v1/sys/health`, if it ever answered.
    pub code: Option<u16>,
    /// Local time of its last HTTP answer.
    pub last_seen: Option<String>,
    /// Why its last probe got no answer.
    pub error: Option<String>,
}

/// What was last handed to the tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivered {
    Active(usize),
    NoActive,
    CutOff,
}

/// The nodes' state between probes, and how to turn it into tracker calls.
struct Nodes {
    urls: Vec<NodeUrl>,
    views: Vec<NodeView>,
    reports: Vec<NodeReport>,
    delivered: Option<Delivered>,
    /// Every node answering 200 at once, as last warned about.
    several_warned: Vec<usize>,
    /// When the last "no node answers" error was logged.
    cut_off_logged: Option<Instant>,
    interval: Duration,
}

impl Nodes {
    fn new(urls: &[NodeUrl], interval: Duration) -> Nodes {
        Nodes {
            views: urls.iter().map(|_| NodeView::unknown()).collect(),
            reports: urls
                .iter()
                .map(|u| NodeReport {
                    url: u.to_string(),
                    status: NodeStatus::Unreachable.name(),
                    code: None,
                    last_seen: None,
                    error: None,
                })
                .collect(),
            urls: urls.to_vec(),
            delivered: None,
            several_warned: Vec::new(),
            cut_off_logged: None,
            interval,
        }
    }

    /// Fold one probe in; logs a change of the node's state once.
    fn take(&mut self, probe: Probe, wall: SystemTime) {
        let status = NodeStatus::classify(probe.code);
        let view = &mut self.views[probe.node];
        let report = &mut self.reports[probe.node];
        if view.sent.is_some() && view.status != status {
            let why = match (&probe.code, &probe.error) {
                (Some(code), _) => format!("HTTP {code}"),
                (None, Some(e)) => e.clone(),
                (None, None) => "no answer".into(),
            };
            log::warn!(
                "Vault node {} is now {} (was {}; {why})",
                report.url,
                status.name(),
                view.status.name()
            );
        } else if view.sent.is_none() {
            log::info!("Vault node {} is {}", report.url, status.name());
        }
        // An older probe that comes back late does not undo a newer one.
        if view.sent.is_some_and(|s| s > probe.sent) {
            return;
        }
        *view = NodeView {
            status,
            sent: Some(probe.sent),
            names_leader: probe.names_leader,
        };
        report.status = status.name();
        if probe.code.is_some() {
            report.code = probe.code;
            report.last_seen = Some(local_timestamp(wall));
        }
        report.error = probe.error;
    }

    fn answer(&self, selection: Selection, node: Option<usize>) -> Answer {
        Answer {
            selection,
            unusable: Vec::new(),
            index: None,
            agent: node.map_or_else(String::new, |n| self.urls[n].to_string()),
        }
    }

    /// Hand the verdict to the tracker if it changed; returns the node
    /// clients are sent to.
    fn deliver(&mut self, verdict: &Verdict, tracker: &mut Tracker, now: Instant) {
        match verdict {
            Verdict::Active { node, several } => {
                self.warn_several(*node, several);
                if self.delivered != Some(Delivered::Active(*node)) {
                    let target = self.urls[*node].target.clone();
                    tracker.on_answer(
                        self.answer(Selection::One(target), Some(*node)),
                        SystemTime::now(),
                    );
                    self.delivered = Some(Delivered::Active(*node));
                }
            }
            Verdict::NoActive => {
                if self.delivered != Some(Delivered::NoActive) {
                    tracker.on_answer(self.answer(Selection::None, None), SystemTime::now());
                    self.delivered = Some(Delivered::NoActive);
                }
            }
            Verdict::CutOff => {
                let due = self
                    .cut_off_logged
                    .is_none_or(|at| now >= at + self.interval);
                if self.delivered != Some(Delivered::CutOff) || due {
                    tracker.on_error(&self.cut_off_error(), now);
                    self.delivered = Some(Delivered::CutOff);
                    self.cut_off_logged = Some(now);
                }
            }
            Verdict::Pending => {}
        }
        tracker.set_vault_nodes(self.reports.clone());
    }

    fn warn_several(&mut self, chosen: usize, several: &[usize]) {
        if several != self.several_warned.as_slice() && !several.is_empty() {
            let all: Vec<String> = several.iter().map(|&i| self.urls[i].to_string()).collect();
            log::warn!(
                "Several Vault nodes answer as active ({}): an old active has not noticed yet; \
                 redirecting to {}, the one the others name as leader",
                all.join(", "),
                self.urls[chosen]
            );
        }
        self.several_warned = several.to_vec();
    }

    fn cut_off_error(&self) -> PollError {
        let each: Vec<String> = self
            .reports
            .iter()
            .map(|r| format!("{}: {}", r.url, r.error.as_deref().unwrap_or(r.status)))
            .collect();
        PollError::Transport(format!("no Vault node answers ({})", each.join("; ")))
    }

    fn current(&self) -> Option<usize> {
        match self.delivered {
            Some(Delivered::Active(n)) => Some(n),
            _ => None,
        }
    }
}

/// The start-up round: every node asked at once, every answer awaited
/// (each bounded by the probe timeout).
pub struct FirstRound {
    prober: Arc<Prober>,
    nodes: Nodes,
    verdict: Verdict,
    sent: Instant,
}

/// Why the start-up round found no active node.
pub enum FirstRoundError {
    Tls(String),
    /// No node answered.
    Unreachable(PollError),
    /// Nodes answered; none is active.
    NoActive,
}

impl FirstRound {
    pub fn run(
        settings: &VaultSettings,
        interval: Duration,
    ) -> Result<FirstRound, FirstRoundError> {
        let prober =
            Prober::new(settings, probe_timeout(interval)).map_err(FirstRoundError::Tls)?;
        let sent = Instant::now();
        let (tx, rx) = mpsc::channel();
        for node in 0..prober.count() {
            let (prober, tx) = (Arc::clone(&prober), tx.clone());
            spawn_probe(move || {
                let _ = tx.send(prober.probe(node));
            })
            .map_err(|e| FirstRoundError::Tls(format!("cannot start a probe thread: {e}")))?;
        }
        drop(tx);
        let mut nodes = Nodes::new(&settings.nodes, interval);
        for probe in rx {
            nodes.take(probe, SystemTime::now());
        }
        let verdict = select(&nodes.views, None);
        match verdict {
            Verdict::Active { .. } => {}
            Verdict::CutOff | Verdict::Pending => {
                return Err(FirstRoundError::Unreachable(nodes.cut_off_error()));
            }
            Verdict::NoActive => return Err(FirstRoundError::NoActive),
        }
        Ok(FirstRound {
            prober,
            nodes,
            verdict,
            sent,
        })
    }

    /// The first answer for the tracker: the active node.
    pub fn tracker(&mut self, interval: Duration) -> Option<Tracker> {
        let Verdict::Active { node, several } = self.verdict.clone() else {
            return None;
        };
        self.nodes.warn_several(node, &several);
        let target = self.nodes.urls[node].target.clone();
        let answer = self.nodes.answer(Selection::One(target), Some(node));
        // No Consul ACL token applies: `true` keeps its hint out.
        let mut tracker = Tracker::first(interval, true, answer, SystemTime::now())?;
        tracker.set_vault_nodes(self.nodes.reports.clone());
        self.nodes.delivered = Some(Delivered::Active(node));
        Some(tracker)
    }
}

fn spawn_probe(probe: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("vault-probe".into())
        .stack_size(POLLER_STACK_BYTES)
        .spawn(probe)
        .map(drop)
}

/// The source as the loop drives it.
pub struct VaultWatch {
    poller: Poller<usize, Probe>,
    pacing: VaultPacing,
    nodes: Nodes,
    /// The longest one probe can take (health, then leader).
    probe_budget: Duration,
}

impl VaultWatch {
    pub fn start(
        first: FirstRound,
        interval: Duration,
        waker: Arc<Waker>,
    ) -> std::io::Result<Self> {
        let FirstRound {
            prober,
            nodes,
            sent,
            ..
        } = first;
        let pacing = VaultPacing::new(interval, prober.count(), nodes.current(), sent);
        // The poller thread only starts probe threads: each answers on its own.
        let poller = Poller::spawn(
            "vault-poller",
            move |node: usize, reply: &Reply<Probe>| {
                let (prober, own_reply) = (Arc::clone(&prober), reply.clone());
                if let Err(e) = spawn_probe(move || {
                    own_reply.send(prober.probe(node));
                }) {
                    // Answer for the node, so that it is asked again later.
                    return reply.send(Probe {
                        node,
                        sent: Instant::now(),
                        code: None,
                        error: Some(format!("cannot start a probe thread: {e}")),
                        names_leader: None,
                    });
                }
                true
            },
            waker,
        )?;
        Ok(VaultWatch {
            poller,
            pacing,
            nodes,
            probe_budget: probe_timeout(interval) * 2,
        })
    }

    /// No probe has outlasted every timeout it runs under.
    pub fn is_responsive(&self, now: Instant) -> bool {
        self.pacing
            .oldest_in_flight()
            .is_none_or(|sent| now < sent + self.probe_budget + crate::discovery::STUCK_SLACK)
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.pacing.next()
    }

    /// Start the probes that are due; false if the poller thread is gone.
    pub fn start_due(&mut self, now: Instant) -> bool {
        self.pacing
            .take_due(now)
            .into_iter()
            .all(|node| self.poller.request(node))
    }

    /// Take every probe that came back. `Err` if the poller is gone.
    pub fn take_outcomes(&mut self, now: Instant, tracker: &mut Tracker) -> Result<bool, ()> {
        let mut took = false;
        while let Some(probe) = self.poller.try_outcome()? {
            took = true;
            let (node, sent) = (probe.node, probe.sent);
            self.nodes.take(probe, SystemTime::now());
            let verdict = select(&self.nodes.views, self.nodes.current());
            self.nodes.deliver(&verdict, tracker, now);
            let active = self.nodes.current();
            self.pacing.on_result(node, sent, active);
            match verdict {
                Verdict::Active { node, .. } if self.pacing.hunting() => self.pacing.settle(node),
                Verdict::Active { .. } => {}
                _ => self.pacing.hunt(now),
            }
        }
        Ok(took)
    }
}
