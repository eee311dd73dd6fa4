//! TLS for the listener: PEM files -> a rustls `ServerConfig` (ring provider
//! only), pooling every PEM object of both files as the original did, and
//! the reload of that pair (SIGHUP or a changed file). What a TLS connection
//! does with the config is `conn`'s business.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::SectionKind;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use rustls::server::ServerConfig;
use rustls::sign::CertifiedKey;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often the certificate and key files are checked for changes.
const FILE_CHECK: Duration = Duration::from_secs(5);

/// What a load found wrong, naming the file where there is one.
#[derive(Debug)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain (leaf first) and the key, out of two PEM files.
struct Pair {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// Add a PEM file's certificates and keys to the pool.
fn read_pem(
    path: &Path,
    certs: &mut Vec<CertificateDer<'static>>,
    keys: &mut Vec<PrivateKeyDer<'static>>,
) -> Result<(), TlsError> {
    for (kind, der) in crate::pem::sections(path).map_err(TlsError)? {
        match kind {
            SectionKind::Certificate => certs.push(CertificateDer::from(der)),
            SectionKind::PrivateKey => keys.push(PrivatePkcs8KeyDer::from(der).into()),
            SectionKind::RsaPrivateKey => keys.push(PrivatePkcs1KeyDer::from(der).into()),
            SectionKind::EcPrivateKey => keys.push(PrivateSec1KeyDer::from(der).into()),
            _ => {}
        }
    }
    Ok(())
}

/// Pool both files; exactly one private key; the leaf is the certificate
/// whose public key matches it, wherever it stands; the others follow as
/// the chain, in file order.
fn load_pair(cert_path: &Path, key_path: &Path) -> Result<Pair, TlsError> {
    let mut certs = Vec::new();
    let mut keys = Vec::new();
    read_pem(cert_path, &mut certs, &mut keys)?;
    if key_path != cert_path {
        read_pem(key_path, &mut certs, &mut keys)?;
    }
    let files = if key_path == cert_path {
        format!("{}", cert_path.display())
    } else {
        format!("{} and {}", cert_path.display(), key_path.display())
    };
    let key = match keys.len() {
        0 => return Err(TlsError(format!("{files}: no private key found"))),
        1 => keys.remove(0),
        n => {
            return Err(TlsError(format!(
                "{files}: {n} private keys found, expected exactly one"
            )));
        }
    };
    if certs.is_empty() {
        return Err(TlsError(format!("{files}: no certificate found")));
    }
    let signing_key = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError(format!("{}: unusable private key: {e}", key_path.display())))?;
    let leaf = certs
        .iter()
        .position(|cert| {
            CertifiedKey::new(vec![cert.clone()], Arc::clone(&signing_key))
                .keys_match()
                .is_ok()
        })
        .ok_or_else(|| TlsError(format!("{files}: no certificate matches the private key")))?;
    let mut chain = vec![certs.remove(leaf)];
    chain.extend(certs);
    Ok(Pair { chain, key })
}

/// A ready server config: TLS 1.2 and 1.3, ALPN http/1.1, and session
/// resumption (tickets and a session cache) unless turned off.
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
    resumption: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let Pair { chain, key } = load_pair(cert_path, key_path)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError(format!("TLS set-up: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError(format!("{}: {e}", cert_path.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if resumption {
        config.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| TlsError(format!("TLS session tickets: {e}")))?;
    } else {
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}

/// The certificate and key files in service, and what they looked like when
/// loaded, so that a change can be noticed and the pair reloaded.
pub struct TlsSource {
    cert_path: PathBuf,
    key_path: PathBuf,
    seen: [Option<(SystemTime, u64)>; 2],
    resumption: bool,
    config: Arc<ServerConfig>,
    next_check: Instant,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl TlsSource {
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        resumption: bool,
    ) -> Result<TlsSource, TlsError> {
        let seen = [stamp(cert_path), stamp(key_path)];
        let config = server_config(cert_path, key_path, resumption)?;
        Ok(TlsSource {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            seen,
            resumption,
            config,
            next_check: Instant::now() + FILE_CHECK,
        })
    }

    /// The config new connections get.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// When the files are checked for changes next.
    pub fn next_check(&self) -> Instant {
        self.next_check
    }

    /// Check the files when due; reload the pair if they changed.
    pub fn on_timer(&mut self, now: Instant) {
        if now < self.next_check {
            return;
        }
        self.next_check = now + FILE_CHECK;
        if self.changed() {
            self.reload_logged("a changed file");
        }
    }

    /// Reload (SIGHUP, a changed file), saying how it went: new connections
    /// get the re-read pair, open ones keep theirs; a broken pair is logged
    /// and the one in service stays.
    pub fn reload_logged(&mut self, why: &str) {
        match self.reload() {
            Ok(()) => log::warn!("Reloaded the TLS certificate and key after {why}"),
            Err(e) => log::error!(
                "Keeping the TLS certificate in service: reload after {why} failed: {e}"
            ),
        }
    }

    /// Have the files changed since the pair in service was loaded?
    fn changed(&self) -> bool {
        [stamp(&self.cert_path), stamp(&self.key_path)] != self.seen
    }

    /// Re-read the pair. On success new connections get it; on failure the
    /// pair in service stays, and the error is returned for the log.
    fn reload(&mut self) -> Result<(), TlsError> {
        // Stamp first: a broken pair is reported once, not on every check.
        self.seen = [stamp(&self.cert_path), stamp(&self.key_path)];
        self.config = server_config(&self.cert_path, &self.key_path, self.resumption)?;
        Ok(())
    }
}
