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
//!   it before `dkim activate`); for a retiring one: WARN (mail signed recently with it stops verifying).
//!   Probing common selectors: a revoked key there is INFO (normal after a rotation, not a selector in use). When
//!   no common selector holds an active key: one WARN ("pass --selector"; it names the revoked ones), or
//!   UNKNOWN (subject `_domainkey.DOMAIN`) if the lookup of any common selector failed, since the key may be
//!   there. When an active key was found but some lookups failed: one INFO on `_domainkey.DOMAIN` naming the
//!   selectors not probed.
//! - `dkim.key_size`: RSA modulus of 2048 bits or more PASS, 1024..2047 WARN, less FAIL. Ed25519 PASS, or
//!   INFO when the domain has no RSA key beside it (many receivers do not verify Ed25519 yet).
//! - `dkim.testing`: `t=y` WARN (receivers may treat failures as if unsigned), else PASS.
//! - `dkim.key_match` (database keys only): a test message signed locally with the stored private key verifies
//!   through DNS (mail-auth) PASS; else FAIL with the record that publishes the right key.
//!
//! A lookup that gets no answer is UNKNOWN, never "missing".

use futures_util::future::join_all;

use super::txt_records::{Key, KeyProblem, is_key_record, parse_key, with_fix, zone_line};
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
    let answers = join_all(names.iter().map(|n| ctx.resolver.txt_or_reason(n))).await;
    let mut looked: Vec<_> = targets.into_iter().zip(answers).collect();
    let failed: Vec<(String, String)> = looked
        .iter()
        .filter_map(|((s, _), a)| a.as_ref().err().map(|e| (s.to_string(), e.clone())))
        .collect();
    if probe {
        // A common name counts only when it holds a key record (a wildcard TXT is not a selector).
        looked.retain(|(_, a)| a.as_ref().is_ok_and(|r| r.iter().any(|r| is_key_record(r))));
    }
    let parsed: Vec<_> = looked
        .into_iter()
        .map(|(t, a)| (t, a.map(|r| (!r.is_empty()).then(|| parse_key(&r)))))
        .collect();
    let has_rsa = parsed
        .iter()
        .any(|(_, a)| matches!(a, Ok(Some(Ok(k))) if k.algorithm == KeyAlgorithm::Rsa));
    let revoked: Vec<String> = parsed
        .iter()
        .filter(|(_, a)| matches!(a, Ok(Some(Err(KeyProblem::Revoked)))))
        .map(|((s, _), _)| s.to_string())
        .collect();
    let active = revoked.len() < parsed.len();
    let summary = probe.then(|| probe_summary(ctx, domain, &failed, &revoked, active));
    let per_selector = parsed.into_iter().map(|((selector, source), answer)| {
        selector_findings(ctx, domain, selector, source, answer, has_rsa)
    });
    let findings = join_all(per_selector).await.into_iter().flatten();
    findings.chain(summary.flatten()).collect()
}

/// After probing common selectors: WARN when none holds an active key (naming the revoked ones), UNKNOWN
/// instead when a lookup failed (the key may be there); INFO naming the failed lookups when a key was found.
fn probe_summary(
    ctx: &Context<'_>,
    domain: &DomainName,
    failed: &[(String, String)],
    revoked: &[String],
    active: bool,
) -> Option<Finding> {
    let subject = format!("_domainkey.{domain}");
    let names: Vec<&str> = failed.iter().map(|(s, _)| s.as_str()).collect();
    let what = format!("common selectors ({})", names.join(", "));
    let detail = match (active, failed.first()) {
        (true, None) => return None,
        (true, Some((_, e))) => format!(
            "probe incomplete: DNS lookup of {what} failed after a retry ({}); a key there was not checked",
            printable(e)
        ),
        (false, Some((_, e))) => {
            let what = format!("the DKIM key records at {what}");
            return Some(Finding::unknown_dns("dkim.record", subject, &what, e));
        }
        (false, None) if revoked.is_empty() => format!(
            "no DKIM key found under common selectors ({}); pass --selector",
            common().join(", ")
        ),
        (false, None) => format!(
            "no active DKIM key under common selectors, only revoked ones ({}); pass --selector",
            revoked.join(", ")
        ),
    };
    if active {
        return Some(Finding::new("dkim.record", Status::Info, subject, detail));
    }
    let fix = ctx
        .known
        .hosted
        .then(|| format!("mailctl dkim generate {domain}"));
    Some(with_fix(
        Finding::new("dkim.record", Status::Warn, subject, detail),
        fix,
    ))
}

/// Every finding for one selector, from its lookup: an error, no record, a record that does not parse, a key.
async fn selector_findings(
    ctx: &Context<'_>,
    domain: &DomainName,
    selector: Selector,
    source: Source<'_>,
    answer: Result<Option<Result<Key, KeyProblem>>, String>,
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
        Ok(Some(Err(KeyProblem::Revoked))) if matches!(source, Source::Common) => {
            let detail = "revoked key (empty p=): normal after a key rotation; mail signed with this selector \
                          no longer verifies";
            return vec![Finding::new("dkim.record", Status::Info, subject, detail)];
        }
        Ok(Some(Err(problem))) => {
            let why = problem.to_string();
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
        assert_eq!(
            parse_key(&["v=DKIM1; k=rsa; p=".into()]).unwrap_err(),
            KeyProblem::Revoked
        );
        assert!(parse_key(&["v=DKIM1; k=dsa; p=AAAA".into()]).is_err());
        assert!(parse_key(&["v=DKIM1; p=AAAA".into(), "v=DKIM1; p=AAAA".into()]).is_err());
        assert!(parse_key(&["v=DKIM1; k=rsa; p=AAAA".into()]).is_err());
    }

    #[test]
    fn rsa_sizes_come_from_spki_or_pkcs1() {
        use super::super::txt_records::rsa_bits;
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
