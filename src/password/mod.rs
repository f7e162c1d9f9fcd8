//! Dovecot-compatible password hashes for postfixadmin's `mailbox.password` column.
//!
//! Dovecot reads `{SCHEME}hash` strings (see its "password schemes" docs), and older
//! postfixadmin installs store bare crypt(3) strings such as `$1$...`. mailctl writes
//! only modern schemes ([`Scheme`]) but verifies everything such a database is likely
//! to hold, so that `mailctl` and Dovecot always agree on whether a password is right.
//!
//! Verification treats the stored hash as untrusted input: it is checked for shape and
//! for sane cost parameters before any hashing happens, so a corrupt or hostile row
//! yields `false` instead of a panic, an endless loop or a huge allocation.

use std::fmt;
use std::str::FromStr;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use pwhash::bcrypt::{BcryptSetup, BcryptVariant};
use rand::Rng;
use rand::rngs::OsRng;

/// Hash schemes mailctl can write. Stored with Dovecot's `{SCHEME}` prefix.
///
/// All three are understood by Dovecot 2.3+ out of the box (ARGON2ID needs Dovecot
/// built with libsodium), so the choice is about policy, not compatibility.
///
/// The default is SHA512-CRYPT: what postfixadmin and most Dovecot guides use, so the
/// least surprising choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// `{SHA512-CRYPT}`: glibc `$6$` crypt, 5000 rounds. postfixadmin's usual default.
    #[default]
    Sha512Crypt,
    /// `{BLF-CRYPT}`: bcrypt `$2y$`, cost 10. Only the first 72 bytes of a password count.
    BlfCrypt,
    /// `{ARGON2ID}`: memory-hard Argon2id, m=64 MiB, t=3, p=1, as Dovecot writes it.
    Argon2id,
}

impl Scheme {
    /// Every writable scheme, for `--help` texts, completion and tests.
    pub const ALL: [Scheme; 3] = [Scheme::Sha512Crypt, Scheme::BlfCrypt, Scheme::Argon2id];

    /// The Dovecot scheme name, as written between the braces of the stored prefix.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::BlfCrypt => "BLF-CRYPT",
            Scheme::Argon2id => "ARGON2ID",
        }
    }
}

/// Parses a scheme name case-insensitively (as typed on the command line or in config).
impl FromStr for Scheme {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Scheme::ALL
            .into_iter()
            .find(|scheme| scheme.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| {
                format!(
                    "unknown password scheme '{wanted}' (expected SHA512-CRYPT, BLF-CRYPT or ARGON2ID)"
                )
            })
    }
}

/// Prints the Dovecot scheme name, e.g. `SHA512-CRYPT`.
impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why [`hash`] could not produce a hash. Messages are single lines for CLI output.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// crypt(3) stops at a NUL byte, so Dovecot would check a different password.
    #[error("password contains a NUL byte, which {0} cannot represent")]
    NulByte(Scheme),
    /// bcrypt silently ignores everything after 72 bytes; refuse rather than truncate.
    #[error("password is {0} bytes long, but BLF-CRYPT uses at most 72 bytes")]
    TooLongForBcrypt(usize),
    /// The hashing library reported an error (should not happen with fixed parameters).
    #[error("{scheme} hashing failed: {detail}")]
    Backend {
        /// The scheme that was being hashed.
        scheme: Scheme,
        /// The library's error message.
        detail: String,
    },
}

/// bcrypt cost used for new hashes (Dovecot accepts any; 10 is the common default).
const BCRYPT_COST: u32 = 10;
/// Longest password bcrypt fully uses.
const BCRYPT_MAX_BYTES: usize = 72;
/// Argon2id memory cost in KiB, iterations and lanes, matching Dovecot's libsodium hashes.
const ARGON2_M_KIB: u32 = 65_536;
const ARGON2_T: u32 = 3;
const ARGON2_P: u32 = 1;
/// Argon2 output length in bytes (what libsodium's `crypto_pwhash_str` writes).
const ARGON2_OUTPUT_LEN: usize = 32;

