//! DKIM (RFC 6376, 8463): the keys receivers fetch at `SELECTOR._domainkey.DOMAIN` to verify signatures.
//!
//! Selectors: the database's keys (hosted domains) plus `--selector`; with neither, a built-in list of common
//! selectors (those of big providers and signers, and `mYYYYMM` for this and the two previous months, as
//! `mailctl dkim generate` names them), of which only the ones that exist are reported.
//!
//! Ids (subject: `SELECTOR._domainkey.DOMAIN`):
//! - `dkim.record`: the record exists and parses (`v=DKIM1` first if present, `k=rsa|ed25519`, non-empty base64
//!   `p=` holding a key of that type). FAIL: missing for an active database key or a `--selector`, several key
//!   records at one name, revoked (empty `p=`), unparseable. Missing for a pending database key: INFO (publish
//!   it before `dkim activate`); for a retiring one: WARN (mail signed recently with it stops verifying). No
//!   common selector found: one WARN ("pass --selector").
//! - `dkim.key_size`: RSA modulus of 2048 bits or more PASS, 1024..2047 WARN, less FAIL. Ed25519 PASS, or
//!   INFO when the domain has no RSA key beside it (many receivers do not verify Ed25519 yet).
//! - `dkim.testing`: `t=y` WARN (receivers may treat failures as if unsigned), else PASS.
//! - `dkim.key_match` (database keys only): a test message signed locally with the stored private key verifies
//!   through DNS (mail-auth) PASS; else FAIL with the record that publishes the right key.
//!
//! A lookup that gets no answer is UNKNOWN, never "missing".

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::future::join_all;
use rsa::pkcs1::der::Decode;

use super::dmarc::{txt, with_fix, zone_line};
use crate::audit::{Context, Finding, Status};
use crate::dkim::{self, KeyAlgorithm};
use crate::model::{DomainName, Selector, printable};
use crate::store::DkimKeyRow;

/// Selectors tried when neither the database nor `--selector` names one (plus `mYYYYMM`, see [`common`]).
pub const COMMON_SELECTORS: &[&str] = &[
    "default",
    "selector1",
    "selector2",
    "google",
    "k1",
    "s1",
    "s2",
    "dkim",
    "mail",
    "m1",
];

/// Where a selector came from: that decides how a missing record is judged.
#[derive(Clone, Copy)]
enum Source<'a> {
    Database(&'a DkimKeyRow),
    Named,
    Common,
}

/// A key record that parsed.
#[derive(Debug)]
struct Key {
    algorithm: KeyAlgorithm,
    /// RSA modulus size (None for Ed25519).
    bits: Option<usize>,
    testing: bool,
}

/// The built-in selectors, with `mYYYYMM` for this month and the two before.
fn common() -> Vec<String> {
    use chrono::Datelike;
    let now = chrono::Utc::now();
    let month = now.year() * 12 + now.month0() as i32;
    let recent = (0..3).map(|back| {
        let m = month - back;
        format!("m{:04}{:02}", m.div_euclid(12), m.rem_euclid(12) + 1)
    });
    COMMON_SELECTORS
        .iter()
        .map(|s| s.to_string())
        .chain(recent)
        .collect()
}

/// The RSA modulus size of a public key in SubjectPublicKeyInfo or PKCS#1 DER.
fn rsa_bits(der: &[u8]) -> Option<usize> {
    let pkcs1 = match rsa::pkcs8::SubjectPublicKeyInfoRef::from_der(der) {
        Ok(spki) if spki.algorithm.oid == rsa::pkcs1::ALGORITHM_OID => {
            spki.subject_public_key.as_bytes()?
        }
        Ok(_) => return None,
        Err(_) => der,
    };
    let n = rsa::pkcs1::RsaPublicKey::from_der(pkcs1).ok()?.modulus;
    let n = n.as_bytes();
    let first = *n.first()?;
    Some(n.len() * 8 - first.leading_zeros() as usize)
}

/// Whether a TXT record is meant as a DKIM key (has `p=` or `v=DKIM1`).
fn is_key_record(record: &str) -> bool {
    dkim::parse_tags(record)
        .iter()
        .any(|(k, v)| k == "p" || (k == "v" && v == "DKIM1"))
}

