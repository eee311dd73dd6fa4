//! What one Consul health answer says about the active node: which entries
//! count (tagged `active`, every check passing, a usable host and port), and
//! which one to pick when several do. Pure: bytes in, a selection out.

use super::PollError;
use crate::discovery::target::{self, Target, UnusableTarget, format_target};
use serde_json::Value;
use std::collections::HashSet;

/// What one Consul answer says about the active node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    None,
    One(Target),
    /// Several passing nodes tagged `active` (a split brain during failover):
    /// `chosen` is the most recently registered one.
    Several {
        chosen: Target,
        all: Vec<Target>,
    },
}

impl Selection {
    pub fn target(&self) -> Option<&Target> {
        match self {
            Selection::None => None,
            Selection::One(t) | Selection::Several { chosen: t, .. } => Some(t),
        }
    }
}

/// What one health answer says: the active node, and why active entries
/// were skipped as not a usable redirect target (escaped, for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub selection: Selection,
    pub unusable: Vec<String>,
}

/// Parse `/v1/health/service/vault` JSON into the active node. Entries must
/// carry the `active` tag and have every check passing: we ask Consul for
/// exactly that (`?passing&tag=active`), and check again so that a crashed
/// active node, which keeps its tag, is never chosen. Whoever can register
/// a node in Consul controls its name and port: an entry whose host or port
/// is not a usable redirect target is skipped, never put in a Location.
pub fn parse_answer(body: &[u8], use_ip: bool) -> Result<Parsed, PollError> {
    let json: Value = serde_json::from_slice(body).map_err(|e| PollError::Json(e.to_string()))?;
    let entries = json
        .as_array()
        .ok_or_else(|| PollError::Json("expected a JSON list".into()))?;
    let mut candidates: Vec<(u64, Target)> = Vec::new();
    let mut unusable = Vec::new();
    for entry in entries {
        let service = &entry["Service"];
        let node = &entry["Node"];
        let tags = service["Tags"].as_array();
        let active = tags.is_some_and(|t| t.iter().any(|t| t.as_str() == Some("active")));
        if !active || !all_checks_passing(&entry["Checks"]) {
            continue;
        }
        let host_key = if use_ip { "Address" } else { "Node" };
        let (Some(host), Some(port)) = (node[host_key].as_str(), service["Port"].as_number())
        else {
            return Err(PollError::Json(format!(
                "an active entry lacks Node.{host_key} or Service.Port"
            )));
        };
        // A negative or fractional port is no port either.
        let Some(port_number) = port.as_u64() else {
            let node = target::shown(host);
            unusable.push(format!(
                "Node.{host_key} {node}: port {port} is not in 1..=65535"
            ));
            continue;
        };
        match format_target(host, port_number) {
            Ok(target) => {
                let modified = service["ModifyIndex"].as_u64().unwrap_or(0);
                candidates.push((modified, target));
            }
            Err(e @ UnusableTarget::Host(_)) => unusable.push(format!("Node.{host_key}: {e}")),
            Err(e @ UnusableTarget::Port(_)) => {
                unusable.push(format!("Node.{host_key} {}: {e}", target::shown(host)));
            }
        }
    }
    Ok(Parsed {
        selection: choose(candidates),
        unusable,
    })
}

fn all_checks_passing(checks: &Value) -> bool {
    match checks.as_array() {
        Some(list) => list.iter().all(|c| c["Status"].as_str() == Some("passing")),
        // An answer without checks (not Consul's shape) is taken as Consul's word.
        None => true,
    }
}

