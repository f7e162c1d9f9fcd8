//! Known-answer and round-trip tests for password hashing and verification.
use super::*;

// Fixed vectors from external tools (password "secret" unless noted):
// `openssl passwd -1/-5/-6 -salt ...`, Python `crypt.crypt` (libxcrypt) for bcrypt and
// `$6$rounds=`, and the Argon2 reference implementation's test vectors
// (phc-winner-argon2 src/test.c: password "password", salt "somesalt").
const MD5: &str = "$1$saltsalt$9xy1btjgzLYfb7hivXtC//";
const MD5_HORSE: &str = "$1$x7Y.z/9Q$dmZiq2zSHjKeGvdYHzNWM0"; // "correct horse"
const SHA256: &str = "$5$saltsaltsaltsalt$X0ra9qlY7TJaGBDgorLevriQfwysW8fXnbybcO4mF4/";
const SHA256_PW: &str = "$5$qwertyuiop$CHfeyKHihSv7Uk6dbadjqiL6f9Vlbqrfy6pOoFJzpB5"; // "Pa$$w0rd"
const SHA512: &str = "$6$saltsaltsaltsalt$ph0yGsyjzqdeFaon7.gJZo8eAG5/rj9/JdzOu1Rl7dKzBYg3xgvl7T2VQ2Rt81bc5AXkdA54r0p8QvC1omD6R1";
const SHA512_UNICODE: &str = "$6$Ab3dEf/hIjKlMn.p$yVcR4qkKGCZjyJztIQqsFv4Bwr8gWITgNQXoCP7X5U1HMX6HQ0mij2DikP9QYZbPuguQZBP8bXZCYJNbGgaic/"; // "pässwörd"
const SHA512_ROUNDS: &str = "$6$rounds=10000$z0a1Z0rc2FUQLfuy$h38iG9pKh1BG2yYPWWI7Fe96LN9FGHo.8wbQA/WnJ3eAFZvXzRfhb5oUx7bDtCrpjqTHeyLH0s36tdCg7Noe40";
const BLF_2Y: &str = "$2y$10$abcdefghijklmnopqrstuuqflPDzB6gcMhKa1rZqKiun2YGL5sa2u";
const BLF_2B: &str = "$2b$10$rcPaCdUUsWhz.YB7IR7rweH8N32H7G/m88H3nkchGhjcfs7saTNau";
const BLF_2A: &str = "$2a$10$abcdefghijklmnopqrstuuqflPDzB6gcMhKa1rZqKiun2YGL5sa2u";
const BLF_2Y_TROUBADOR: &str = "$2y$10$hgdY6UKMToSuAirC3ohKvOvJlyTsppz9qINWj2V9fyiWAxEqosSyG"; // "Tr0ub4dor&3"
const ARGON2ID_REF: &str =
    "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4";
const ARGON2I_REF: &str =
    "$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA";

/// Asserts `body` verifies bare and under each given prefix, and rejects a wrong password.
fn check_vector(body: &str, password: &str, prefixes: &[&str]) {
    assert!(verify(body, password), "unprefixed {body}");
    assert!(!verify(body, "wrong"), "wrong password accepted for {body}");
    for prefix in prefixes {
        let stored = format!("{{{prefix}}}{body}");
        assert!(verify(&stored, password), "{stored}");
        assert!(
            !verify(&stored, "wrong"),
            "wrong password accepted for {stored}"
        );
        assert!(!verify(&stored, ""), "empty password accepted for {stored}");
    }
}

#[test]
fn round_trip_each_writable_scheme() {
    for scheme in Scheme::ALL {
        let stored = hash(scheme, "correct horse battery").expect("hashing works");
        assert!(
            stored.starts_with(&format!("{{{}}}", scheme.name())),
            "{stored}"
        );
        assert!(verify(&stored, "correct horse battery"), "{stored}");
        assert!(!verify(&stored, "correct horse batter"), "{stored}");
        assert!(!verify(&stored, "Correct horse battery"), "{stored}");
        assert_eq!(scheme_of(&stored), scheme.name());
    }
}

#[test]
fn round_trip_unicode_and_empty_password() {
    for scheme in Scheme::ALL {
        for pw in ["pässwörd ✓", ""] {
            let stored = hash(scheme, pw).expect("hashing works");
            assert!(verify(&stored, pw), "{stored}");
            assert!(!verify(&stored, "x"), "{stored}");
        }
    }
}