/// Parses the TXT records at a selector's name (RFC 6376 3.6.1).
fn parse_key(records: &[String]) -> Result<Key, String> {
    let keys: Vec<&String> = records.iter().filter(|r| is_key_record(r)).collect();
    let record = match keys.as_slice() {
        [one] => one.as_str(),
        [] => return Err("no DKIM key record among the TXT records here".into()),
        many => {
            return Err(format!(
                "{} DKIM key records at one name: receivers pick one at random",
                many.len()
            ));
        }
    };
    let tags = dkim::parse_tags(record);
    let get = |t: &str| tags.iter().find(|(k, _)| k == t).map(|(_, v)| v.as_str());
    if tags.iter().skip(1).any(|(k, _)| k == "v") || get("v").is_some_and(|v| v != "DKIM1") {
        return Err("v= must be DKIM1 and come first".into());
    }
    let algorithm = match get("k").unwrap_or("rsa").to_ascii_lowercase().as_str() {
        "rsa" => KeyAlgorithm::Rsa,
        "ed25519" => KeyAlgorithm::Ed25519,
        other => return Err(format!("k={other} is neither rsa nor ed25519")),
    };
    if let Some(h) = get("h").filter(|h| !h.split(':').any(|a| a.eq_ignore_ascii_case("sha256"))) {
        return Err(format!(
            "h={h} excludes sha256, so no valid signature can use the key"
        ));
    }
    if let Some(s) = get("s").filter(|s| {
        !s.split(':')
            .any(|t| t == "*" || t.eq_ignore_ascii_case("email"))
    }) {
        return Err(format!("s={s} does not include email"));
    }
    let p = match get("p") {
        None => return Err("the required p= tag is missing".into()),
        Some("") => {
            return Err("the key is revoked (empty p=): signatures with this selector fail".into());
        }
        Some(p) => B64
            .decode(p)
            .map_err(|_| "p= is not valid base64".to_string())?,
    };
    let bits = match algorithm {
        KeyAlgorithm::Rsa => Some(rsa_bits(&p).ok_or("p= does not hold an RSA public key")?),
        KeyAlgorithm::Ed25519 if p.len() == 32 => None,
        KeyAlgorithm::Ed25519 => {
            return Err(format!("p= holds {} bytes; an Ed25519 key is 32", p.len()));
        }
    };
    let testing = get("t").is_some_and(|t| t.split(':').any(|f| f.eq_ignore_ascii_case("y")));
    Ok(Key {
        algorithm,
        bits,
        testing,
    })
}

/// The record that publishes a database key, in zone syntax.
fn db_record(domain: &DomainName, selector: &Selector, row: &DkimKeyRow) -> Option<String> {
    let algorithm = KeyAlgorithm::from_signing_name(&row.algorithm)?;
    Some(zone_line(
        &selector.record_name(domain),
        &dkim::txt_value(algorithm, &row.public_key),
    ))
}

