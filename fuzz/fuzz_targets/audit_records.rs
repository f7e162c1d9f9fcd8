//! The audit's record parsers, chosen by the first input byte (modulo 6); the rest is the record:
//!
//! 0. SPF (`spf::syntax::is_spf`, `parse`),
//! 1. DMARC (`parse_dmarc`, the repaired record and the one without historic tags it suggests, report URIs,
//!    `dns::dmarc::is_dmarc`, which runs mail-auth's parser),
//! 2. DKIM key records (`parse_key` over newline-separated TXT records, `is_key_record`, `rsa_bits`),
//! 3. the `_mta-sts` and `_smtp._tls` TXT records (`parse_sts`, `parse_tls_rpt`),
//! 4. the MTA-STS policy file (`Policy::parse`, `mx_matches`),
//! 5. the HTTP response a policy fetch reads (`mta_sts::http::parse_response`, `policy_text`).
//!
//! Asserted beyond "no panic": the fixes the audit prints are themselves clean records (a repaired DMARC
//! record parses with no problems); parsed values respect the limits the parsers document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailctl::audit::checks::spf::syntax;
use mailctl::audit::checks::{mta_sts, txt_records};
use mailctl::mta_sts::{MAX_AGE_LIMIT, MAX_BODY, Mode, Policy, http, mx_matches, parse_sts};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 6 {
        0 => spf(&text),
        1 => dmarc(&text),
        2 => dkim(&text, rest),
        3 => {
            if let Ok(id) = parse_sts(&text) {
                assert!(
                    (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
                );
            }
            if let Ok(uris) = mta_sts::parse_tls_rpt(&text) {
                assert!(!uris.is_empty());
            }
        }
        4 => policy(&text),
        _ => response(rest),
    }
});

fn spf(text: &str) {
    let _ = syntax::is_spf(text);
    let record = syntax::parse(text);
    assert!(record.mechanisms.len() + record.errors.len() <= record.terms.len());
    for (term, _) in &record.errors {
        assert!(
            record.terms.contains(term),
            "error for a term that is not in the record"
        );
    }
    let _ = record.all();
    let _ = record.effective_redirect();
    for m in &record.mechanisms {
        let _ = m.kind.queries_dns();
        assert!(matches!(m.qualifier, '+' | '-' | '~' | '?'));
    }
}

fn dmarc(text: &str) {
    let _ = mailctl::dns::txt::has_version(text, "DMARC1");
    let _ = mailctl::dns::dmarc::is_dmarc(text);
    let Ok(d) = txt_records::parse_dmarc(text) else {
        return;
    };
    for tag in ["p", "sp", "np", "psd", "t", "adkim", "aspf", "fo"] {
        let _ = d.get(tag);
    }
    // The fix of `dmarc.historic` is a clean record too, without any historic tag.
    let modern = d.without(txt_records::HISTORIC_DMARC_TAGS);
    match txt_records::parse_dmarc(&modern) {
        Ok(again) => assert!(
            again.problems.is_empty() && again.historic().is_empty(),
            "{modern:?} still has {:?} {:?}",
            again.problems,
            again.historic()
        ),
        Err(e) => panic!("record without historic tags {modern:?} does not parse: {e}"),
    }
    for tag in ["rua", "ruf"] {
        for uri in d.uris(tag) {
            let _ = txt_records::mailto_domain(&uri);
        }
    }
    let _ = d.repaired_has_rua();
    // The record the audit suggests as the fix (`dmarc.tags`) has nothing left to complain about.
    let repaired = d.with("", None);
    match txt_records::parse_dmarc(&repaired) {
        Ok(again) => assert!(
            again.problems.is_empty(),
            "repaired {repaired:?} still has {:?}",
            again.problems
        ),
        Err(e) => panic!("repaired record {repaired:?} does not parse: {e}"),
    }
    for (tag, value) in [
        ("p", Some("quarantine")),
        ("sp", Some("quarantine")),
        ("np", Some("quarantine")),
        ("t", None),
    ] {
        let _ = txt_records::parse_dmarc(&d.with(tag, value));
    }
}

fn dkim(text: &str, raw: &[u8]) {
    let records: Vec<String> = text.split('\n').map(str::to_owned).collect();
    for r in &records {
        let _ = txt_records::is_key_record(r);
    }
    if let Ok(key) = txt_records::parse_key(&records) {
        let _ = key.algorithm;
        let _ = key.testing;
    }
    if let Some(bits) = txt_records::rsa_bits(raw) {
        assert!(bits <= raw.len() * 8);
    }
}

fn policy(text: &str) {
    let mut lines = text.split('\n');
    let host = lines.next().unwrap_or_default();
    if let Ok(p) = Policy::parse(text) {
        assert!(p.max_age <= MAX_AGE_LIMIT);
        assert!(!p.mx.is_empty() || p.mode == Mode::None);
        let _ = p.allows_mx(host);
        let _ = p.mode.as_str();
    }
    for pattern in lines {
        let _ = mx_matches(pattern, host);
        let _ = mx_matches(host, pattern);
    }
}

fn response(buf: &[u8]) {
    for eof in [false, true] {
        match http::parse_response(buf, eof) {
            Ok(Some(response)) => {
                assert!(response.body.len() <= MAX_BODY);
                let _ = response.policy_text().map(|t| Policy::parse(&t));
            }
            Ok(None) => assert!(!eof, "Ok(None) at the end of the connection"),
            Err(_) => {}
        }
    }
}
