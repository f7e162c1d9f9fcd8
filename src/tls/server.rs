//! The TLS side of the listeners: certificate and key from PEM files, loaded at start and re-read on SIGHUP.
//!
//! Sessions take the current [`ServerConfig`] at the moment they start a handshake, so a reload never touches
//! a session already running: established TLS sessions keep the certificate they negotiated, new ones get the
//! new one. A reload that fails (a half-written file during renewal, a key that does not match) keeps the old
//! certificate and reports why; the daemon never ends up without TLS because of a bad renewal.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// The certificate in use, swappable at run time.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Loads the chain and key; any problem is a usage error naming the file.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls> {
        let config = build(cert, key)?;
        Ok(Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// The configuration for a handshake starting now.
    pub fn config(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The acceptor for a handshake starting now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config())
    }

    /// Re-reads both files; on failure the previous certificate stays in use and the error is returned.
    pub fn reload(&self) -> Result<()> {
        let config = Arc::new(build(&self.cert, &self.key)?);
        match self.current.write() {
            Ok(mut guard) => *guard = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }
}

fn build(cert: &Path, key: &Path) -> Result<ServerConfig> {
    let bad =
        |path: &Path, why: String| Error::usage(format!("server.tls: {}: {why}", path.display()));
    let pem = std::fs::read(cert).map_err(|e| bad(cert, format!("cannot read: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(bad(cert, "no CERTIFICATE block found".into()));
    }
    let pem = std::fs::read(key).map_err(|e| bad(key, format!("cannot read: {e}")))?;
    let key_der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| bad(key, format!("no usable private key: {e}")))?;
    ServerConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            bad(
                key,
                format!("does not match the certificate or is unsupported: {e}"),
            )
        })
}

/// `TLSv1.3:TLS13_AES_256_GCM_SHA384`-style text for the Received header and logs.
pub fn describe(conn: &rustls::ServerConnection) -> String {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    match conn.negotiated_cipher_suite() {
        Some(suite) => format!("{version}:{:?}", suite.suite()),
        None => version.to_string(),
    }
}
