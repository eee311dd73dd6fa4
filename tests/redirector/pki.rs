//! An in-test PKI (rcgen): a root CA, an intermediate, and leaves signed by
//! the intermediate, with rustls configs for both ends.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::sync::Arc;

/// A CA, an intermediate, and leaves signed by the intermediate.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

pub struct Leaf {
    /// Leaf then intermediate, as a deployment's certificate file has them.
    pub cert_pem: String,
    /// The leaf alone.
    pub leaf_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test root CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let mut mid_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        mid_params
            .distinguished_name
            .push(DnType::CommonName, "test intermediate CA");
        mid_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let intermediate =
            CertifiedIssuer::signed_by(mid_params, KeyPair::generate().unwrap(), &ca).unwrap();
        Pki { ca, intermediate }
    }

    pub fn leaf(&self) -> Leaf {
        self.leaf_for(&["localhost", "127.0.0.1"])
    }

    pub fn leaf_for(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let cert = params.signed_by(&key, &self.intermediate).unwrap();
        Leaf {
            cert_pem: cert.pem() + &self.intermediate.pem(),
            leaf_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    pub fn intermediate_pem(&self) -> String {
        self.intermediate.pem()
    }

    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Leaf {
    /// `server_config`, and clients must present a certificate from `pki`.
    pub fn server_config_requiring_clients(&self, pki: &Pki) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .unwrap();
        let (chain, key) = self.chain_and_key();
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        Arc::new(config)
    }

    /// The leaf and the intermediate, and the leaf's key.
    fn chain_and_key(
        &self,
    ) -> (
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .map(Result::unwrap)
            .collect();
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        (chain, key)
    }

    /// A rustls server config presenting this leaf and the intermediate.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let (chain, key) = self.chain_and_key();
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
        Arc::new(config)
    }
}

/// A throw-away P-256 key encrypted as PKCS#8 (`openssl pkcs8 -topk8 -v2
/// aes-128-cbc`, passphrase `test`): the daemon cannot ask for a passphrase.
pub const ENCRYPTED_PKCS8_KEY: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAgmp3cupALcxAICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEAQIEEJGupqQbYaoafyrHvggCXiYEgZDY
gQr8FnU5ETqCmkX6RAKLjAKiQf6L5UQhk7JQOtZzARqAZHZVcHxHU587PsnfGv5X
Dc8vU8F4wIGyHgSZEdo3cuCdhOCHnL2QlxAKWsALkmYMThbbwae70rqeHIdzV48Y
w7H7w43QwfhidcrunFLhjvRAuRlAzS20WSzQjwIVgyvVszoLrrRazIV3Ej2r3SQ=
-----END ENCRYPTED PRIVATE KEY-----
";

/// The same kind of key in OpenSSL's legacy encrypted form (`openssl ec
/// -aes128`): `Proc-Type: 4,ENCRYPTED` headers inside the PEM block.
pub const ENCRYPTED_LEGACY_KEY: &str = "-----BEGIN EC PRIVATE KEY-----
Proc-Type: 4,ENCRYPTED
DEK-Info: AES-128-CBC,31B1B38B2B728B2DFEBA69191C4978CA

uUeQw+ll/nOtcA8vf0qpe73E7jJFzLHSd0cTnykeKx/mEZK6D5WrffaIpFuHn/7J
wHAWi2n/zKSvzaC0SV3u1YgTKjtdNFY2Q3HZAUGB4yZufXKijH6JNsLj8Y20yrBY
iCPN5T0CNRuSrEbHNibNm9bZiBhHZXb6rxnJtte2Zpk=
-----END EC PRIVATE KEY-----
";