/// Limits on cost parameters accepted by [`verify`], so a corrupt row cannot make a
/// login check run for minutes or allocate gigabytes. Generous for real-world hashes.
const VERIFY_MAX_SHA_ROUNDS: u32 = 10_000_000;
const VERIFY_MAX_BCRYPT_COST: u32 = 18;
/// libsodium's `*_SENSITIVE` preset uses 1 GiB; nothing legitimate goes beyond that.
const VERIFY_MAX_ARGON2_M_KIB: u32 = 1_048_576;
const VERIFY_MAX_ARGON2_T: u32 = 32;
const VERIFY_MAX_ARGON2_P: u32 = 16;

/// A SHA512-CRYPT hash (the default scheme, 5000 rounds) of a random password nobody kept: checked for a login
/// that has no hash at all, so that it costs the time of one check and timing does not tell which logins exist.
const UNKNOWN_LOGIN: &str = "{SHA512-CRYPT}$6$Dx08QsVQxkHbIopU$Bhe0QbLJo.gyE7Tp9zIJlfyPDHs/vmnEIN0MdCk/hFrwGS2Bw2D3MYp.WFmWMgEhZoJWK93gu4N53NGSuZC2a.";

/// Whether `password` matches any of `hashes` (a login's password and app passwords); with none, one check
/// against a hash nobody knows the password of, for the time it takes. Slow on purpose: call it from a
/// blocking task.
pub fn verify_any(hashes: &[String], password: &str) -> bool {
    if hashes.is_empty() {
        let _ = verify(UNKNOWN_LOGIN, password);
        return false;
    }
    hashes.iter().any(|hash| verify(hash, password))
}

/// Hashes each password with `scheme` on every core (a bulk import of plain-text passwords is bound by
/// this), the results in the order of `passwords`.
pub fn hash_all(scheme: Scheme, passwords: &[String]) -> Vec<Result<String, HashError>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Argon2id takes its memory per hash at once: at most 4 at a time, whatever the number of cores.
    let most = if scheme == Scheme::Argon2id {
        4
    } else {
        usize::MAX
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(most)
        .min(passwords.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<Result<String, HashError>>> =
        (0..passwords.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(p) = passwords.get(i) else {
                            return mine;
                        };
                        mine.push((i, hash(scheme, p)));
                    }
                })
            })
            .collect();
        for worker in workers {
            for (i, r) in worker.join().unwrap_or_default() {
                results[i] = Some(r);
            }
        }
    });
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(HashError::Backend {
                    scheme,
                    detail: "a hashing thread failed".into(),
                })
            })
        })
        .collect()
}

/// Hash `password` with `scheme`, returning e.g. `{SHA512-CRYPT}$6$<16-char salt>$...`,
/// `{BLF-CRYPT}$2y$10$...` or `{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$...`.
///
/// The result goes straight into `mailbox.password`; Dovecot verifies it without any
/// `default_pass_scheme` configuration because the scheme is in the prefix. Salts come
/// from the OS CSPRNG. Password policy is [`check_acceptable`]'s job, not this one's.
///
/// # Errors
/// [`HashError`] if the password cannot be represented faithfully by `scheme`
/// (NUL byte for crypt schemes, over 72 bytes for BLF-CRYPT).
pub fn hash(scheme: Scheme, password: &str) -> Result<String, HashError> {
    let backend = |detail: String| HashError::Backend { scheme, detail };
    if scheme != Scheme::Argon2id && password.contains('\0') {
        return Err(HashError::NulByte(scheme));
    }
    let body = match scheme {
        Scheme::Sha512Crypt => {
            pwhash::sha512_crypt::hash(password).map_err(|e| backend(e.to_string()))?
        }
        Scheme::BlfCrypt => {
            if password.len() > BCRYPT_MAX_BYTES {
                return Err(HashError::TooLongForBcrypt(password.len()));
            }
            let setup = BcryptSetup {
                salt: None,
                cost: Some(BCRYPT_COST),
                variant: Some(BcryptVariant::V2y),
            };
            pwhash::bcrypt::hash_with(setup, password).map_err(|e| backend(e.to_string()))?
        }
        Scheme::Argon2id => {
            let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(ARGON2_OUTPUT_LEN))
                .map_err(|e| backend(e.to_string()))?;
            let salt = SaltString::generate(&mut OsRng);
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(password.as_bytes(), &salt)
                .map_err(|e| backend(e.to_string()))?
                .to_string()
        }
    };
    Ok(format!("{{{}}}{body}", scheme.name()))
}

