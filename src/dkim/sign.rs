//! Signing a message with a stored key: mail-auth builds the signature, the key signs. A stored key is parsed
//! once per process ([`Key::cached`], by the SHA-256 of its PEM), not once per message. RSA signs with ring
//! (about 2x faster than the pure-Rust `rsa` crate here: `cargo bench --bench outbound` prints both), with
//! mail-auth's own `rsa`-crate key for a key ring does not take (ring wants a public exponent of at least
//! 65537 and 2048-4096 bits).

use std::sync::{Arc, Mutex};

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::common::headers::Writable;
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

/// A stored key, ready for mail-auth's signers (DKIM and ARC); cheap to clone.
#[derive(Clone)]
pub(crate) enum Key {
    /// RSA with SHA-256, signed by ring.
    Rsa(Shared<RingRsa>),
    /// RSA with SHA-256, a key ring does not take: mail-auth's pure-Rust key.
    RsaFallback(Shared<RsaKey<Sha256>>),
    /// Ed25519 (RFC 8463).
    Ed25519(Shared<Ed25519Key>),
}

/// Evaluates `$body` with `$k` bound to the signing key inside `$key`, whatever its kind (mail-auth's signers
/// are generic over the key type, so each kind is its own expression).
macro_rules! with_key {
    ($key:expr, |$k:ident| $body:expr) => {
        match $key {
            $crate::dkim::sign::Key::Rsa($k) => $body,
            $crate::dkim::sign::Key::RsaFallback($k) => $body,
            $crate::dkim::sign::Key::Ed25519($k) => $body,
        }
    };
}
pub(crate) use with_key;

/// Parsed keys by the SHA-256 of their PEM; at most [`CACHED_KEYS`], emptied when full.
static KEYS: Mutex<Option<std::collections::HashMap<[u8; 32], Key>>> = Mutex::new(None);
/// The most keys kept parsed (one per signing domain and selector in use).
const CACHED_KEYS: usize = 4096;

impl Key {
    /// Parses a PEM key of `algorithm` after the checks every stored key gets ([`super::keys::from_pem`]:
    /// PKCS#8 or PKCS#1, RSA of at least 2048 bits), so a key is refused alike whatever signs with it.
    fn load(pem: &str, algorithm: KeyAlgorithm) -> Result<Key, String> {
        let pair = super::keys::from_pem(pem)?;
        if pair.algorithm != algorithm {
            return Err(format!(
                "the stored key is {}, not {}",
                pair.algorithm.signing_name(),
                algorithm.signing_name()
            ));
        }
        let der = PrivatePkcs8KeyDer::from_pem_slice(pair.private_pem.as_bytes())
            .map_err(|e| format!("the stored private key is unreadable: {e}"))?;
        let failed = |e: mail_auth::Error| format!("the stored private key is unusable: {e}");
        Ok(match algorithm {
            KeyAlgorithm::Rsa => match ring::rsa::KeyPair::from_pkcs8(der.secret_pkcs8_der()) {
                Ok(k) => Key::Rsa(Shared(Arc::new(RingRsa(k)))),
                Err(_) => Key::RsaFallback(Shared(Arc::new(
                    RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(der)).map_err(failed)?,
                ))),
            },
            KeyAlgorithm::Ed25519 => Key::Ed25519(Shared(Arc::new(
                Ed25519Key::from_pkcs8_der(der.secret_pkcs8_der()).map_err(failed)?,
            ))),
        })
    }

    /// The PKCS#8 PEM key of `algorithm`, parsed once per process.
    pub(crate) fn cached(pem: &str, algorithm: KeyAlgorithm) -> Result<Key, String> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(algorithm.signing_name().as_bytes());
        hasher.update(b"\n");
        hasher.update(pem.as_bytes());
        let id: [u8; 32] = hasher.finalize().into();
        let lock = || KEYS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = lock().as_ref().and_then(|m| m.get(&id)) {
            return Ok(k.clone());
        }
        let parsed = Key::load(pem, algorithm)?;
        let mut keys = lock();
        let map = keys.get_or_insert_with(Default::default);
        if map.len() >= CACHED_KEYS {
            map.clear();
        }
        map.insert(id, parsed.clone());
        Ok(parsed)
    }
}

/// A signing key shared by reference count (mail-auth's signers take their key by value).
pub(crate) struct Shared<T>(Arc<T>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T: SigningKey> SigningKey for Shared<T> {
    type Hasher = T::Hasher;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        self.0.algorithm()
    }
}

/// RSA PKCS#1 v1.5 with SHA-256, by ring.
pub(crate) struct RingRsa(ring::rsa::KeyPair);

impl SigningKey for RingRsa {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        let mut data = Vec::new();
        input.write(&mut data);
        let mut signature = vec![0; self.0.public().modulus_len()];
        self.0
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                &data,
                &mut signature,
            )
            .map_err(|_| {
                mail_auth::Error::Crypto(mail_auth::common::crypto::CryptoError::Library(
                    "RSA signing failed".into(),
                ))
            })?;
        Ok(signature)
    }

    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        mail_auth::common::crypto::Algorithm::RsaSha256
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
    sign_pem(message, domain, selector, &key.private_pem, key.algorithm)
}

/// [`sign`] with a stored PKCS#8 PEM key of `algorithm` (parsed once per process, see [`Key::cached`]).
pub fn sign_pem(
    message: &[u8],
    domain: &DomainName,
    selector: &Selector,
    private_pem: &str,
    algorithm: KeyAlgorithm,
) -> Result<Vec<u8>, String> {
    let message = to_crlf(message);
    check_message(&message)?;
    let headers = headers_to_sign(&message);
    let failed = |e: mail_auth::Error| format!("signing failed: {e}");
    let key = Key::cached(private_pem, algorithm)?;
    let header = with_key!(key, |k| signer_sign(
        DkimSigner::from_key(k),
        domain,
        selector,
        &headers,
        &message
    ))
    .map_err(failed)?;
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
