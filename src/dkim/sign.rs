//! Signing a message with a stored key (mail-auth does the cryptography).

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject};

use super::{KeyAlgorithm, KeyPair};
use crate::model::{DomainName, Selector};

/// Headers signed when present, in the spirit of RFC 6376 section 5.4.1. Absent ones are left out, so an MTA that
/// adds Message-ID or Date later does not break the signature; `From` is additionally "oversigned" (listed once
/// more than it occurs), so nobody can add a second From.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
];

/// Converts bare LF line ends to CRLF, the form in which mail travels, so the signature covers what receivers
/// will see.
pub fn to_crlf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32);
    let mut prev = 0u8;
    for &b in message {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// Checks that `message` is a parseable RFC 5322 message with exactly one From header naming one mailbox, and
/// returns that mailbox's domain (lower-case) for the alignment check; the error says what is wrong.
pub fn check_message(message: &[u8]) -> Result<String, String> {
    let parsed = mail_auth::AuthenticatedMessage::parse(message)
        .ok_or("the message cannot be parsed as RFC 5322 (no header section?)")?;
    let from_fields = parsed
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"From"))
        .count();
    match (from_fields, parsed.from.len()) {
        (0, _) => return Err("the message has no From header".into()),
        (1, 1) => {}
        (1, _) => return Err("the From header must name exactly one mailbox".into()),
        (n, _) => {
            return Err(format!(
                "the message has {n} From headers; RFC 5322 allows one"
            ));
        }
    }
    Ok(parsed.from[0]
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default())
}

/// A stored key, ready for mail-auth's signers (DKIM and ARC).
pub(crate) enum Key {
    /// RSA with SHA-256.
    Rsa(RsaKey<Sha256>),
    /// Ed25519 (RFC 8463).
    Ed25519(Ed25519Key),
}

impl Key {
    /// Parses the PKCS#8 PEM of `key`.
    pub(crate) fn load(key: &KeyPair) -> Result<Key, String> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(key.private_pem.as_bytes())
            .map_err(|e| format!("the stored private key is unreadable: {e}"))?;
        let failed = |e: mail_auth::Error| format!("the stored private key is unusable: {e}");
        Ok(match key.algorithm {
            KeyAlgorithm::Rsa => {
                Key::Rsa(RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(der)).map_err(failed)?)
            }
            KeyAlgorithm::Ed25519 => {
                Key::Ed25519(Ed25519Key::from_pkcs8_der(der.secret_pkcs8_der()).map_err(failed)?)
            }
        })
    }
}

/// The header names to sign for this message: those of [`SIGNED_HEADERS`] it has, plus `From` once more.
pub(crate) fn headers_to_sign(message: &[u8]) -> Vec<String> {
    let present: Vec<String> = mail_auth::AuthenticatedMessage::parse(message)
        .map(|m| {
            m.headers
                .iter()
                .map(|(n, _)| String::from_utf8_lossy(n).to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    let mut list: Vec<String> = SIGNED_HEADERS
        .iter()
        .filter(|h| present.contains(&h.to_ascii_lowercase()))
        .map(|h| h.to_string())
        .collect();
    list.push("From".into());
    list
}

/// Signs `message` (normalized to CRLF) and returns it with the DKIM-Signature header prepended.
/// Relaxed/relaxed canonicalization, [`SIGNED_HEADERS`]. RSA signing is slow: call from a blocking task.
pub fn sign(
    message: &[u8],
    domain: &DomainName,
    selector: &Selector,
    key: &KeyPair,
) -> Result<Vec<u8>, String> {
    let message = to_crlf(message);
    check_message(&message)?;
    let headers = headers_to_sign(&message);
    let failed = |e: mail_auth::Error| format!("signing failed: {e}");
    let header = match Key::load(key)? {
        Key::Rsa(k) => signer_sign(
            DkimSigner::from_key(k),
            domain,
            selector,
            &headers,
            &message,
        )
        .map_err(failed)?,
        Key::Ed25519(k) => signer_sign(
            DkimSigner::from_key(k),
            domain,
            selector,
            &headers,
            &message,
        )
        .map_err(failed)?,
    };
    let mut out = header.into_bytes();
    out.extend_from_slice(&message);
    Ok(out)
}

fn signer_sign<T>(
    signer: DkimSigner<T, mail_auth::dkim::NeedDomain>,
    domain: &DomainName,
    selector: &Selector,
    headers: &[String],
    message: &[u8],
) -> mail_auth::Result<String>
where
    T: mail_auth::common::crypto::SigningKey<Hasher = Sha256>,
{
    let signature = signer
        .domain(domain.as_str())
        .selector(selector.as_str())
        .headers(headers.iter().map(String::as_str))
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(message)?;
    Ok(signature.to_header())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_lf_becomes_crlf_once() {
        assert_eq!(to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn messages_need_exactly_one_from_mailbox() {
        assert!(check_message(b"Subject: x\r\n\r\nbody\r\n").is_err());
        assert_eq!(
            check_message(b"From: A <a@Example.org>\r\nSubject: x\r\n\r\nbody\r\n").unwrap(),
            "example.org"
        );
        let two = b"From: a@example.org\r\nFrom: b@example.org\r\n\r\nbody\r\n";
        assert!(check_message(two).unwrap_err().contains("2 From headers"));
        let pair = b"From: a@example.org, b@example.org\r\n\r\nbody\r\n";
        assert!(
            check_message(pair)
                .unwrap_err()
                .contains("exactly one mailbox")
        );
    }

    #[test]
    fn signatures_oversign_from() {
        let key = super::super::keys::generate(super::super::KeySpec::Ed25519).unwrap();
        let domain: DomainName = "example.org".parse().unwrap();
        let selector: Selector = "s1".parse().unwrap();
        let signed = sign(
            b"From: a@example.org\nTo: b@example.net\nSubject: hi\n\nbody\n",
            &domain,
            &selector,
            &key,
        )
        .unwrap();
        let text = String::from_utf8(signed).unwrap();
        assert!(text.starts_with(
            "DKIM-Signature: v=1; a=ed25519-sha256; s=s1; d=example.org; c=relaxed/relaxed"
        ));
        let h = text
            .split("h=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .replace(['\r', '\n', '\t', ' '], "");
        assert_eq!(h.matches("From").count(), 2, "{h}");
        assert!(text.ends_with("\r\n\r\nbody\r\n"));
    }
}