/// Every algorithm [`verify`] understands, including read-only legacy ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algo {
    Md5Crypt,
    Sha256Crypt,
    Sha512Crypt,
    BlfCrypt,
    Argon2id,
    Argon2i,
}

impl Algo {
    fn name(self) -> &'static str {
        match self {
            Algo::Md5Crypt => "MD5-CRYPT",
            Algo::Sha256Crypt => "SHA256-CRYPT",
            Algo::Sha512Crypt => "SHA512-CRYPT",
            Algo::BlfCrypt => "BLF-CRYPT",
            Algo::Argon2id => "ARGON2ID",
            Algo::Argon2i => "ARGON2I",
        }
    }

    /// Recognises the algorithm from the hash body's `$id$` magic.
    fn from_body(body: &str) -> Option<Algo> {
        const MAGICS: [(&str, Algo); 8] = [
            ("$1$", Algo::Md5Crypt),
            ("$5$", Algo::Sha256Crypt),
            ("$6$", Algo::Sha512Crypt),
            ("$2y$", Algo::BlfCrypt),
            ("$2b$", Algo::BlfCrypt),
            ("$2a$", Algo::BlfCrypt),
            ("$argon2id$", Algo::Argon2id),
            ("$argon2i$", Algo::Argon2i),
        ];
        MAGICS
            .iter()
            .find(|(m, _)| body.starts_with(m))
            .map(|&(_, algo)| algo)
    }
}

/// Splits an optional `{SCHEME}` prefix off and identifies the algorithm. A prefix must
/// agree with the body (`{CRYPT}` accepts any crypt(3) body); a mismatch means a
/// corrupt or hand-edited row and is rejected.
fn classify(stored: &str) -> Option<(Algo, &str)> {
    let (prefix, body) = match stored.strip_prefix('{') {
        Some(rest) => {
            let (name, body) = rest.split_once('}')?;
            (Some(name), body)
        }
        None => (None, stored),
    };
    let algo = Algo::from_body(body)?;
    let prefix_ok = match prefix {
        None => true,
        Some(p) if p.eq_ignore_ascii_case("CRYPT") => {
            !matches!(algo, Algo::Argon2id | Algo::Argon2i)
        }
        Some(p) => p.eq_ignore_ascii_case(algo.name()),
    };
    prefix_ok.then_some((algo, body))
}

/// Checks a crypt(3) body's cost parameter, so hashing it stays cheap enough.
fn crypt_cost_ok(algo: Algo, body: &str) -> bool {
    match algo {
        Algo::Sha256Crypt | Algo::Sha512Crypt => {
            match body.get(3..).and_then(|s| s.strip_prefix("rounds=")) {
                Some(rest) => rest
                    .split('$')
                    .next()
                    .and_then(|r| r.parse::<u32>().ok())
                    .is_some_and(|r| r <= VERIFY_MAX_SHA_ROUNDS),
                None => true,
            }
        }
        Algo::BlfCrypt => body
            .get(4..6)
            .and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|c| c <= VERIFY_MAX_BCRYPT_COST),
        _ => true,
    }
}

