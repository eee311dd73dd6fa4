//! Vault's answers as the Consul-less discovery reads them: the
//! `/v1/sys/health` status code (classified) and the `/v1/sys/leader` body
//! (its `leader_address`). Never panics; a leader address is never empty.
//!
//! Input: bytes 0-1 are the health status code (0 = no answer), the rest
//! is the leader body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_redirector::fuzzing::{vault_health_status, vault_leader_address};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let code = u16::from_le_bytes([data[0], data[1]]);
    let status = vault_health_status((code != 0).then_some(code));
    assert!(!status.is_empty());
    if let Some(address) = vault_leader_address(&data[2..]) {
        assert!(!address.is_empty());
    }
});
