//! Whom outbound delivery trusts, and the TLS parameters of each kind of STARTTLS.
//!
//! - Opportunistic TLS (the default, RFC 3207 / RFC 7435): any certificate is accepted, as Postfix's `may`
//!   level does; encryption against passive eavesdroppers is the point, and refusing to deliver over a
//!   self-signed certificate would only push the mail back to plain text.
//! - Verified TLS (MTA-STS `enforce`, RFC 8461 4.2): the chain must lead to a trusted root and name the MX
//!   host; the handshake itself fails otherwise.
//!
//! Trusted roots are webpki-roots plus, for tests and private CAs, the PEM certificates of the file named by
//! [`EXTRA_CA_ENV`] (a test-only knob) or given to [`Trust::with_extra_pem`]. The same roots verify the
//! MTA-STS policy fetch. rustls uses the ring provider only (lettre's `ring` feature).

use std::sync::Arc;

use lettre::transport::smtp::client::{
    Certificate, CertificateStore, TlsParameters, TlsParametersBuilder,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Environment variable naming a PEM file of CA certificates trusted in addition to webpki-roots for outbound
/// STARTTLS and MTA-STS policy fetches: a test-only knob (the serve tests' MX hosts use a throw-away CA).
pub const EXTRA_CA_ENV: &str = "MAILCTL_OUTBOUND_EXTRA_CA";

/// The trusted roots of outbound delivery.
#[derive(Clone)]
pub struct Trust {
    /// webpki-roots plus the extra certificates, for the policy fetch and post-handshake checks.
    roots: Arc<RootCertStore>,
    /// The extra CA certificates alone, handed to lettre on top of its webpki-roots store.
    extra: Vec<CertificateDer<'static>>,
}

impl Trust {
    /// webpki-roots alone.
    pub fn webpki() -> Trust {
        Trust {
            roots: Arc::new(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }),
            extra: Vec::new(),
        }
    }

    /// webpki-roots plus the certificates of [`EXTRA_CA_ENV`] when it is set; an unreadable file is logged and
    /// ignored (verified deliveries to hosts under that CA then defer, which is what the log explains).
    pub fn from_env() -> Trust {
        let trust = Trust::webpki();
        let Some(path) = std::env::var_os(EXTRA_CA_ENV) else {
            return trust;
        };
        let shown = std::path::Path::new(&path).display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(pem) => trust.with_extra_pem(&pem).unwrap_or_else(|e| {
                tracing::warn!(target: "mailctl::outbound", "{EXTRA_CA_ENV}={shown}: {e}");
                Trust::webpki()
            }),
            Err(e) => {
                tracing::warn!(target: "mailctl::outbound", "{EXTRA_CA_ENV}={shown}: {e}");
                trust
            }
        }
    }

    /// These roots plus the CA certificates in `pem` (at least one).
    pub fn with_extra_pem(mut self, pem: &str) -> Result<Trust, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err("no certificate in the PEM text".into());
        }
        let mut roots = (*self.roots).clone();
        for cert in &certs {
            roots
                .add(cert.clone())
                .map_err(|e| format!("not a usable CA certificate: {e}"))?;
        }
        self.roots = Arc::new(roots);
        self.extra.extend(certs);
        Ok(self)
    }

    /// Every trusted root (for the MTA-STS policy fetch).
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }

    /// Parameters for opportunistic STARTTLS with `host`: any certificate, SNI `host`.
    pub fn opportunistic(
        &self,
        host: &str,
    ) -> Result<TlsParameters, lettre::transport::smtp::Error> {
        TlsParametersBuilder::new(host.to_string())
            .certificate_store(CertificateStore::None)
            .dangerous_accept_invalid_certs(true)
            .dangerous_accept_invalid_hostnames(true)
            .build_rustls()
    }

    /// Parameters for verified STARTTLS with `host`: the chain must lead to a trusted root and name `host`.
    pub fn verified(&self, host: &str) -> Result<TlsParameters, lettre::transport::smtp::Error> {
        let mut builder = TlsParametersBuilder::new(host.to_string())
            .certificate_store(CertificateStore::WebpkiRoots);
        for cert in &self.extra {
            builder = builder.add_root_certificate(Certificate::from_der(cert.to_vec())?);
        }
        builder.build_rustls()
    }

    /// Whether `chain` (DER, leaf first) would pass verified TLS for `host`; the error says why not. Used to
    /// report (not enforce) under an MTA-STS `testing` policy.
    pub fn check_chain(&self, chain: &[Vec<u8>], host: &str) -> Result<(), String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider)
            .build()
            .map_err(|e| e.to_string())?;
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err("no certificate was presented".into());
        };
        let leaf = CertificateDer::from(leaf.as_slice());
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let name = ServerName::try_from(host).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(&leaf, &intermediates, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_extra_pem_is_refused() {
        assert!(Trust::webpki().with_extra_pem("").is_err());
        assert!(
            Trust::webpki()
                .with_extra_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }

    #[test]
    fn an_empty_chain_does_not_verify() {
        assert!(Trust::webpki().check_chain(&[], "mx.example.org").is_err());
        assert!(Trust::webpki().opportunistic("mx.example.org").is_ok());
        assert!(Trust::webpki().verified("mx.example.org").is_ok());
    }
}
