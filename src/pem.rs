//! The one PEM file reader of both TLS sides (the listener's certificate
//! and key in `server::tls`, the Consul client's CA, certificate and key in
//! `discovery::consul`): read the file, refuse encrypted private keys (the
//! parsers would only report "no private key" or a base64 error), split it
//! into sections, and name the file in every error.

use rustls::pki_types::pem::{PemObject, SectionKind};
use std::path::Path;

/// A PEM file's bytes, once it is known to hold no encrypted key.
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    refuse_encrypted_keys(&bytes).map_err(|e| format!("{name}: {e}"))?;
    Ok(bytes)
}

/// A PEM file's sections in file order: what kind each is, and its DER.
pub fn sections(path: &Path) -> Result<Vec<(SectionKind, Vec<u8>)>, String> {
    let bytes = read(path)?;
    sections_of(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The sections of PEM text already read (the part of `sections` that
/// looks at the bytes: what the fuzz target drives).
pub fn sections_of(pem: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, String> {
    refuse_encrypted_keys(pem)?;
    <(SectionKind, Vec<u8>)>::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM: {e}"))
}

/// The start of the error both sides report.
pub const ENCRYPTED_KEY: &str = "encrypted keys are not supported: the daemon cannot ask for a \
     passphrase; store the key decrypted (e.g. `openssl pkey -in KEY -out KEY.plain`), readable \
     only by this service";

/// PKCS#8 `EncryptedPrivateKeyInfo`.
const PKCS8_ENCRYPTED_LABEL: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----";
/// OpenSSL's legacy form: RFC 1421 headers inside an `RSA`/`EC PRIVATE KEY` block.
const LEGACY_ENCRYPTED_HEADER: &[u8] = b"Proc-Type: 4,ENCRYPTED";

/// `Err(ENCRYPTED_KEY)` if `pem` holds an encrypted private key.
fn refuse_encrypted_keys(pem: &[u8]) -> Result<(), &'static str> {
    let holds = |needle: &[u8]| pem.windows(needle.len()).any(|w| w == needle);
    if holds(PKCS8_ENCRYPTED_LABEL) || holds(LEGACY_ENCRYPTED_HEADER) {
        return Err(ENCRYPTED_KEY);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_encrypted_forms_are_refused_and_plain_keys_pass() {
        let pkcs8 =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIHs\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let legacy = b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
            DEK-Info: AES-128-CBC,31B1B38B2B728B2DFEBA69191C4978CA\n\nuUeQ\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(refuse_encrypted_keys(pkcs8), Err(ENCRYPTED_KEY));
        assert_eq!(refuse_encrypted_keys(legacy), Err(ENCRYPTED_KEY));
        let plain = b"-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n\
            -----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert_eq!(refuse_encrypted_keys(plain), Ok(()));
        assert_eq!(refuse_encrypted_keys(b""), Ok(()));
    }
}
