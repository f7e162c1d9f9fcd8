//! What a certificate says about itself, read once for every part that needs it: the names it covers, its
//! validity, its issuer, and the SHA-256 of its public key (the value of a `3 1 1` TLSA record).

use std::time::SystemTime;

use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// A leaf certificate, parsed.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The DNS names of its subjectAltName, in order.
    pub names: Vec<String>,
    /// Not valid before.
    pub not_before: SystemTime,
    /// Not valid after.
    pub not_after: SystemTime,
    /// The issuer, RFC 4514 text.
    pub issuer: String,
    /// The subject, RFC 4514 text.
    pub subject: String,
    /// The serial number, lowercase hex.
    pub serial: String,
    /// SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex (TLSA selector 1, matching type 1).
    pub spki_sha256: String,
}

impl Leaf {
    /// Parses a DER certificate; the error says why it does not parse.
    pub fn parse(der: &[u8]) -> Result<Leaf, String> {
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| e.to_string())?;
        let tbs = &cert.tbs_certificate;
        let names = match tbs.get::<SubjectAltName>() {
            Ok(Some((_, san))) => san
                .0
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DnsName(n) => Some(n.as_str().to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let spki = tbs
            .subject_public_key_info
            .to_der()
            .map_err(|e| e.to_string())?;
        Ok(Leaf {
            names,
            not_before: tbs.validity.not_before.to_system_time(),
            not_after: tbs.validity.not_after.to_system_time(),
            issuer: tbs.issuer.to_string(),
            subject: tbs.subject.to_string(),
            serial: hex(tbs.serial_number.as_bytes()),
            spki_sha256: sha256_hex(&spki),
        })
    }

    /// The first certificate of a PEM chain.
    pub fn from_pem(pem: &[u8]) -> Result<Leaf, String> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let first = CertificateDer::pem_slice_iter(pem)
            .next()
            .ok_or("no CERTIFICATE block")?
            .map_err(|e| format!("not a PEM certificate: {e}"))?;
        Leaf::parse(&first)
    }

    /// Whether it is signed by itself (issuer and subject are the same name).
    pub fn self_issued(&self) -> bool {
        self.issuer == self.subject
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex of the SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_reads_back() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["mx.example.org".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let leaf = Leaf::from_pem(cert.pem().as_bytes()).unwrap();
        assert_eq!(leaf.names, ["mx.example.org"]);
        assert!(leaf.self_issued());
        assert!(leaf.not_after > leaf.not_before);
        use sha2::Digest;
        let expected: String =
            sha2::Sha256::digest(rcgen::PublicKeyData::subject_public_key_info(&key))
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
        assert_eq!(leaf.spki_sha256, expected);
        assert_eq!(hex(&[0, 171, 255]), "00abff");
        assert!(Leaf::from_pem(b"nothing").is_err());
    }
}
