//! DKIM: keys, the TXT records that publish them, signing and verifying (with mail-auth).
//!
//! Private keys are kept as PKCS#8 PEM (the store holds them, so every `serve` node sharing the database can
//! sign). RSA public keys are published as SubjectPublicKeyInfo (what OpenDKIM and rspamd publish and every
//! verifier accepts), Ed25519 public keys as the raw 32 bytes (RFC 8463).

pub mod arc;
pub mod keys;
pub mod sign;
pub mod verify;

pub use keys::{KeyAlgorithm, KeyPair, KeySpec};

/// The TXT value that publishes a public key: `v=DKIM1; k=rsa; p=...`.
pub fn txt_value(algorithm: KeyAlgorithm, public_b64: &str) -> String {
    format!("v=DKIM1; k={}; p={public_b64}", algorithm.k_tag())
}

/// Splits a TXT value into character-strings of at most 255 bytes, as DNS requires (a 2048-bit key does not fit
/// in one). Splits never fall inside a UTF-8 character (DKIM values are ASCII anyway).
pub fn split_txt(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = value;
    while rest.len() > 255 {
        let mut cut = 255;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        parts.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    parts.push(rest.to_string());
    parts
}

/// A TXT value in zone-file syntax: quoted character-strings of at most 255 bytes, on one line (BIND joins
/// them; one line avoids parentheses, which some zone parsers mishandle inside quoted strings).
pub fn zone_txt_rdata(value: &str) -> String {
    split_txt(value)
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The tags of a DKIM key record (`v=DKIM1; k=rsa; p=...`), lower-cased names, whitespace removed from values.
pub fn parse_tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.chars().filter(|c| !c.is_whitespace()).collect(),
            )
        })
        .collect()
}

/// What DNS publishes for a key, compared with the key we hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum Published {
    /// A record with exactly our public key.
    Matches,
    /// No TXT record at the name.
    Missing,
    /// A DKIM record with another key (or revoked, `p=`).
    Mismatch(String),
}

/// Compares the TXT records found at a selector's name with the public key we hold.
pub fn compare_published(records: &[String], public_b64: &str) -> Published {
    if records.is_empty() {
        return Published::Missing;
    }
    let keys = records
        .iter()
        .filter(|r| parse_tags(r).iter().any(|(k, _)| k == "p"))
        .count();
    if keys > 1 {
        // Receivers pick one of them unpredictably (RFC 6376 leaves it undefined): that is not "published".
        return Published::Mismatch(format!("{keys} DKIM records at one name; keep exactly one"));
    }
    let mut why = String::from("no DKIM key record among the TXT records");
    for r in records {
        let tags = parse_tags(r);
        match tags.iter().find(|(k, _)| k == "p") {
            Some((_, p)) if p == public_b64 => return Published::Matches,
            Some((_, p)) if p.is_empty() => why = "the published key is revoked (empty p=)".into(),
            Some(_) => why = "DNS publishes a different public key".into(),
            None => {}
        }
    }
    Published::Mismatch(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_split_into_255_byte_strings_and_rejoin() {
        let value = format!("v=DKIM1; k=rsa; p={}", "A".repeat(700));
        let parts = split_txt(&value);
        assert!(parts.iter().all(|p| p.len() <= 255));
        assert_eq!(parts.concat(), value);
        assert_eq!(
            zone_txt_rdata(&value).matches("\" \"").count(),
            parts.len() - 1
        );
        assert_eq!(zone_txt_rdata("short"), "\"short\"");
    }

    #[test]
    fn published_keys_are_compared_by_p_tag() {
        let ours = "MIIBIjAN";
        assert_eq!(compare_published(&[], ours), Published::Missing);
        assert_eq!(
            compare_published(&["v=DKIM1; k=rsa; p=MIIB IjAN".into()], ours),
            Published::Matches
        );
        assert!(matches!(
            compare_published(&["v=DKIM1; p=OTHER".into()], ours),
            Published::Mismatch(_)
        ));
        assert!(matches!(
            compare_published(&["v=spf1 -all".into()], ours),
            Published::Mismatch(_)
        ));
    }
}
