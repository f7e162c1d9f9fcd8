//! The Sender Rewriting Scheme (SRS), as Mail::SRS (its reference implementation), libsrs2 and postsrsd write
//! it, so that mail this server forwards keeps passing SPF at the next hop and bounces still find the sender.
//!
//! When a message from `bob@remote.example` is forwarded to an outside address, MAIL FROM becomes an address
//! of the forwarding domain that encodes the original one:
//!
//! - `SRS0=HHHH=TT=remote.example=bob@fwd.example`: `HHHH` is the first 4 characters of the base64
//!   HMAC-SHA1, under the newest secret, of the lower-cased `TT`, `remote.example` and `bob`; `TT` is the day
//!   (Unix time / 86400, modulo 1024) in two base32 characters.
//! - a sender that is already an SRS address of another forwarder becomes `SRS1=HHHH=first.example==HHHH=TT=
//!   remote.example=bob@fwd.example` (Mail::SRS's "guarded" scheme): only the first forwarder's domain and the
//!   rest of its address are kept, under our own hash.
//!
//! Reversing (a bounce arriving for an SRS address of a hosted domain) checks the hash against every known
//! secret (old ones keep verifying after a rotation) and, for `SRS0`, that the address is at most
//! [`MAX_AGE_DAYS`] old. Hashes are compared case-insensitively, as Mail::SRS does (some MTAs change the case
//! of local parts). The secrets are bytes: a secret from postsrsd's secret file works unchanged, so addresses
//! it issued stay valid after a migration.
//!
//! One extension of mailctl's own: a forwarded message whose sender could not be authenticated (neither SPF
//! nor DKIM passed aligned with its From domain) gets an SRS address whose hash is made with a key derived from
//! the secret ([`Bounces::Never`]). It looks like any other SRS address and keeps the next hop's SPF happy,
//! but a bounce to it is refused instead of being sent on to a sender who may never have sent the message
//! (backscatter).

use base64::Engine;

/// How long (in days) an `SRS0` address can be reversed.
pub const MAX_AGE_DAYS: u64 = 21;

/// Characters of the hash in the addresses written (and the fewest accepted).
const HASH_LEN: usize = 4;

/// The base32 alphabet of the timestamp (RFC 3548).
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Days the timestamp counts before it wraps.
const TICKSLOTS: u64 = 1024;

/// The context string of the derived key of [`Bounces::Never`] addresses.
const NO_BOUNCE: &[u8] = b"mailctl SRS: bounces are not returned";

/// Whether bounces to a rewritten address go back to the original sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounces {
    /// The sender was authenticated: bounces are sent on to it.
    Return,
    /// The sender may be forged: bounces are refused.
    Never,
}

/// What an SRS address of ours stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reversed {
    /// The address to send a bounce on to (the original sender, or the previous forwarder's SRS0 address).
    Address(String),
    /// A valid address whose bounces are refused ([`Bounces::Never`]).
    Silent,
}

/// Why an address cannot be reversed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrsError {
    /// Not an SRS address (no `SRS0`/`SRS1` tag and separator).
    NotSrs,
    /// Tagged, but not the format (missing fields, a bad timestamp).
    Malformed,
    /// The hash matches no secret: forged, or from a secret since removed.
    Forged,
    /// Older than [`MAX_AGE_DAYS`].
    Expired,
    /// No secret is configured.
    NoSecret,
}

impl std::fmt::Display for SrsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SrsError::NotSrs => "not an SRS address",
            SrsError::Malformed => "malformed SRS address",
            SrsError::Forged => "SRS hash does not verify (forged address)",
            SrsError::Expired => "SRS address expired",
            SrsError::NoSecret => "no SRS secret",
        })
    }
}

/// The secrets, newest first: the newest signs, all verify.
#[derive(Clone, Default)]
pub struct Srs {
    secrets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Srs {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Srs({} secrets)", self.secrets.len())
    }
}

/// Whether a local part is tagged as SRS (`SRS0` or `SRS1`, any case, then `=`, `+` or `-`).
pub fn is_srs(local: &str) -> bool {
    tag(local).is_some()
}

