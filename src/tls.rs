//! rustls configuration for both directions, always with the ring provider (aws-lc-rs
//! is kept out of the dependency tree so rustls never has two providers to choose from).
//! The server side loads a PEM certificate chain and key through `CertResolver`, which
//! can swap in a renewed pair (SIGHUP) for new handshakes while established connections
//! carry on; the client side trusts the system roots plus an optional operator CA bundle.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read PEM from {path}: {source}")]
    Pem {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem {
        path: path.to_owned(),
        source,
    })
}

/// The API's certificate and key, loaded from their files and replaceable while hookd
/// runs. Each handshake takes the pair current at that moment.
#[derive(Debug)]
pub struct CertResolver {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            current: RwLock::new(Arc::new(load_pair(cert, key)?)),
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
        })
    }

    /// Reads the files again. A pair that does not load, or whose key does not match
    /// the certificate, is refused and the current one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = Arc::new(load_pair(&self.cert_path, &self.key_path)?);
        // A poisoned lock only means a panic elsewhere mid-swap of an Arc: the value
        // inside is whole, so take it over.
        let mut current = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = pair;
        Ok(())
    }

    fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let certified = CertifiedKey::from_der(load_certs(cert)?, load_key(key)?, &provider())?;
    // from_der lets a key whose public half it cannot derive through; hookd's key types
    // (RSA, ECDSA, Ed25519 under ring) all have one, so insist on the match.
    certified.keys_match()?;
    Ok(certified)
}

/// Server configuration for the API listener (HTTP/1.1 over TLS 1.2/1.3) whose
/// certificate comes from `resolver`.
pub fn server_config_with(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Server configuration for a fixed certificate and key (checks, `hookd listen`).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(Arc::new(CertResolver::load(cert, key)?))
}

/// Client configuration for outbound deliveries: the system roots (when the machine has
/// any) plus every certificate in `extra_ca`.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "skipping an unreadable system root certificate");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        for cert in load_certs(path)? {
            roots.add(cert)?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
