//! The one PEM reader (listener certificate and key, Consul client CA,
//! certificate and key): any bytes. Never panics; text holding an
//! encrypted private key is always refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_redirector::fuzzing::pem_sections;

const ENCRYPTED_MARKS: [&[u8]; 2] = [
    b"-----BEGIN ENCRYPTED PRIVATE KEY-----",
    b"Proc-Type: 4,ENCRYPTED",
];

fuzz_target!(|data: &[u8]| {
    let encrypted = ENCRYPTED_MARKS
        .iter()
        .any(|mark| data.windows(mark.len()).any(|w| w == *mark));
    let result = pem_sections(data);
    if encrypted {
        assert!(result.is_err(), "an encrypted key was accepted");
    }
});
