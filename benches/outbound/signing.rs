//! What DKIM signing costs per message in `serve` today, split into its parts, to show where the submission
//! path's CPU goes: `src/smtp/session/relay.rs` calls [`keys::from_stored`] (parse the PEM, validate the key,
//! re-derive the public half) and then [`sign::sign`] (parse the PEM again, build mail-auth's key, sign) for
//! every message. The third number is the signature alone, with the key parsed once and the signer reused:
//! the floor a per-key cache would reach.

use std::time::{Duration, Instant};

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mailctl::bench::message::{self, Spec};
use mailctl::dkim::keys::{self, KeyAlgorithm, KeySpec};
use mailctl::dkim::sign;
use mailctl::model::{DomainName, Selector};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Mean time per message of each part.
pub struct Cost {
    /// `keys::from_stored` (relay.rs, once per message).
    pub load: Duration,
    /// `sign::sign` (parses the key again and signs).
    pub sign: Duration,
    /// Signing with a key parsed once.
    pub signature_only: Duration,
}

/// Measures `rounds` signatures of a 4 KiB bench message with a fresh key of `algorithm`.
pub fn measure(algorithm: &str, rounds: u32) -> Cost {
    let spec = match algorithm {
        "rsa2048" => KeySpec::Rsa2048,
        _ => KeySpec::Ed25519,
    };
    let pair = keys::generate(spec).expect("generate a key");
    let text = message::build(&Spec {
        from: "alice@a.test",
        to: "bob@b.test",
        message_id: "<sign.1@a.test>",
        seq: 1,
        size: 4096,
    });
    let domain: DomainName = "a.test".parse().expect("domain");
    let selector: Selector = "sel".parse().expect("selector");
    let mean = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..rounds {
            f();
        }
        start.elapsed() / rounds
    };
    let load = mean(&mut || {
        keys::from_stored(&pair.private_pem).expect("load key");
    });
    let sign = mean(&mut || {
        sign::sign(&text, &domain, &selector, &pair).expect("sign");
    });
    let der = PrivatePkcs8KeyDer::from_pem_slice(pair.private_pem.as_bytes()).expect("PEM");
    let headers = ["From", "Subject", "Date", "To", "Message-ID"];
    let signature_only = match pair.algorithm {
        KeyAlgorithm::Rsa => {
            let key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(der)).expect("RSA key");
            let signer = DkimSigner::from_key(key)
                .domain("a.test")
                .selector("sel")
                .headers(headers)
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed);
            mean(&mut || {
                signer.sign(&text).expect("sign");
            })
        }
        KeyAlgorithm::Ed25519 => {
            let key = Ed25519Key::from_pkcs8_der(der.secret_pkcs8_der()).expect("Ed25519 key");
            let signer = DkimSigner::from_key(key)
                .domain("a.test")
                .selector("sel")
                .headers(headers)
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed);
            mean(&mut || {
                signer.sign(&text).expect("sign");
            })
        }
    };
    Cost {
        load,
        sign,
        signature_only,
    }
}