/// `(1 for SRS1 / 0 for SRS0, the separator, the rest)` of an SRS local part.
fn tag(local: &str) -> Option<(u8, char, &str)> {
    let head = local.get(..4)?;
    let kind = match head.to_ascii_uppercase().as_str() {
        "SRS0" => 0,
        "SRS1" => 1,
        _ => return None,
    };
    let mut rest = local[4..].chars();
    let sep = rest.next().filter(|c| matches!(c, '=' | '+' | '-'))?;
    Some((kind, sep, rest.as_str()))
}

/// The day number of a Unix time.
pub fn day(unix_seconds: u64) -> u64 {
    unix_seconds / 86_400
}

/// The two-character timestamp of day `day`.
fn timestamp(day: u64) -> String {
    let t = day % TICKSLOTS;
    let chars = [BASE32[((t >> 5) & 31) as usize], BASE32[(t & 31) as usize]];
    String::from_utf8_lossy(&chars).into_owned()
}

/// The day a timestamp stands for (modulo [`TICKSLOTS`]), if it is one.
fn timestamp_day(text: &str) -> Option<u64> {
    let mut t = 0u64;
    if text.len() != 2 {
        return None;
    }
    for c in text.bytes() {
        let v = BASE32.iter().position(|&b| b == c.to_ascii_uppercase())?;
        t = t * 32 + v as u64;
    }
    Some(t)
}

