//! Which listed node is the active one, from every node's latest answer:
//! the one answering 200; among several (an old active that has not yet
//! noticed), the one the others name as leader, never flipping between
//! them; none while some answer and none is active; "cut off" while none
//! answers at all. Pure: the nodes' latest answers in, a verdict out.

use super::node::NodeStatus;
use std::time::Instant;

/// What the latest probe of one node found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub status: NodeStatus,
    /// When the probe that found `status` was sent (None: never probed).
    pub sent: Option<Instant>,
    /// The listed node this node names as leader, if it is a standby that
    /// named one.
    pub names_leader: Option<usize>,
}

impl NodeView {
    pub fn unknown() -> NodeView {
        NodeView {
            status: NodeStatus::Unreachable,
            sent: None,
            names_leader: None,
        }
    }

    fn answered(&self) -> bool {
        self.sent.is_some() && self.status != NodeStatus::Unreachable
    }
}

/// What the nodes' latest answers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This node is the active one. `several` lists every node answering
    /// 200 when there is more than one.
    Active { node: usize, several: Vec<usize> },
    /// Nodes answer, none is active (an election, a sealed cluster).
    NoActive,
    /// No node answers at all: the redirector is cut off from them.
    CutOff,
    /// The active node stopped answering, and no node was asked since:
    /// keep it until fresh answers tell a dead node from a lost network.
    Pending,
}

/// `current` is the node clients are sent to now, if any.
pub fn select(nodes: &[NodeView], current: Option<usize>) -> Verdict {
    let actives: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].status == NodeStatus::Active)
        .collect();
    match actives.len() {
        0 => {}
        1 => {
            return Verdict::Active {
                node: actives[0],
                several: Vec::new(),
            };
        }
        _ => {
            return Verdict::Active {
                node: most_named(nodes, &actives, current),
                several: actives,
            };
        }
    }
    if !nodes.iter().any(NodeView::answered) {
        return Verdict::CutOff;
    }
    if let Some(c) = current {
        let failed = &nodes[c];
        let asked_since = nodes.iter().any(|n| n.answered() && n.sent > failed.sent);
        if failed.status == NodeStatus::Unreachable && !asked_since {
            return Verdict::Pending;
        }
    }
    Verdict::NoActive
}

/// Among several nodes answering 200, the one most other nodes name as
/// leader; on a tie the current one (no flipping), else the first listed.
fn most_named(nodes: &[NodeView], actives: &[usize], current: Option<usize>) -> usize {
    let votes = |candidate: usize| {
        nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| *i != candidate && n.names_leader == Some(candidate))
            .count()
    };
    let best = actives.iter().map(|&a| votes(a)).max().unwrap_or(0);
    let tied: Vec<usize> = actives
        .iter()
        .copied()
        .filter(|&a| votes(a) == best)
        .collect();
    match current {
        Some(c) if tied.contains(&c) => c,
        _ => tied[0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::vault::node::{leader_address, named_node};
    use crate::discovery::vault::settings::parse_node_urls;
    use crate::fixtures;
    use std::time::Duration;

    /// A node as a captured health (and leader) answer leaves it, probed at `sent`.
    fn from_capture(health: &str, leader: Option<&str>, sent: Instant) -> NodeView {
        let nodes =
            parse_node_urls("http://127.0.0.1:28200,http://127.0.0.1:28210,http://127.0.0.1:28220")
                .unwrap();
        let code = String::from_utf8(fixtures::read(&format!("vault/{health}.code"))).unwrap();
        let names_leader = leader
            .and_then(|l| leader_address(&fixtures::read(&format!("vault/{l}.json"))))
            .and_then(|a| named_node(&a, &nodes));
        NodeView {
            status: NodeStatus::classify(code.trim().parse().ok()),
            sent: Some(sent),
            names_leader,
        }
    }

    fn down(sent: Instant) -> NodeView {
        NodeView {
            status: NodeStatus::Unreachable,
            sent: Some(sent),
            names_leader: None,
        }
    }

    fn active(node: usize) -> Verdict {
        Verdict::Active {
            node,
            several: Vec::new(),
        }
    }

    #[test]
    fn the_one_node_answering_200_is_active() {
        let t = Instant::now();
        let steady = [
            from_capture("health_active", Some("leader_active"), t),
            from_capture("health_standby", Some("leader_standby"), t),
            from_capture("health_sealed", Some("leader_sealed"), t),
        ];
        assert_eq!(select(&steady, None), active(0));
        assert_eq!(select(&steady, Some(0)), active(0));
        // A sealed standby among standbys, after a step-down: nobody active.
        let election = [
            from_capture("health_stepped_down", Some("leader_stepped_down"), t),
            from_capture("health_standby", Some("leader_standby"), t),
            from_capture("health_sealed", Some("leader_sealed"), t),
        ];
        assert_eq!(select(&election, Some(0)), Verdict::NoActive);
    }

    #[test]
    fn two_200s_prefer_the_node_the_others_name_and_do_not_flip() {
        let t = Instant::now();
        // Node 0 is named by the standby (captured leader answer); node 1
        // is an old active that has not noticed yet.
        let nodes = [
            from_capture("health_active", None, t),
            from_capture("health_new_active", None, t),
            from_capture("health_standby", Some("leader_standby"), t),
        ];
        let expected = Verdict::Active {
            node: 0,
            several: vec![0, 1],
        };
        assert_eq!(select(&nodes, None), expected);
        assert_eq!(select(&nodes, Some(1)), expected, "the named one wins");
        // Nobody names either: stay with the current one, never flip.
        let unnamed = [
            from_capture("health_active", None, t),
            from_capture("health_new_active", None, t),
            from_capture("health_stepped_down", Some("leader_stepped_down"), t),
        ];
        for current in [0, 1] {
            match select(&unnamed, Some(current)) {
                Verdict::Active { node, .. } => assert_eq!(node, current),
                other => panic!("{other:?}"),
            }
        }
        match select(&unnamed, None) {
            Verdict::Active { node, .. } => assert_eq!(node, 0, "first listed"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_killed_active_is_dropped_once_the_others_answer_again() {
        let t = Instant::now();
        let later = t + Duration::from_millis(300);
        // The active stopped answering; the others' answers are older.
        let nodes = [
            down(later),
            from_capture("health_after_kill", Some("leader_standby_after_kill"), t),
            from_capture("health_standby", Some("leader_standby"), t),
        ];
        assert_eq!(select(&nodes, Some(0)), Verdict::Pending);
        // Asked again after the failure: they answer, nobody is active. The
        // standby still naming the dead leader changes nothing.
        let asked = [
            down(later),
            from_capture(
                "health_after_kill",
                Some("leader_standby_after_kill"),
                later + Duration::from_millis(1),
            ),
            from_capture("health_standby", Some("leader_standby"), t),
        ];
        assert_eq!(select(&asked, Some(0)), Verdict::NoActive);
    }

    #[test]
    fn nobody_answering_is_a_cut_off_not_a_missing_active() {
        let t = Instant::now();
        let nodes = [down(t), down(t), down(t)];
        assert_eq!(select(&nodes, Some(0)), Verdict::CutOff);
        assert_eq!(
            select(&[NodeView::unknown(), NodeView::unknown()], None),
            Verdict::CutOff
        );
    }
}