#[test]
fn hash_output_formats() {
    let sha = hash(Scheme::Sha512Crypt, "secret").expect("sha512");
    let rest = sha.strip_prefix("{SHA512-CRYPT}$6$").expect("prefix");
    let (salt, digest) = rest.split_once('$').expect("salt$hash");
    assert_eq!(salt.len(), 16, "{sha}");
    assert_eq!(digest.len(), 86, "{sha}");
    assert!(!sha.contains("rounds="));

    let blf = hash(Scheme::BlfCrypt, "secret").expect("bcrypt");
    assert!(blf.starts_with("{BLF-CRYPT}$2y$10$"), "{blf}");
    assert_eq!(blf.len() - "{BLF-CRYPT}".len(), 60, "{blf}");

    let argon = hash(Scheme::Argon2id, "secret").expect("argon2id");
    let rest = argon
        .strip_prefix("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$")
        .expect("params");
    let (salt, digest) = rest.split_once('$').expect("salt$hash");
    assert_eq!(salt.len(), 22, "16-byte salt in unpadded base64: {argon}");
    assert_eq!(
        digest.len(),
        43,
        "32-byte output in unpadded base64: {argon}"
    );
}

#[test]
fn hashes_are_salted() {
    for scheme in [Scheme::Sha512Crypt, Scheme::BlfCrypt] {
        assert_ne!(hash(scheme, "same").ok(), hash(scheme, "same").ok());
    }
}

#[test]
fn hash_rejects_unrepresentable_passwords() {
    assert!(matches!(
        hash(Scheme::Sha512Crypt, "a\0b"),
        Err(HashError::NulByte(_))
    ));
    assert!(matches!(
        hash(Scheme::BlfCrypt, "a\0b"),
        Err(HashError::NulByte(_))
    ));
    let long = "x".repeat(73);
    assert!(matches!(
        hash(Scheme::BlfCrypt, &long),
        Err(HashError::TooLongForBcrypt(73))
    ));
    assert!(hash(Scheme::BlfCrypt, &"x".repeat(72)).is_ok());
    assert!(hash(Scheme::Sha512Crypt, &long).is_ok());
    let msg = HashError::TooLongForBcrypt(73).to_string();
    assert!(!msg.contains('\n') && msg.contains("72"), "{msg}");
}

#[test]
fn known_md5_crypt_vectors() {
    check_vector(MD5, "secret", &["MD5-CRYPT", "md5-crypt", "CRYPT"]);
    check_vector(MD5_HORSE, "correct horse", &["MD5-CRYPT", "CRYPT"]);
}

#[test]
fn known_sha256_crypt_vectors() {
    check_vector(SHA256, "secret", &["SHA256-CRYPT", "Sha256-Crypt", "CRYPT"]);
    check_vector(SHA256_PW, "Pa$$w0rd", &["SHA256-CRYPT", "CRYPT"]);
}

#[test]
fn known_sha512_crypt_vectors() {
    check_vector(SHA512, "secret", &["SHA512-CRYPT", "sha512-crypt", "CRYPT"]);
    check_vector(SHA512_UNICODE, "pässwörd", &["SHA512-CRYPT", "CRYPT"]);
    check_vector(SHA512_ROUNDS, "secret", &["SHA512-CRYPT", "crypt"]);
}

#[test]
fn known_bcrypt_vectors() {
    check_vector(BLF_2Y, "secret", &["BLF-CRYPT", "blf-crypt", "CRYPT"]);
    check_vector(BLF_2B, "secret", &["BLF-CRYPT", "CRYPT"]);
    check_vector(BLF_2A, "secret", &["BLF-CRYPT", "CRYPT"]);
    check_vector(BLF_2Y_TROUBADOR, "Tr0ub4dor&3", &["BLF-CRYPT"]);
}

#[test]
fn known_argon2_reference_vectors() {
    check_vector(ARGON2ID_REF, "password", &["ARGON2ID", "argon2id"]);
    check_vector(ARGON2I_REF, "password", &["ARGON2I"]);
}