/// The selectors to check and where each came from.
fn targets<'a>(ctx: &'a Context<'_>) -> Vec<(Selector, Source<'a>)> {
    let mut out: Vec<(Selector, Source<'a>)> = Vec::new();
    for row in &ctx.known.dkim_keys {
        if let Ok(s) = row.selector.parse::<Selector>() {
            out.push((s, Source::Database(row)));
        }
    }
    for s in &ctx.options.selectors {
        if let Ok(s) = s.parse::<Selector>()
            && !out.iter().any(|(t, _)| *t == s)
        {
            out.push((s, Source::Named));
        }
    }
    out
}

/// Checks every selector of the domain.
pub async fn check(ctx: &Context<'_>, domain: &DomainName) -> Vec<Finding> {
    let mut targets = targets(ctx);
    let probe = targets.is_empty();
    if probe {
        let common = common().into_iter().filter_map(|s| s.parse().ok());
        targets = common.map(|s| (s, Source::Common)).collect();
    }
    let names: Vec<String> = targets.iter().map(|(s, _)| s.record_name(domain)).collect();
    let answers = join_all(names.iter().map(|n| txt(ctx.resolver, n))).await;
    let mut looked: Vec<_> = targets.into_iter().zip(answers).collect();
    if probe {
        // A common name counts only when it holds a key record (a wildcard TXT is not a selector).
        let failed = looked.iter().find_map(|(_, a)| a.as_ref().err().cloned());
        looked.retain(|(_, a)| a.as_ref().is_ok_and(|r| r.iter().any(|r| is_key_record(r))));
        if looked.is_empty() {
            return vec![nothing_found(ctx, domain, failed)];
        }
    }
    let parsed: Vec<_> = looked
        .into_iter()
        .map(|(t, a)| (t, a.map(|r| (!r.is_empty()).then(|| parse_key(&r)))))
        .collect();
    let has_rsa = parsed
        .iter()
        .any(|(_, a)| matches!(a, Ok(Some(Ok(k))) if k.algorithm == KeyAlgorithm::Rsa));
    let per_selector = parsed.into_iter().map(|((selector, source), answer)| {
        selector_findings(ctx, domain, selector, source, answer, has_rsa)
    });
    join_all(per_selector).await.into_iter().flatten().collect()
}

/// The WARN (or UNKNOWN) when no common selector holds a key.
fn nothing_found(ctx: &Context<'_>, domain: &DomainName, failed: Option<String>) -> Finding {
    let subject = format!("_domainkey.{domain}");
    if let Some(e) = failed {
        return Finding::unknown_dns("dkim.record", subject, "the DKIM key records", &e);
    }
    let detail = format!(
        "no DKIM key found under common selectors ({}); pass --selector",
        common().join(", ")
    );
    let fix = ctx
        .known
        .hosted
        .then(|| format!("mailctl dkim generate {domain}"));
    with_fix(
        Finding::new("dkim.record", Status::Warn, subject, detail),
        fix,
    )
}

/// Every finding for one selector, from its lookup: an error, no record, a record that does not parse, a key.
async fn selector_findings(
    ctx: &Context<'_>,
    domain: &DomainName,
    selector: Selector,
    source: Source<'_>,
    answer: Result<Option<Result<Key, String>>, String>,
    has_rsa: bool,
) -> Vec<Finding> {
    let subject = selector
        .record_name(domain)
        .trim_end_matches('.')
        .to_string();
    let db_fix = match source {
        Source::Database(row) => db_record(domain, &selector, row),
        _ => None,
    };
    let key = match answer {
        Err(e) => {
            return vec![Finding::unknown_dns(
                "dkim.record",
                subject,
                "the DKIM key record",
                &e,
            )];
        }
        Ok(None) => return vec![with_fix(missing(source, subject), db_fix)],
        Ok(Some(Err(why))) => {
            let f = Finding::new("dkim.record", Status::Fail, &subject, printable(&why));
            return vec![with_fix(f, db_fix)];
        }
        Ok(Some(Ok(key))) => key,
    };
    let mut findings = record_findings(&subject, &key, has_rsa);
    if let Source::Database(row) = source {
        findings.push(key_match(ctx, domain, &selector, row, subject).await);
    }
    findings
}

/// The message signed for `dkim.key_match`; never sent anywhere.
fn test_message(domain: &DomainName) -> String {
    format!(
        "From: mailctl audit <postmaster@{domain}>\r\nTo: postmaster@{domain}\r\n\
         Subject: mailctl audit DKIM key test\r\n\r\n\
         Signed locally by mailctl audit to compare the published key with the stored one.\r\n"
    )
}

/// `dkim.key_match`: signs a test message with the stored private key (on a blocking thread: RSA is slow) and
/// verifies it through DNS as a receiver would.
async fn key_match(
    ctx: &Context<'_>,
    domain: &DomainName,
    selector: &Selector,
    row: &DkimKeyRow,
    subject: String,
) -> Finding {
    let unknown = |why: String| {
        Finding::new(
            "dkim.key_match",
            Status::Unknown,
            &subject,
            format!("could not test: {why}"),
        )
    };
    let (pem, d, s) = (row.private_key.clone(), domain.clone(), selector.clone());
    let signed = tokio::task::spawn_blocking(move || {
        let pair = dkim::keys::from_stored(&pem)?;
        let message = dkim::sign::sign(test_message(&d).as_bytes(), &d, &s, &pair)?;
        Ok::<_, String>((pair, message))
    })
    .await;
    let (pair, message) = match signed {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return unknown(format!("cannot sign with the stored key ({e})")),
        Err(e) => return unknown(format!("the signing task failed ({e})")),
    };
    let results = dkim::verify::verify(ctx.resolver, &message)
        .await
        .unwrap_or_default();
    let Some(result) = results
        .into_iter()
        .find(|r| r.selector == selector.as_str())
    else {
        return unknown("the signed test message did not parse".into());
    };
    let reason = printable(result.reason.as_deref().unwrap_or(result.result));
    match result.result {
        "pass" => Finding::new(
            "dkim.key_match",
            Status::Pass,
            &subject,
            "a message signed with the database key verifies against the published key",
        ),
        "temperror" => unknown(reason),
        _ => Finding::new(
            "dkim.key_match",
            Status::Fail,
            &subject,
            format!("the published key does not match the database key: {reason}"),
        )
        .fix(zone_line(
            &selector.record_name(domain),
            &dkim::txt_value(pair.algorithm, &pair.public_b64),
        )),
    }
}

/// The finding for a selector with no TXT record.
fn missing(source: Source<'_>, subject: String) -> Finding {
    let (status, detail) = match source {
        Source::Database(row) if row.state == "pending" => (
            Status::Info,
            "pending key not published yet: publish it, wait for the TTL, then `mailctl dkim activate`",
        ),
        Source::Database(row) if row.state == "retiring" => (
            Status::Warn,
            "retiring key no longer published: recently signed mail still in transit fails DKIM",
        ),
        _ => (
            Status::Fail,
            "no key record at this selector: every signature that names it fails DKIM",
        ),
    };
    Finding::new("dkim.record", status, subject, detail)
}

/// `dkim.record` PASS, `dkim.key_size` and `dkim.testing` for a key that parsed.
fn record_findings(subject: &str, key: &Key, has_rsa: bool) -> Vec<Finding> {
    let (size_status, size) = match key.bits {
        Some(b) if b >= 2048 => (Status::Pass, format!("RSA {b} bits")),
        Some(b) if b >= 1024 => (
            Status::Warn,
            format!("RSA {b} bits: receivers increasingly distrust keys under 2048 bits"),
        ),
        Some(b) => (Status::Fail, format!("RSA {b} bits: receivers treat keys this short as broken")),
        None if has_rsa => (Status::Pass, "Ed25519 (paired with an RSA key)".to_string()),
        None => (
            Status::Info,
            "Ed25519 only: many receivers do not verify Ed25519 yet; add an RSA 2048-bit key beside it".to_string(),
        ),
    };
    let mut size_finding = Finding::new("dkim.key_size", size_status, subject, size);
    if size_status == Status::Warn || size_status == Status::Fail {
        size_finding = size_finding
            .fix("generate a 2048-bit key under a new selector, publish it, then switch");
    }
    vec![
        Finding::new(
            "dkim.record",
            Status::Pass,
            subject,
            format!("k={} key published", key.algorithm.k_tag()),
        ),
        size_finding,
        if key.testing {
            Finding::new(
                "dkim.testing",
                Status::Warn,
                subject,
                "t=y: testing mode, receivers may treat failing signatures as unsigned",
            )
            .fix("remove t=y from the record")
        } else {
            Finding::new("dkim.testing", Status::Pass, subject, "not in testing mode")
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_records_parse_with_their_size_and_flags() {
        let pair = dkim::keys::generate(dkim::KeySpec::Ed25519).unwrap();
        let ed = format!("v=DKIM1; k=ed25519; p={}; t=y", pair.public_b64);
        let key = parse_key(&[ed, "unrelated".into()]).unwrap();
        assert!(key.testing && key.bits.is_none());
        assert!(
            parse_key(&["v=DKIM1; k=rsa; p=".into()])
                .unwrap_err()
                .contains("revoked")
        );
        assert!(parse_key(&["v=DKIM1; k=dsa; p=AAAA".into()]).is_err());
        assert!(parse_key(&["v=DKIM1; p=AAAA".into(), "v=DKIM1; p=AAAA".into()]).is_err());
        assert!(parse_key(&["v=DKIM1; k=rsa; p=AAAA".into()]).is_err());
    }

    #[test]
    fn rsa_sizes_come_from_spki_or_pkcs1() {
        use rsa::pkcs1::EncodeRsaPublicKey;
        use rsa::pkcs8::EncodePublicKey;
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024)
            .unwrap()
            .to_public_key();
        assert_eq!(
            rsa_bits(key.to_public_key_der().unwrap().as_bytes()),
            Some(1024)
        );
        assert_eq!(rsa_bits(key.to_pkcs1_der().unwrap().as_bytes()), Some(1024));
        assert_eq!(rsa_bits(b"nonsense"), None);
    }

    #[test]
    fn common_selectors_include_recent_months() {
        let list = common();
        assert_eq!(list.len(), COMMON_SELECTORS.len() + 3);
        assert!(list.iter().all(|s| s.parse::<Selector>().is_ok()));
        assert_eq!(list.last().map(String::len), Some(7));
    }
}