/// Deterministic pick among several: the most recently modified registration
/// (the node that most recently became active), ties broken by name.
fn choose(mut candidates: Vec<(u64, Target)>) -> Selection {
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    // A node registered twice (several service instances) counts once, at
    // its newest registration, wherever the other one sorted.
    let mut seen = HashSet::new();
    candidates.retain(|(_, target)| seen.insert(target.clone()));
    match candidates.len() {
        0 => Selection::None,
        1 => Selection::One(candidates.remove(0).1),
        _ => {
            let all: Vec<Target> = candidates.into_iter().map(|(_, t)| t).collect();
            Selection::Several {
                chosen: all[0].clone(),
                all,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::consul as fixture;

    #[test]
    fn real_answer_gives_node_name_or_ip() {
        let body = fixture("health_service_vault_passing_active.json");
        assert_eq!(
            parse_answer(&body, false).unwrap().selection,
            Selection::One("testnode:8200".into())
        );
        assert_eq!(
            parse_answer(&body, true).unwrap().selection,
            Selection::One("127.0.0.1:8200".into())
        );
    }

    #[test]
    fn crashed_active_node_with_its_tag_is_skipped() {
        // The dead node (8210) is listed first, still tagged active, check critical.
        let body = fixture("killed_tag_active.json");
        assert_eq!(
            parse_answer(&body, true).unwrap().selection,
            Selection::One("127.0.0.1:8220".into())
        );
    }

    #[test]
    fn unfiltered_answers_pick_only_the_passing_active() {
        for (name, port) in [
            ("steady_all.json", 8210),
            ("steady_passing.json", 8210),
            ("sealed_all.json", 8200),
            ("sealed_passing.json", 8200),
            ("killed_all.json", 8220),
            ("killed_passing.json", 8220),
        ] {
            let want = Selection::One(format!("127.0.0.1:{port}").as_str().into());
            assert_eq!(
                parse_answer(&fixture(name), true).unwrap().selection,
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn step_down_window_has_no_active() {
        let body = fixture("stepdown_blocking_result_passing.json");
        assert_eq!(
            parse_answer(&body, false).unwrap().selection,
            Selection::None
        );
        assert_eq!(
            parse_answer(b"[]", false).unwrap().selection,
            Selection::None
        );
    }

    #[test]
    fn bad_json_is_an_error() {
        assert!(matches!(
            parse_answer(b"<html>", false),
            Err(PollError::Json(_))
        ));
        assert!(matches!(
            parse_answer(b"{\"a\":1}", false),
            Err(PollError::Json(_))
        ));
        let no_port = br#"[{"Node":{"Node":"n"},"Service":{"Tags":["active"]},"Checks":[]}]"#;
        assert!(matches!(
            parse_answer(no_port, false),
            Err(PollError::Json(_))
        ));
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let body = br#"[{"Node":{"Node":"n1","Address":"fd00::1"},
            "Service":{"Tags":["active"],"Port":8200},"Checks":[{"Status":"passing"}]}]"#;
        assert_eq!(
            parse_answer(body, true).unwrap().selection,
            Selection::One("[fd00::1]:8200".into())
        );
        assert_eq!(
            parse_answer(body, false).unwrap().selection,
            Selection::One("n1:8200".into())
        );
    }

    #[test]
    fn several_actives_pick_the_newest_registration() {
        let body = br#"[
            {"Node":{"Node":"a","Address":"10.0.0.1"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":10},"Checks":[]},
            {"Node":{"Node":"b","Address":"10.0.0.2"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":30},"Checks":[]},
            {"Node":{"Node":"c","Address":"10.0.0.3"},"Service":{"Tags":["standby"],"Port":8200,"ModifyIndex":40},"Checks":[]}]"#;
        assert_eq!(
            parse_answer(body, false).unwrap().selection,
            Selection::Several {
                chosen: "b:8200".into(),
                all: vec!["b:8200".into(), "a:8200".into()]
            }
        );
    }

    /// Only a panic ends the thread early (which aborts the release build);
    /// where it unwinds, the loop sees the thread gone and ends with an
    /// error rather than waiting for an answer that never comes.

    #[test]
    fn warning_checks_are_not_passing() {
        let body = br#"[{"Node":{"Node":"a"},"Service":{"Tags":["active"],"Port":1},
            "Checks":[{"Status":"passing"},{"Status":"warning"}]}]"#;
        assert_eq!(
            parse_answer(body, false).unwrap().selection,
            Selection::None
        );
    }

    #[test]
    fn a_node_listed_twice_is_counted_once_even_when_not_adjacent() {
        // Sorted newest first, `a` comes first and last: two nodes, not three.
        let body = br#"[
            {"Node":{"Node":"a"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":30},"Checks":[]},
            {"Node":{"Node":"b"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":20},"Checks":[]},
            {"Node":{"Node":"a"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":10},"Checks":[]}]"#;
        assert_eq!(
            parse_answer(body, false).unwrap().selection,
            Selection::Several {
                chosen: "a:8200".into(),
                all: vec!["a:8200".into(), "b:8200".into()]
            }
        );
    }

    #[test]
    fn unusable_active_entries_are_skipped_with_an_escaped_reason() {
        let body = br#"[
            {"Node":{"Node":"evil\r\nX-Injected: yes"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":9},"Checks":[]},
            {"Node":{"Node":"big"},"Service":{"Tags":["active"],"Port":99999,"ModifyIndex":9},"Checks":[]},
            {"Node":{"Node":"neg"},"Service":{"Tags":["active"],"Port":-1,"ModifyIndex":9},"Checks":[]},
            {"Node":{"Node":""},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":9},"Checks":[]},
            {"Node":{"Node":"good"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":1},"Checks":[]}]"#;
        let parsed = parse_answer(body, false).unwrap();
        assert_eq!(parsed.selection, Selection::One("good:8200".into()));
        assert_eq!(
            parsed.unusable,
            [
                r#"Node.Node: host "evil\r\nX-Injected: yes" is not a DNS name, an IPv4 or an IPv6 address"#,
                r#"Node.Node "big": port 99999 is not in 1..=65535"#,
                r#"Node.Node "neg": port -1 is not in 1..=65535"#,
                r#"Node.Node: host "" is not a DNS name, an IPv4 or an IPv6 address"#,
            ]
        );
    }
}
