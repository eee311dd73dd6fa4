//! TLS to the Consul agents: which CAs to trust (ours, Consul's variables,
//! then the system's bundle), and the client certificate for agents that
//! verify their clients. Files are read through `crate::pem`.

use super::settings::ConsulSettings;
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

pub fn tls_config(settings: &ConsulSettings) -> Result<TlsConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut builder = TlsConfig::builder()
        .unversioned_rustls_crypto_provider(provider)
        .disable_verification(!settings.verify);
    // The options and the environment (SSL_CERT_FILE included) are read
    // into the settings; only the system's own bundle is looked for here.
    let ca_file = settings.ca_file.clone().or_else(|| {
        SYSTEM_CA_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    });
    match ca_file {
        Some(path) => {
            let certs = read_pem_certs(&path)?;
            builder = builder.root_certs(RootCerts::new_with_certs(&certs));
        }
        None if settings.verify => {
            return Err("no CA certificates: set CONSUL_CACERT or --consul-ca".into());
        }
        None => {}
    }
    match (&settings.client_cert, &settings.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_pem_certs(cert)?;
            let key = read_pem_key(key)?;
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        (None, None) => {}
        _ => return Err("CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY must be set together".into()),
    }
    Ok(builder.build())
}