impl Srs {
    /// The scheme over `secrets`, newest first (empty secrets are ignored).
    pub fn new<S: AsRef<[u8]>>(secrets: impl IntoIterator<Item = S>) -> Srs {
        Srs {
            secrets: secrets
                .into_iter()
                .map(|s| s.as_ref().to_vec())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    /// Whether there is a secret to write addresses with.
    pub fn ready(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// The MAC key of `secret` for `bounces`.
    fn key(secret: &[u8], bounces: Bounces) -> ring::hmac::Key {
        let alg = ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY;
        match bounces {
            Bounces::Return => ring::hmac::Key::new(alg, secret),
            Bounces::Never => {
                let derived = ring::hmac::sign(&ring::hmac::Key::new(alg, secret), NO_BOUNCE);
                ring::hmac::Key::new(alg, derived.as_ref())
            }
        }
    }

    /// The base64 HMAC of the lower-cased `parts` under `secret` (all of it; callers cut).
    fn mac(secret: &[u8], bounces: Bounces, parts: &[&str]) -> String {
        let mut ctx = ring::hmac::Context::with_key(&Srs::key(secret, bounces));
        for part in parts {
            ctx.update(part.to_ascii_lowercase().as_bytes());
        }
        base64::engine::general_purpose::STANDARD.encode(ctx.sign().as_ref())
    }

    /// The hash written into a new address.
    fn hash(&self, bounces: Bounces, parts: &[&str]) -> Option<String> {
        let secret = self.secrets.first()?;
        Some(Srs::mac(secret, bounces, parts)[..HASH_LEN].to_string())
    }

    /// Which kind of address `hash` authenticates for `parts`, trying every secret (exact matches first, then
    /// case-insensitive ones, as Mail::SRS does).
    fn verify(&self, hash: &str, parts: &[&str]) -> Result<Bounces, SrsError> {
        if self.secrets.is_empty() {
            return Err(SrsError::NoSecret);
        }
        if hash.len() < HASH_LEN {
            return Err(SrsError::Forged);
        }
        let mut candidates = Vec::new();
        for secret in &self.secrets {
            for bounces in [Bounces::Return, Bounces::Never] {
                candidates.push((Srs::mac(secret, bounces, parts), bounces));
            }
        }
        let cut = |mac: &str| mac.get(..hash.len()).map(str::to_string);
        if let Some((_, b)) = candidates
            .iter()
            .find(|(mac, _)| cut(mac).as_deref() == Some(hash))
        {
            return Ok(*b);
        }
        candidates
            .iter()
            .find(|(mac, _)| cut(mac).is_some_and(|m| m.eq_ignore_ascii_case(hash)))
            .map(|(_, b)| *b)
            .ok_or(SrsError::Forged)
    }

    /// The SRS address of `domain` for the envelope sender `sender` on day `today`, or `None` when there is
    /// nothing to rewrite (the null sender, an address without a domain) or no secret.
    pub fn forward(
        &self,
        sender: &str,
        domain: &str,
        bounces: Bounces,
        today: u64,
    ) -> Option<String> {
        let (user, host) = sender.rsplit_once('@')?;
        // The host is a field between separators: one holding `=` (no domain name does) would shift the
        // fields on the way back and reverse to another address under the same hash.
        if user.is_empty()
            || host.is_empty()
            || host
                .chars()
                .any(|c| c == '=' || c.is_whitespace() || c.is_control())
        {
            return None;
        }
        let local = match tag(user) {
            Some((1, _, rest)) => {
                // SRS1 of another forwarder: keep its first host and the rest, re-hashed by us.
                let mut fields = rest.splitn(3, '=');
                let (_, srshost, srsuser) = (fields.next()?, fields.next()?, fields.next()?);
                let hash = self.hash(bounces, &[srshost, srsuser])?;
                format!("SRS1={hash}={srshost}={srsuser}")
            }
            Some((_, sep, rest)) => {
                // SRS0 of another forwarder: point back at it.
                let srsuser = format!("{sep}{rest}");
                let hash = self.hash(bounces, &[host, &srsuser])?;
                format!("SRS1={hash}={host}={srsuser}")
            }
            None => {
                let tt = timestamp(today);
                let hash = self.hash(bounces, &[&tt, host, user])?;
                format!("SRS0={hash}={tt}={host}={user}")
            }
        };
        Some(format!("{local}@{domain}"))
    }

    /// What the SRS local part `local` (of one of our domains) stands for on day `today`.
    pub fn reverse(&self, local: &str, today: u64) -> Result<Reversed, SrsError> {
        let (kind, _, rest) = tag(local).ok_or(SrsError::NotSrs)?;
        let answer = |bounces: Bounces, address: String| match bounces {
            Bounces::Return => Reversed::Address(address),
            Bounces::Never => Reversed::Silent,
        };
        if kind == 1 {
            let mut fields = rest.splitn(3, '=');
            let (Some(hash), Some(srshost), Some(srsuser)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(SrsError::Malformed);
            };
            if srshost.is_empty() || srsuser.is_empty() {
                return Err(SrsError::Malformed);
            }
            let bounces = self.verify(hash, &[srshost, srsuser])?;
            return Ok(answer(bounces, format!("SRS0{srsuser}@{srshost}")));
        }
        let mut fields = rest.splitn(4, '=');
        let (Some(hash), Some(tt), Some(host), Some(user)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(SrsError::Malformed);
        };
        if host.is_empty() || user.is_empty() {
            return Err(SrsError::Malformed);
        }
        let then = timestamp_day(tt).ok_or(SrsError::Malformed)?;
        let bounces = self.verify(hash, &[tt, host, user])?;
        let mut now = today % TICKSLOTS;
        while now < then {
            now += TICKSLOTS;
        }
        if now > then + MAX_AGE_DAYS {
            return Err(SrsError::Expired);
        }
        Ok(answer(bounces, format!("{user}@{host}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07.
    const TODAY: u64 = 20_794;

    fn srs() -> Srs {
        Srs::new(["secret-one"])
    }

    #[test]
    fn the_timestamp_is_two_base32_characters_of_the_day() {
        assert_eq!(timestamp(0), "AA");
        assert_eq!(timestamp(33), "BB");
        assert_eq!(timestamp(1023), "77");
        assert_eq!(timestamp(1024), "AA");
        assert_eq!(timestamp_day("bb"), Some(33));
        assert_eq!(timestamp_day("A1"), None);
    }

    #[test]
    fn srs0_round_trips_and_refuses_tampering_and_age() {
        let s = srs();
        let a = s
            .forward("Bob@Remote.example", "fwd.example", Bounces::Return, TODAY)
            .unwrap();
        let (local, domain) = a.rsplit_once('@').unwrap();
        assert_eq!(domain, "fwd.example");
        assert!(
            local.starts_with("SRS0=") && local.ends_with("=Remote.example=Bob"),
            "{a}"
        );
        assert_eq!(
            s.reverse(local, TODAY),
            Ok(Reversed::Address("Bob@Remote.example".into()))
        );
        // Case changed in transit still verifies.
        assert!(matches!(
            s.reverse(&local.to_ascii_lowercase(), TODAY),
            Ok(Reversed::Address(_))
        ));
        assert_eq!(
            s.reverse(local, TODAY + MAX_AGE_DAYS),
            Ok(Reversed::Address("Bob@Remote.example".into()))
        );
        assert_eq!(
            s.reverse(local, TODAY + MAX_AGE_DAYS + 1),
            Err(SrsError::Expired)
        );
        let forged = local.replace("=Bob", "=mallory");
        assert_eq!(s.reverse(&forged, TODAY), Err(SrsError::Forged));
        assert_eq!(
            Srs::new(["other"]).reverse(local, TODAY),
            Err(SrsError::Forged)
        );
        assert_eq!(s.reverse("bob", TODAY), Err(SrsError::NotSrs));
        assert_eq!(s.reverse("SRS0=x", TODAY), Err(SrsError::Malformed));
        assert_eq!(
            Srs::default().reverse(local, TODAY),
            Err(SrsError::NoSecret)
        );
    }

    #[test]
    fn old_secrets_verify_and_the_newest_signs() {
        let old = srs();
        let a = old
            .forward("bob@remote.example", "fwd.example", Bounces::Return, TODAY)
            .unwrap();
        let rotated = Srs::new(["secret-two", "secret-one"]);
        let local = a.rsplit_once('@').unwrap().0;
        assert!(matches!(
            rotated.reverse(local, TODAY),
            Ok(Reversed::Address(_))
        ));
        let b = rotated
            .forward("bob@remote.example", "fwd.example", Bounces::Return, TODAY)
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(
            old.reverse(b.rsplit_once('@').unwrap().0, TODAY),
            Err(SrsError::Forged)
        );
    }

    #[test]
    fn unauthenticated_senders_get_silent_addresses() {
        let s = srs();
        let a = s
            .forward("bob@remote.example", "fwd.example", Bounces::Never, TODAY)
            .unwrap();
        assert_eq!(
            s.reverse(a.rsplit_once('@').unwrap().0, TODAY),
            Ok(Reversed::Silent)
        );
    }

    #[test]
    fn srs_senders_become_srs1_pointing_at_the_first_forwarder() {
        let s = srs();
        let first = Srs::new(["their-secret"])
            .forward(
                "bob@remote.example",
                "first.example",
                Bounces::Return,
                TODAY,
            )
            .unwrap();
        let ours = s
            .forward(&first, "fwd.example", Bounces::Return, TODAY)
            .unwrap();
        let local = ours.rsplit_once('@').unwrap().0;
        assert!(local.starts_with("SRS1=") && local.contains("=first.example=="));
        // Reversed, it is the first forwarder's address again, which only it can verify.
        assert_eq!(
            s.reverse(local, TODAY),
            Ok(Reversed::Address(first.clone()))
        );
        // A third forwarder keeps the first forwarder's host.
        let third = Srs::new(["third"])
            .forward(&ours, "third.example", Bounces::Return, TODAY)
            .unwrap();
        assert!(third.contains("=first.example=="), "{third}");
        assert_eq!(
            Srs::new(["third"]).reverse(third.rsplit_once('@').unwrap().0, TODAY),
            Ok(Reversed::Address(first))
        );
    }

    #[test]
    fn nothing_to_rewrite_without_a_sender_or_a_secret() {
        assert_eq!(
            srs().forward("", "fwd.example", Bounces::Return, TODAY),
            None
        );
        assert_eq!(
            Srs::default().forward("a@b.example", "fwd.example", Bounces::Return, TODAY),
            None
        );
        assert!(is_srs("srs0+x") && is_srs("SRS1=x") && !is_srs("srs2=x") && !is_srs("srs0"));
        assert_eq!(format!("{:?}", srs()), "Srs(1 secrets)");
    }
}
