//! What DKIM signing costs per message in `serve`: `provision::dkim::sign_with` signs with the key parsed once
//! per process (`dkim::sign::Key::cached`; RSA by ring). Beside it, for RSA, the same signature by mail-auth's
//! pure-Rust `rsa` key, which `serve` used before, and parsing the stored key again (what it did per message).

use std::time::{Duration, Instant};

use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mailctl::bench::message::{self, Spec};
use mailctl::dkim::keys::{self, KeyAlgorithm, KeySpec};
use mailctl::dkim::sign;
use mailctl::model::{DomainName, Selector};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Mean time per message of each part.
pub struct Cost {
    /// What `serve` does per message: sign with the cached key.
    pub serve: Duration,
    /// Parsing and checking the stored key (`keys::from_stored`), which `serve` did for every message before.
    pub load: Duration,
    /// RSA only: the signature by the pure-Rust `rsa` crate, key parsed once.
    pub rsa_crate: Option<Duration>,
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
    let serve = mean(&mut || {
        sign::sign_pem(&text, &domain, &selector, &pair.private_pem, pair.algorithm).expect("sign");
    });
    let rsa_crate = (pair.algorithm == KeyAlgorithm::Rsa).then(|| {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pair.private_pem.as_bytes()).expect("PEM");
        let key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(der)).expect("RSA key");
        let signer = DkimSigner::from_key(key)
            .domain("a.test")
            .selector("sel")
            .headers(["From", "Subject", "Date", "To", "Message-ID"])
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        mean(&mut || {
            signer.sign(&text).expect("sign");
        })
    });
    Cost {
        serve,
        load,
        rsa_crate,
    }
}
