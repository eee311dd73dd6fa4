//! What one node's answers say: its `/v1/sys/health` status code as a
//! state, and which node its `/v1/sys/leader` answer names. Pure: codes and
//! bytes in, meanings out.

use super::settings::NodeUrl;
use serde_json::Value;

/// A node's state, from the status code of `GET /v1/sys/health` (Vault's
/// and OpenBao's defaults, no query parameters). Only `Active` is a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    Active,
    Standby,
    DrSecondary,
    PerfStandby,
    /// A standby that cannot reach the active node.
    StandbyNoActive,
    Uninitialized,
    Sealed,
    /// Removed from the raft cluster.
    Removed,
    /// Any other code, or no answer.
    Unreachable,
}

impl NodeStatus {
    /// `code` is None when the node did not answer (refused, timeout, TLS).
    pub fn classify(code: Option<u16>) -> NodeStatus {
        match code {
            Some(200) => NodeStatus::Active,
            Some(429) => NodeStatus::Standby,
            Some(472) => NodeStatus::DrSecondary,
            Some(473) => NodeStatus::PerfStandby,
            Some(474) => NodeStatus::StandbyNoActive,
            Some(501) => NodeStatus::Uninitialized,
            Some(503) => NodeStatus::Sealed,
            Some(530) => NodeStatus::Removed,
            _ => NodeStatus::Unreachable,
        }
    }

    /// As shown in the health JSON and the log.
    pub fn name(self) -> &'static str {
        match self {
            NodeStatus::Active => "active",
            NodeStatus::Standby => "standby",
            NodeStatus::DrSecondary => "dr_secondary",
            NodeStatus::PerfStandby => "perf_standby",
            NodeStatus::StandbyNoActive => "standby_no_active",
            NodeStatus::Uninitialized => "uninitialized",
            NodeStatus::Sealed => "sealed",
            NodeStatus::Removed => "removed",
            NodeStatus::Unreachable => "unreachable",
        }
    }

    /// Standbys know who leads: their `/v1/sys/leader` is worth asking.
    pub fn knows_leader(self) -> bool {
        matches!(
            self,
            NodeStatus::Standby | NodeStatus::PerfStandby | NodeStatus::Active
        )
    }
}

/// `leader_address` of a `/v1/sys/leader` answer (a URL the leader
/// advertises), if it names one.
pub fn leader_address(body: &[u8]) -> Option<String> {
    let json: Value = serde_json::from_slice(body).ok()?;
    let address = json.get("leader_address")?.as_str()?;
    (!address.is_empty()).then(|| address.to_owned())
}

/// Which listed node an advertised leader address names: the same host and
/// port (the host compared without case). The address is only ever used to
/// choose among listed nodes, never put in a Location.
pub fn named_node(address: &str, nodes: &[NodeUrl]) -> Option<usize> {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    nodes
        .iter()
        .position(|n| n.target.as_str().eq_ignore_ascii_case(authority))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::vault::settings::parse_node_urls;
    use crate::fixtures;

    /// A captured answer: its status code and body.
    fn captured(name: &str) -> (u16, Vec<u8>) {
        let code = String::from_utf8(fixtures::read(&format!("vault/{name}.code"))).unwrap();
        let body = fixtures::read(&format!("vault/{name}.json"));
        (code.trim().parse().unwrap(), body)
    }

    fn status_of(name: &str) -> NodeStatus {
        NodeStatus::classify(Some(captured(name).0))
    }

    #[test]
    fn real_health_answers_classify_by_their_code() {
        assert_eq!(status_of("health_active"), NodeStatus::Active);
        assert_eq!(status_of("health_standby"), NodeStatus::Standby);
        assert_eq!(status_of("health_stepped_down"), NodeStatus::Standby);
        assert_eq!(status_of("health_sealed"), NodeStatus::Sealed);
        assert_eq!(status_of("health_uninitialized"), NodeStatus::Uninitialized);
        // The body agrees with the code in each captured answer.
        for (name, standby, sealed) in [
            ("health_active", false, false),
            ("health_standby", true, false),
            ("health_sealed", true, true),
            ("health_uninitialized", true, true),
        ] {
            let json: Value = serde_json::from_slice(&captured(name).1).unwrap();
            assert_eq!(json["standby"], standby, "{name}");
            assert_eq!(json["sealed"], sealed, "{name}");
        }
    }

    #[test]
    fn every_documented_code_has_its_state_and_only_200_is_active() {
        let table = [
            (200, "active"),
            (429, "standby"),
            (472, "dr_secondary"),
            (473, "perf_standby"),
            (474, "standby_no_active"),
            (501, "uninitialized"),
            (503, "sealed"),
            (530, "removed"),
            (500, "unreachable"),
            (307, "unreachable"),
            (204, "unreachable"),
        ];
        for (code, name) in table {
            let status = NodeStatus::classify(Some(code));
            assert_eq!(status.name(), name, "{code}");
            assert_eq!(status == NodeStatus::Active, code == 200);
        }
        assert_eq!(NodeStatus::classify(None), NodeStatus::Unreachable);
    }

    #[test]
    fn real_leader_answers_name_the_listed_active() {
        let nodes =
            parse_node_urls("http://127.0.0.1:28200,http://127.0.0.1:28210,http://127.0.0.1:28220")
                .unwrap();
        for name in ["leader_active", "leader_standby"] {
            let address = leader_address(&captured(name).1).unwrap();
            assert_eq!(address, "http://127.0.0.1:28200", "{name}");
            assert_eq!(named_node(&address, &nodes), Some(0));
        }
        // During an election, and from a sealed node: nobody named.
        assert_eq!(leader_address(&captured("leader_stepped_down").1), None);
        assert_eq!(leader_address(&captured("leader_uninitialized").1), None);
        assert_eq!(leader_address(b"not json"), None);
        // An address that is not listed names nobody.
        assert_eq!(named_node("https://evil.example:8200", &nodes), None);
        assert_eq!(named_node("http://127.0.0.1:28210/", &nodes), Some(1));
    }
}
