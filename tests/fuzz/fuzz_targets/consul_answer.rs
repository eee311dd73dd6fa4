//! Consul's `/v1/health/service/<name>` answer parser: any bytes, with or
//! without `--use-ip`. Never panics; a node it chooses is always a usable
//! Location authority (`host:port`, port 1-65535, nothing that could end
//! or extend a header or a URL's authority).
//!
//! Input: byte 0's low bit is `use_ip`, the rest is the answer body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_redirector::fuzzing::consul_answer;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    if let Ok((Some(target), _skipped)) = consul_answer(body, flags & 1 == 1) {
        let (host, port) = target.rsplit_once(':').expect("no port in target");
        assert!(!host.is_empty(), "empty host in {target:?}");
        let port: u16 = port.parse().expect("bad port");
        assert!(port > 0, "port 0 in {target:?}");
        assert!(
            target
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"/?#@\\".contains(&b)),
            "unsafe byte in {target:?}"
        );
    }
});
