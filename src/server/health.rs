//! The `/vault-redirector-health` JSON: the original's keys, order and
//! meaning, then our additions; and the local-time stamp it carries.

use crate::cli::{SOURCE_URL, VERSION};
use crate::discovery::vault::watch::NodeReport;
use std::time::{SystemTime, UNIX_EPOCH};

pub const HEALTH_PATH: &str = "/vault-redirector-health";

pub struct HealthView<'a> {
    /// None (`null`) when the source is the Vault nodes.
    pub consul_host_port: Option<&'a str>,
    pub active_vault: Option<&'a str>,
    pub last_consul_poll: Option<&'a str>,
    /// Ours, after the original keys: why the last poll failed, if it did;
    pub last_consul_error: Option<&'a str>,
    /// the agent that answered last;
    pub consul_agent: Option<&'a str>,
    /// something odd about Consul's answers (e.g. no ACL token and no node);
    pub consul_warning: Option<&'a str>,
    /// a termination signal came and `--drain` is running out;
    pub draining: bool,
    /// without Consul: every listed node's state (the key is left out with
    /// Consul);
    pub vault_nodes: Option<&'a [NodeReport]>,
    /// and why the last round found no node answering.
    pub last_vault_error: Option<&'a str>,
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "null".into())
}

fn json_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "null".into(), json_string)
}

/// Python's `json.dumps` layout (", " and ": "), which some monitoring
/// scripts match on as text.
pub fn render(view: &HealthView<'_>) -> String {
    let vault = match view.vault_nodes {
        None => String::new(),
        Some(nodes) => format!(
            ", \"vault_nodes\": [{}], \"last_vault_error\": {}",
            nodes.iter().map(node_json).collect::<Vec<_>>().join(", "),
            json_opt(view.last_vault_error)
        ),
    };
    format!(
        "{{\"healthy\": true, \"application\": \"vault-redirector\", \"source\": {}, \"version\": {}, \
         \"consul_host_port\": {}, \"active_vault\": {}, \"last_consul_poll\": {}, \"last_consul_error\": {}, \"consul_agent\": {}, \"consul_warning\": {}, \"draining\": {}{vault}}}",
        json_string(SOURCE_URL),
        json_string(VERSION),
        json_opt(view.consul_host_port),
        json_opt(view.active_vault),
        json_opt(view.last_consul_poll),
        json_opt(view.last_consul_error),
        json_opt(view.consul_agent),
        json_opt(view.consul_warning),
        view.draining,
    )
}

/// One listed node: `{"url": ..., "status": ..., "code": ..., "last_seen": ..., "error": ...}`.
fn node_json(node: &NodeReport) -> String {
    format!(
        "{{\"url\": {}, \"status\": {}, \"code\": {}, \"last_seen\": {}, \"error\": {}}}",
        json_string(&node.url),
        json_string(node.status),
        node.code.map_or_else(|| "null".into(), |c| c.to_string()),
        json_opt(node.last_seen.as_deref()),
        json_opt(node.error.as_deref()),
    )
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` in local time without a zone, like Python's
/// `datetime.now().isoformat()`.
pub fn local_timestamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    // The C type is inferred: naming libc::time_t warns on musl.
    let secs = since.as_secs() as _;
    // SAFETY: localtime_r only writes the struct we hand it; a zeroed `tm`
    // is a valid value of that plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return "1970-01-01T00:00:00.000000".into();
    }
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        since.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_the_original_order_with_python_spacing() {
        let json = render(&HealthView {
            consul_host_port: Some("127.0.0.1:8500"),
            active_vault: Some("vault-b:8200"),
            last_consul_poll: Some("2026-11-24T21:19:40.123456"),
            last_consul_error: None,
            consul_agent: Some("127.0.0.1:8500"),
            consul_warning: None,
            draining: false,
            vault_nodes: None,
            last_vault_error: None,
        });
        assert_eq!(
            json,
            format!(
                "{{\"healthy\": true, \"application\": \"vault-redirector\", \"source\": \"{SOURCE_URL}\", \
                 \"version\": \"{VERSION}\", \"consul_host_port\": \"127.0.0.1:8500\", \"active_vault\": \
                 \"vault-b:8200\", \"last_consul_poll\": \"2026-11-24T21:19:40.123456\", \"last_consul_error\": null, \
                 \"consul_agent\": \"127.0.0.1:8500\", \"consul_warning\": null, \"draining\": false}}"
            )
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["healthy"], true);
    }

    #[test]
    fn nulls_and_escaping() {
        let json = render(&HealthView {
            consul_host_port: Some("we\"ird:1"),
            active_vault: None,
            last_consul_poll: None,
            last_consul_error: Some("refused \"x\""),
            consul_agent: None,
            consul_warning: None,
            draining: true,
            vault_nodes: None,
            last_vault_error: None,
        });
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["active_vault"], serde_json::Value::Null);
        assert_eq!(parsed["last_consul_poll"], serde_json::Value::Null);
        assert_eq!(parsed["consul_host_port"], "we\"ird:1");
        assert_eq!(parsed["last_consul_error"], "refused \"x\"");
        assert_eq!(parsed["draining"], true);
    }

    #[test]
    fn without_consul_the_consul_keys_are_null_and_every_node_is_listed() {
        let nodes = [
            NodeReport {
                url: "https://vault-a:8200".into(),
                status: "active",
                code: Some(200),
                last_seen: Some("2026-11-26T01:00:00.000001".into()),
                error: None,
            },
            NodeReport {
                url: "https://vault-b:8200".into(),
                status: "unreachable",
                code: Some(429),
                last_seen: None,
                error: Some("timed out \"x\"".into()),
            },
        ];
        let json = render(&HealthView {
            consul_host_port: None,
            active_vault: Some("vault-a:8200"),
            last_consul_poll: None,
            last_consul_error: None,
            consul_agent: None,
            consul_warning: None,
            draining: false,
            vault_nodes: Some(&nodes),
            last_vault_error: None,
        });
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["consul_host_port"], serde_json::Value::Null);
        assert_eq!(parsed["active_vault"], "vault-a:8200");
        assert_eq!(parsed["vault_nodes"][0]["status"], "active");
        assert_eq!(parsed["vault_nodes"][0]["code"], 200);
        assert_eq!(parsed["vault_nodes"][1]["url"], "https://vault-b:8200");
        assert_eq!(parsed["vault_nodes"][1]["error"], "timed out \"x\"");
        assert_eq!(
            parsed["vault_nodes"][1]["last_seen"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn timestamp_shape() {
        let t =
            local_timestamp(UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_000_042));
        assert_eq!(t.len(), "YYYY-MM-DDTHH:MM:SS.ffffff".len(), "{t}");
        assert!(t.ends_with(".000042"), "{t}");
        assert_eq!(&t[4..5], "-");
        assert_eq!(&t[10..11], "T");
    }
}
