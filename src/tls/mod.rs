//! TLS setup, in one place: the crypto provider, whom mailctl trusts, and the client configurations every
//! part uses. [`server`] holds the listeners' certificate (loaded at start, reloaded on SIGHUP).
//!
//! - **Provider**: rustls with `ring` only ([`provider`]); every configuration is built with it explicitly, so
//!   nothing compiles aws-lc-sys and there is exactly one provider in the tree (lettre uses its `ring`
//!   feature).
//! - **Trust** ([`Trust`]): webpki-roots plus, for private CAs and test setups, the CA certificates of a PEM
//!   file named by configuration (`[server.outbound] extra_ca` for delivery, `mailctl audit --extra-ca` for
//!   the audit). Nothing reads trust roots from the environment.
//! - **Verified** client TLS ([`strict_config`]): the chain must lead to a trusted root and name the host; the
//!   handshake fails otherwise. MTA-STS policy fetches (audit and delivery) and verified delivery under an
//!   MTA-STS `enforce` policy (RFC 8461 4.2, [`Trust::verified`]) use it.
//! - **Opportunistic** delivery TLS ([`Trust::opportunistic`], RFC 3207 / RFC 7435): any certificate is
//!   accepted, as Postfix's `may` level does; encryption against passive eavesdroppers is the point, and
//!   refusing to deliver over a self-signed certificate would only push the mail back to plain text.
//! - **Inspecting** client TLS ([`inspecting_config`]): completes the handshake with any certificate (the
//!   handshake signature is still verified, so the peer holds the key) so that the chain can be judged
//!   afterwards. The audit's SMTP probe judges it ([`Trust::check_chain`] and the audit's own verdicts); the
//!   benchmark client uses it because it is not a mail client.

pub mod leaf;
pub mod server;

use std::path::Path;
use std::sync::Arc;

use lettre::transport::smtp::client::{
    Certificate, CertificateStore, TlsParameters, TlsParametersBuilder,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The one crypto provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The trusted roots: webpki-roots, plus the CA certificates of a private or test CA when configured.
#[derive(Clone, Debug)]
pub struct Trust {
    /// webpki-roots plus the extra certificates.
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

    /// webpki-roots plus the CA certificates in the PEM file `extra_ca`, when one is named. The error names
    /// the file and says what is wrong with it.
    pub fn load(extra_ca: Option<&Path>) -> Result<Trust, String> {
        let Some(path) = extra_ca else {
            return Ok(Trust::webpki());
        };
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Trust::webpki()
            .with_extra_pem(&pem)
            .map_err(|e| format!("{}: {e}", path.display()))
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

    /// Every trusted root.
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }

    /// lettre parameters for opportunistic STARTTLS with `host`: any certificate, SNI `host`.
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

    /// lettre parameters for verified STARTTLS with `host`: the chain must lead to a trusted root and name
    /// `host`.
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
        let verifier = WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider())
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

/// A client configuration that verifies the certificate chain against `roots` and the name during the
/// handshake.
pub fn strict_config(roots: Arc<RootCertStore>) -> Result<Arc<ClientConfig>, String> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client configuration that accepts any certificate (the handshake signature is still checked), for
/// clients that judge the certificate afterwards or do not care (see the module documentation).
pub fn inspecting_config() -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any certificate; the handshake signatures are still checked, so the peer holds the key.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
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
    fn a_missing_extra_ca_file_is_named() {
        let e = Trust::load(Some(Path::new("/nonexistent/ca.pem")))
            .err()
            .unwrap();
        assert!(e.starts_with("/nonexistent/ca.pem: cannot read"), "{e}");
        assert!(Trust::load(None).is_ok());
    }

    #[test]
    fn an_empty_chain_does_not_verify() {
        assert!(Trust::webpki().check_chain(&[], "mx.example.org").is_err());
        assert!(Trust::webpki().opportunistic("mx.example.org").is_ok());
        assert!(Trust::webpki().verified("mx.example.org").is_ok());
        assert!(strict_config(Trust::webpki().roots()).is_ok());
        assert!(inspecting_config().is_ok());
    }
}
