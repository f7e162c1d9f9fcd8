//! DKIM key pairs: generation, PEM import, and the public half as published in DNS.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;

/// Smallest RSA key mailctl generates or accepts: receivers treat shorter keys as weak or broken.
pub const MIN_RSA_BITS: usize = 2048;

/// The signature algorithm family of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAlgorithm {
    /// rsa-sha256
    Rsa,
    /// ed25519-sha256 (RFC 8463)
    Ed25519,
}

impl KeyAlgorithm {
    /// The `a=` value of signatures made with this key, also how the store records the algorithm.
    pub fn signing_name(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa => "rsa-sha256",
            KeyAlgorithm::Ed25519 => "ed25519-sha256",
        }
    }

    /// The `k=` tag of the key record.
    pub fn k_tag(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa => "rsa",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }

    /// Parses the stored name.
    pub fn from_signing_name(s: &str) -> Option<KeyAlgorithm> {
        match s {
            "rsa-sha256" => Some(KeyAlgorithm::Rsa),
            "ed25519-sha256" => Some(KeyAlgorithm::Ed25519),
            _ => None,
        }
    }
}

/// What to generate: `rsa2048`, `rsa3072`, `rsa4096` or `ed25519`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeySpec {
    /// RSA 2048 bits (rsa-sha256), the default: verified by every receiver
    Rsa2048,
    /// RSA 3072 bits
    Rsa3072,
    /// RSA 4096 bits (the TXT record needs several strings)
    Rsa4096,
    /// Ed25519 (RFC 8463); not every receiver verifies it yet, so pair it with an RSA key
    Ed25519,
}

/// A key pair as mailctl keeps it.
#[derive(Clone)]
pub struct KeyPair {
    /// Algorithm family.
    pub algorithm: KeyAlgorithm,
    /// Key size in bits (256 for Ed25519).
    pub bits: u32,
    /// Private key, PKCS#8 PEM.
    pub private_pem: String,
    /// Public key as published in `p=` (base64).
    pub public_b64: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key by accident.
        f.debug_struct("KeyPair")
            .field("algorithm", &self.algorithm)
            .field("bits", &self.bits)
            .field("public_b64", &self.public_b64)
            .finish_non_exhaustive()
    }
}

fn rsa_pair(key: &rsa::RsaPrivateKey) -> Result<KeyPair, String> {
    let bits = key.n().bits();
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA key has {bits} bits; at least {MIN_RSA_BITS} are required (receivers distrust shorter keys)"
        ));
    }
    let private_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode the private key: {e}"))?
        .to_string();
    let public_der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| format!("cannot encode the public key: {e}"))?;
    Ok(KeyPair {
        algorithm: KeyAlgorithm::Rsa,
        bits: bits as u32,
        private_pem,
        public_b64: B64.encode(public_der.as_bytes()),
    })
}

fn ed25519_pair(key: &ed25519_dalek::SigningKey) -> Result<KeyPair, String> {
    let private_pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| format!("cannot encode the private key: {e}"))?
        .to_string();
    Ok(KeyPair {
        algorithm: KeyAlgorithm::Ed25519,
        bits: 256,
        private_pem,
        public_b64: B64.encode(key.verifying_key().as_bytes()),
    })
}

/// Generates a new key pair. RSA generation takes a while: call it from a blocking task.
pub fn generate(spec: KeySpec) -> Result<KeyPair, String> {
    let mut rng = rand::rngs::OsRng;
    let rsa = |bits| {
        rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)
            .map_err(|e| format!("RSA key generation failed: {e}"))
    };
    match spec {
        KeySpec::Rsa2048 => rsa_pair(&rsa(2048)?),
        KeySpec::Rsa3072 => rsa_pair(&rsa(3072)?),
        KeySpec::Rsa4096 => rsa_pair(&rsa(4096)?),
        KeySpec::Ed25519 => {
            let mut seed = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rng, &mut seed);
            ed25519_pair(&ed25519_dalek::SigningKey::from_bytes(&seed))
        }
    }
}

/// Reads a private key PEM: PKCS#8 (`BEGIN PRIVATE KEY`, RSA or Ed25519) or PKCS#1 (`BEGIN RSA PRIVATE KEY`,
/// as opendkim-genkey writes). The error is one line saying what the file is not.
pub fn from_pem(pem: &str) -> Result<KeyPair, String> {
    let pem = pem.trim();
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem)
            .map_err(|e| format!("not a readable PKCS#1 RSA private key: {e}"))?;
        return rsa_pair(&key);
    }
    if pem.contains("ENCRYPTED PRIVATE KEY") {
        return Err(
            "the key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)".into(),
        );
    }
    if !pem.contains("BEGIN PRIVATE KEY") {
        return Err(
            "not a PEM private key (expected BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)".into(),
        );
    }
    if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
        return rsa_pair(&key);
    }
    if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
        return ed25519_pair(&key);
    }
    Err("unsupported private key: only RSA and Ed25519 keys can sign DKIM".into())
}

/// Rebuilds the pair from what the store holds (the public half is derived again, never trusted blindly).
pub fn from_stored(private_pem: &str) -> Result<KeyPair, String> {
    from_pem(private_pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_keys_round_trip_through_pem() {
        let pair = generate(KeySpec::Ed25519).unwrap();
        assert_eq!(pair.bits, 256);
        assert_eq!(B64.decode(&pair.public_b64).unwrap().len(), 32);
        let again = from_pem(&pair.private_pem).unwrap();
        assert_eq!(again.public_b64, pair.public_b64);
        assert!(!format!("{pair:?}").contains("PRIVATE"));
    }

    #[test]
    fn rsa_keys_round_trip_and_short_keys_are_refused() {
        let pair = generate(KeySpec::Rsa2048).unwrap();
        assert_eq!(pair.bits, 2048);
        assert_eq!(
            from_pem(&pair.private_pem).unwrap().public_b64,
            pair.public_b64
        );
        let small = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
        let pem = small.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert!(from_pem(&pem).unwrap_err().contains("1024 bits"));
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(from_pem("hello").is_err());
        assert!(from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err());
    }
}