#[test]
fn garbage_and_unknown_schemes_are_rejected() {
    let garbage = [
        "",
        "{}",
        "{",
        "}",
        "$",
        "$$$",
        "secret",
        "{PLAIN}secret",
        "{CLEARTEXT}secret",
        "{SSHA512}c2VjcmV0",
        "{CRYPT}saHW9GdxihkGQ", // DES crypt: not supported
        "saHW9GdxihkGQ",
        "{SHA512-CRYPT}",
        "{SHA512-CRYPT}$6$",
        "{SHA512-CRYPT}$6$saltsaltsaltsalt$",
        "{SHA512-CRYPT}$6$saltsaltsaltsalt$short",
        "{SHA512-CRYPT$6$saltsaltsaltsalt$x",
        "$6$rounds=$salt$x",
        "$6$rounds=abc$salt$x",
        "$6$sa\u{80}lt$xxxxxxxx",
        "$6$\u{80}\u{80}$xxxxxxxx",
        "$6$ümlaut$xxxxxxxx",
        "$1$\u{1}$x",
        "$2y$",
        "$2y$10$",
        "$2y$10$short",
        "$2y$1x$abcdefghijklmnopqrstuuqflPDzB6gcMhKa1rZqKiun2YGL5sa2u",
        "$2y$\u{e9}$abcdefghijklmnopqrstuuqflPDzB6gcMhKa1rZqKiun2YGL5sa2u",
        "$2y$10$\u{80}bcdefghijklmnopqrstuuqflPDzB6gcMhKa1rZqKiun2YGL5sa2u",
        "$2x$10$abcdefghijklmnopqrstuuqflPDzB6gcMhKa1rZqKiun2YGL5sa2u",
        "$argon2id$",
        "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$",
        "$argon2id$v=19$m=1,t=1,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        "$argon2d$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        "{ARGON2D}$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
    ];
    for stored in garbage {
        for pw in ["secret", "password", ""] {
            assert!(!verify(stored, pw), "{stored:?} accepted {pw:?}");
        }
    }
}

#[test]
fn damaged_vectors_are_rejected() {
    for v in [
        MD5,
        SHA256,
        SHA512,
        SHA512_ROUNDS,
        BLF_2Y,
        BLF_2B,
        ARGON2ID_REF,
    ] {
        let pw = if v == ARGON2ID_REF {
            "password"
        } else {
            "secret"
        };
        assert!(!verify(&v[..v.len() - 1], pw), "truncated {v}");
        assert!(!verify(&format!("{v}\n"), pw), "trailing newline {v}");
        assert!(!verify(&format!(" {v}"), pw), "leading space {v}");
        assert!(!verify(&format!("{v}x"), pw), "extra char {v}");
    }
}

#[test]
fn prefix_must_match_hash_body() {
    assert!(!verify(&format!("{{MD5-CRYPT}}{SHA512}"), "secret"));
    assert!(!verify(&format!("{{SHA512-CRYPT}}{BLF_2Y}"), "secret"));
    assert!(!verify(&format!("{{BLF-CRYPT}}{MD5}"), "secret"));
    assert!(!verify(&format!("{{ARGON2I}}{ARGON2ID_REF}"), "password"));
    assert!(!verify(&format!("{{CRYPT}}{ARGON2ID_REF}"), "password"));
    assert!(!verify(
        &format!("{{SHA512-CRYPT}}{ARGON2ID_REF}"),
        "password"
    ));
}

