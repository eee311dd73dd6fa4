//! TLS from discovery to the servers it asks (Consul agents, Vault nodes):
//! which CAs to trust (a file, a directory, else the system's bundle), and
//! the client certificate for servers that verify their clients. Files are
//! read through `crate::pem`; each source names its own variables in errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, parse_pem};

fn read_pem(path: &Path) -> Result<Vec<PemItem<'static>>, String> {
    parse_pem(&crate::pem::read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))
}

fn read_pem_certs(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let certs: Vec<Certificate<'static>> = read_pem(path)?
        .into_iter()
        .filter_map(|item| match item {
            PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

fn read_pem_key(path: &Path) -> Result<PrivateKey<'static>, String> {
    read_pem(path)?
        .into_iter()
        .find_map(|item| match item {
            PemItem::PrivateKey(k) => Some(k),
            _ => None,
        })
        .ok_or_else(|| format!("{}: no private key found", path.display()))
}

/// Where the system keeps its CA bundle (Debian, RHEL, Alpine, SUSE).
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// What one source's settings say about TLS, and how its errors name the
/// settings.
pub struct TlsFiles<'a> {
    pub ca_file: Option<&'a Path>,
    /// A directory of PEM CA certificates (used when `ca_file` is not set).
    pub ca_dir: Option<&'a Path>,
    pub client_cert: Option<&'a Path>,
    pub client_key: Option<&'a Path>,
    pub verify: bool,
    /// "set CONSUL_CACERT or --consul-ca"
    pub ca_hint: &'a str,
    /// "CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY"
    pub client_pair: &'a str,
}

pub fn tls_config(files: &TlsFiles<'_>) -> Result<TlsConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut builder = TlsConfig::builder()
        .unversioned_rustls_crypto_provider(provider)
        .disable_verification(!files.verify);
    let certs = match (files.ca_file, files.ca_dir) {
        (Some(path), _) => Some(read_pem_certs(path)?),
        (None, Some(dir)) => Some(read_pem_dir(dir)?),
        // The options and the environment (SSL_CERT_FILE included) are read
        // into the settings; only the system's own bundle is looked for here.
        (None, None) => match SYSTEM_CA_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        {
            Some(path) => Some(read_pem_certs(&path)?),
            None => None,
        },
    };
    match certs {
        Some(certs) => builder = builder.root_certs(RootCerts::new_with_certs(&certs)),
        None if files.verify => return Err(format!("no CA certificates: {}", files.ca_hint)),
        None => {}
    }
    match (files.client_cert, files.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_pem_certs(cert)?;
            let key = read_pem_key(key)?;
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        (None, None) => {}
        _ => return Err(format!("{} must be set together", files.client_pair)),
    }
    Ok(builder.build())
}

/// Every certificate in the PEM files of `dir` (Vault's `VAULT_CAPATH`);
/// files that hold none are skipped, as Vault does.
fn read_pem_dir(dir: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("{}: cannot read: {e}", dir.display()))?;
    // Any order: every certificate found is a root.
    let certs: Vec<Certificate<'static>> = entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_file())
        .filter_map(|p| read_pem_certs(&p).ok())
        .flatten()
        .collect();
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate found", dir.display()));
    }
    Ok(certs)
}
