//! What a redirect may point at: a host (a DNS name of RFC 1123 labels, an
//! IPv4 literal or an IPv6 literal) and a port 1..=65535, as the authority
//! of a Location. Every source of Vault nodes builds its targets here, so
//! that nothing it was told can split a response or bend the URL. Pure; no
//! I/O.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 1035/1123: a label is 1 to 63 octets, a name at most 253 (without
/// the trailing dot of a fully qualified name).
const MAX_LABEL_BYTES: usize = 63;
const MAX_NAME_BYTES: usize = 253;
/// How much of a rejected value an error shows (a Consul answer may hold
/// megabytes; a log line should not).
const MAX_SHOWN_CHARS: usize = 80;

/// A usable redirect target: the `host:port` authority of the Location
/// (IPv6 in brackets), as logged and shown in the health JSON. Only
/// `format_target` makes one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target(String);

impl Target {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// So that `[Target]::join` and lookups by `&str` work.
impl std::borrow::Borrow<str> for Target {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Tests write expected targets as text; the program makes them only
/// through `format_target`.
#[cfg(test)]
impl From<&str> for Target {
    fn from(text: &str) -> Target {
        Target(text.to_owned())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a host or port is not a usable target. Display escapes the value
/// (`{:?}`), so control characters cannot forge log lines, and shortens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnusableTarget {
    Host(String),
    Port(u64),
}

impl fmt::Display for UnusableTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnusableTarget::Host(host) => write!(
                f,
                "host {} is not a DNS name, an IPv4 or an IPv6 address",
                shown(host)
            ),
            UnusableTarget::Port(port) => write!(f, "port {port} is not in 1..=65535"),
        }
    }
}

/// A value from outside as a log line may show it: quoted and escaped
/// (`{:?}`: CR, LF and escape sequences cannot forge lines) and shortened.
pub fn shown(value: &str) -> String {
    let start: String = value.chars().take(MAX_SHOWN_CHARS).collect();
    let more = if start.len() < value.len() { "..." } else { "" };
    format!("{start:?}{more}")
}

/// The target for `host` (an IPv6 literal with or without brackets) and
/// `port`, or why they cannot be one.
pub fn format_target(host: &str, port: u64) -> Result<Target, UnusableTarget> {
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(UnusableTarget::Port(port))?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.contains(':') {
        if bare.parse::<Ipv6Addr>().is_ok() {
            return Ok(Target(format!("[{bare}]:{port}")));
        }
    } else if bare.len() == host.len() && (is_ipv4(host) || is_dns_name(host)) {
        return Ok(Target(format!("{host}:{port}")));
    }
    Err(UnusableTarget::Host(host.to_owned()))
}

fn is_ipv4(host: &str) -> bool {
    host.parse::<Ipv4Addr>().is_ok()
}

/// RFC 1123 host name: letters, digits and inner hyphens per label. The last
/// label may not be all digits (a name never looks like an IPv4 address:
/// `999.1.1.1` or `8200` would be read as one by URL parsers).
fn is_dns_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= MAX_LABEL_BYTES
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    });
    let last = name.rsplit('.').next().unwrap_or(name);
    labels_ok && !last.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(host: &str, port: u64) -> String {
        format_target(host, port)
            .unwrap_or_else(|e| panic!("{host:?} {port}: {e}"))
            .to_string()
    }

    #[test]
    fn dns_names_and_ip_literals_are_targets() {
        assert_eq!(ok("vault-b", 8200), "vault-b:8200");
        assert_eq!(
            ok("Vault-1.dc1.example.com", 1),
            "Vault-1.dc1.example.com:1"
        );
        assert_eq!(ok("vault.example.", 65535), "vault.example.:65535");
        assert_eq!(ok("10.0.0.1", 8200), "10.0.0.1:8200");
        assert_eq!(ok("fd00::1", 8200), "[fd00::1]:8200");
        assert_eq!(ok("[fd00::1]", 8200), "[fd00::1]:8200");
        assert_eq!(ok("::ffff:10.0.0.1", 8200), "[::ffff:10.0.0.1]:8200");
        assert_eq!(ok(&"a".repeat(63), 80), format!("{}:80", "a".repeat(63)));
        let longest = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(longest.len(), 253);
        assert!(format_target(&longest, 80).is_ok());
    }

    #[test]
    fn anything_that_could_split_a_response_or_bend_the_url_is_refused() {
        for host in [
            "evil\r\nSet-Cookie: pwn=1\r\nX-Injected: yes",
            "evil.example/x?",
            "evil.example#",
            "user@evil.example",
            "evil.example:9999",
            "evil example",
            "evil\u{0}",
            "v\u{e4}ult",
            "under_score",
            "",
            ".",
            "a..b",
            ".a",
            "-a",
            "a-",
            "a.-b",
            "999.1.1.1",
            "1.2.3",
            "8200",
            "[10.0.0.1]",
            "[fd00::1",
            "fd00::1]",
            "fe80::1%eth0",
            "[fd00::1]:8200",
            "fd00::g",
        ] {
            assert_eq!(
                format_target(host, 8200),
                Err(UnusableTarget::Host(host.to_owned())),
                "{host:?}"
            );
        }
        assert!(format_target(&"a".repeat(64), 80).is_err());
        let too_long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62),
        ]
        .join(".");
        assert!(format_target(&too_long, 80).is_err());
    }

    #[test]
    fn ports_are_1_to_65535() {
        for port in [0, 65536, 99999, u64::MAX] {
            assert_eq!(
                format_target("vault", port),
                Err(UnusableTarget::Port(port))
            );
        }
    }

    #[test]
    fn reasons_are_escaped_and_short() {
        let e = format_target("evil\r\nX-Injected: yes", 8200).unwrap_err();
        let text = e.to_string();
        assert_eq!(
            text,
            r#"host "evil\r\nX-Injected: yes" is not a DNS name, an IPv4 or an IPv6 address"#
        );
        assert!(!text.contains(['\r', '\n']));
        let long = format_target(&"\u{1b}".repeat(100_000), 8200)
            .unwrap_err()
            .to_string();
        assert!(long.len() < 600 && !long.contains('\u{1b}'), "{long}");
        assert!(long.contains("\"..."), "{long}");
        assert_eq!(
            format_target("vault", 0).unwrap_err().to_string(),
            "port 0 is not in 1..=65535"
        );
    }
}