#[test]
fn absurd_cost_parameters_are_rejected_quickly() {
    let start = std::time::Instant::now();
    assert!(!verify(
        "$2y$31$abcdefghijklmnopqrstuuqflPDzB6gcMhKa1rZqKiun2YGL5sa2u",
        "secret"
    ));
    assert!(!verify(
        "$6$rounds=999999999$saltsalt$xxxxxxxxxxxxxxxxxxxxxx",
        "secret"
    ));
    assert!(!verify(
        "$5$rounds=4294967296$saltsalt$xxxxxxxxxxxxxxxxxxxxxx",
        "secret"
    ));
    assert!(!verify(
        "$argon2id$v=19$m=4294967295,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        "password"
    ));
    assert!(!verify(
        "$argon2id$v=19$m=256,t=4000000000,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        "password"
    ));
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn scheme_of_names_stored_hashes() {
    assert_eq!(
        scheme_of(&format!("{{SHA512-CRYPT}}{SHA512}")),
        "SHA512-CRYPT"
    );
    assert_eq!(scheme_of(SHA512), "SHA512-CRYPT");
    assert_eq!(scheme_of(SHA512_ROUNDS), "SHA512-CRYPT");
    assert_eq!(scheme_of(&format!("{{crypt}}{SHA512}")), "SHA512-CRYPT");
    assert_eq!(scheme_of(SHA256), "SHA256-CRYPT");
    assert_eq!(scheme_of(&format!("{{MD5-CRYPT}}{MD5}")), "MD5-CRYPT");
    assert_eq!(scheme_of(MD5), "MD5-CRYPT");
    assert_eq!(scheme_of(BLF_2Y), "BLF-CRYPT");
    assert_eq!(scheme_of(BLF_2B), "BLF-CRYPT");
    assert_eq!(scheme_of(&format!("{{BLF-CRYPT}}{BLF_2A}")), "BLF-CRYPT");
    assert_eq!(scheme_of(ARGON2ID_REF), "ARGON2ID");
    assert_eq!(
        scheme_of(&format!("{{ARGON2ID}}{ARGON2ID_REF}")),
        "ARGON2ID"
    );
    assert_eq!(scheme_of(ARGON2I_REF), "ARGON2I");
    for other in [
        "",
        "secret",
        "{PLAIN}secret",
        "{CRYPT}saHW9GdxihkGQ",
        "{MD5-CRYPT}$6$x",
        "{",
    ] {
        assert_eq!(scheme_of(other), "unknown", "{other:?}");
    }
}

#[test]
fn scheme_names_parse_and_display() {
    for scheme in Scheme::ALL {
        assert_eq!(scheme.to_string(), scheme.name());
        assert_eq!(scheme.name().parse::<Scheme>(), Ok(scheme));
        assert_eq!(scheme.name().to_lowercase().parse::<Scheme>(), Ok(scheme));
    }
    assert_eq!("blf-crypt".parse::<Scheme>(), Ok(Scheme::BlfCrypt));
    assert_eq!(Scheme::default(), Scheme::Sha512Crypt);
    let err = "MD5-CRYPT".parse::<Scheme>().expect_err("not writable");
    assert_eq!(
        err,
        "unknown password scheme 'MD5-CRYPT' (expected SHA512-CRYPT, BLF-CRYPT or ARGON2ID)"
    );
    assert!("".parse::<Scheme>().is_err());
}

#[test]
fn check_acceptable_cases() {
    assert_eq!(check_acceptable("", 8), Err("password is empty".to_owned()));
    assert_eq!(
        check_acceptable("short", 8),
        Err("password is too short: 5 characters, at least 8 required".to_owned())
    );
    assert!(check_acceptable("longenough", 8).is_ok());
    assert!(check_acceptable("exactly8", 8).is_ok());
    assert!(check_acceptable("x", 0).is_ok());
    // 7 chars but 14 bytes: too short; 8 chars: fine.
    assert!(check_acceptable("äöüäöüä", 8).is_err());
    assert!(check_acceptable("äöüäöüäö", 8).is_ok());
    for bad in [
        "pass\nword1",
        "pass\rword1",
        "pass\0word1",
        "pass\tword1",
        "password1\u{7f}",
    ] {
        let err = check_acceptable(bad, 8).expect_err(bad);
        assert!(err.contains("control"), "{err}");
        assert!(!err.contains('\n'));
    }
    assert!(check_acceptable("with spaces ok", 8).is_ok());
}

#[test]
fn random_password_shape() {
    let a = random_password();
    let b = random_password();
    assert_ne!(a, b);
    for pw in [&a, &b] {
        assert_eq!(pw.chars().count(), 20);
        assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()), "{pw}");
        assert!(!pw.contains(['0', 'O', '1', 'l', 'I']), "{pw}");
        assert!(check_acceptable(pw, 20).is_ok());
    }
    assert_eq!(RANDOM_ALPHABET.len(), 57);
}

#[test]
fn a_login_without_hashes_costs_one_real_check_and_never_matches() {
    assert_eq!(scheme_of(UNKNOWN_LOGIN), Scheme::Sha512Crypt.name());
    assert!(!verify_any(&[], ""));
    assert!(!verify_any(&[], "anything"));
    let known = hash(Scheme::Sha512Crypt, "correct horse battery").unwrap();
    assert!(verify_any(
        &["{SHA512-CRYPT}$6$x$y".into(), known],
        "correct horse battery"
    ));
}