/// Verifies an Argon2 PHC string after bounding its memory, time and lane parameters.
fn verify_argon2(body: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(body) else {
        return false;
    };
    let within = |key: &str, max: u32| parsed.params.get_decimal(key).is_some_and(|v| v <= max);
    if !(within("m", VERIFY_MAX_ARGON2_M_KIB)
        && within("t", VERIFY_MAX_ARGON2_T)
        && within("p", VERIFY_MAX_ARGON2_P))
    {
        return false;
    }
    // Algorithm, version and parameters are taken from the PHC string itself.
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Verify `password` against a stored hash, the way Dovecot would.
///
/// Accepts `{SHA512-CRYPT}`, `{SHA256-CRYPT}`, `{MD5-CRYPT}`, `{BLF-CRYPT}`, `{CRYPT}`,
/// `{ARGON2ID}` and `{ARGON2I}` prefixes (case-insensitive) as well as unprefixed
/// `$6$`, `$5$`, `$1$`, `$2y$`/`$2b$`/`$2a$`, `$argon2id$`/`$argon2i$` strings written
/// by older postfixadmin installs. Anything else — unknown scheme, malformed hash,
/// empty string, DES crypt, absurd cost parameters — returns `false`, never panics.
/// Comparison of the computed hash is constant-time in both backends.
#[must_use]
pub fn verify(stored: &str, password: &str) -> bool {
    let Some((algo, body)) = classify(stored) else {
        return false;
    };
    // Hash strings are printable ASCII; anything else is corrupt, and rejecting it here
    // keeps non-ASCII bytes away from pwhash's parser (which can panic on them).
    if !body.bytes().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    match algo {
        Algo::Argon2id | Algo::Argon2i => verify_argon2(body, password),
        _ => crypt_cost_ok(algo, body) && pwhash::unix::verify(password.as_bytes(), body),
    }
}

/// The scheme name of a stored hash for display (`mailctl mailbox show`, audits), e.g.
/// `SHA512-CRYPT` for both `{SHA512-CRYPT}$6$...` and `$6$...`, `BLF-CRYPT` for `$2y$...`,
/// `unknown` for anything [`verify`] would not even try. Does not validate the hash.
#[must_use]
pub fn scheme_of(stored: &str) -> &'static str {
    classify(stored).map_or("unknown", |(algo, _)| algo.name())
}

/// Reject passwords that are empty, shorter than `min_len` characters (counted as
/// chars, not bytes, so non-ASCII passwords are not penalised), or contain control
/// characters (CR, LF, NUL, TAB...), which break IMAP/SMTP logins and crypt(3).
///
/// # Errors
/// A one-line message suitable for showing to the admin as is.
pub fn check_acceptable(password: &str, min_len: usize) -> Result<(), String> {
    if password.is_empty() {
        return Err("password is empty".to_owned());
    }
    if password.chars().any(char::is_control) {
        return Err(
            "password contains control characters (CR, LF, NUL, TAB...), which mail clients cannot send"
                .to_owned(),
        );
    }
    let len = password.chars().count();
    if len < min_len {
        return Err(format!(
            "password is too short: {len} characters, at least {min_len} required"
        ));
    }
    Ok(())
}

/// Characters for generated passwords: alphanumerics minus the look-alikes 0/O/1/l/I,
/// so a password read aloud or copied from paper survives.
const RANDOM_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
/// 20 characters from 57 symbols is about 116 bits of entropy.
const RANDOM_LEN: usize = 20;

/// A random password of 20 characters from an unambiguous alphanumeric alphabet
/// (no 0/O/1/l/I), drawn from the OS CSPRNG. Used when creating mailboxes without an
/// explicit password; it satisfies [`check_acceptable`] for any `min_len` up to 20.
#[must_use]
pub fn random_password() -> String {
    (0..RANDOM_LEN)
        .map(|_| char::from(RANDOM_ALPHABET[OsRng.gen_range(0..RANDOM_ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests;
