//! MTA-STS (RFC 8461) and TLS-RPT (RFC 8460): the DNS half. Fetching the policy over HTTPS (`--fetch-policy`)
//! lives elsewhere and builds on [`sts_txt`].
//!
//! Ids:
//! - `mta_sts.record`: `_mta-sts.DOMAIN` TXT. Absent: INFO (MTA-STS is optional) with the record to publish.
//!   Present: exactly one record starting with `v=STSv1`, of the form `v=STSv1; id=<1-32 letters/digits>`
//!   (extension fields allowed): PASS, else FAIL (senders then ignore the policy).
//! - `tls_rpt.record`: `_smtp._tls.DOMAIN` TXT `v=TLSRPTv1; rua=<mailto:...|https:...>[,...]`. Absent: INFO with
//!   the record to publish; several or malformed: FAIL; else PASS with the report destinations.
//!
//! A lookup that gets no answer is UNKNOWN, never "absent".

use super::txt_records::{has_version, pairs_error, suggested, tag_list, txt, with_fix};
use crate::audit::{Context, Finding, Status};
use crate::dns::Resolver;
use crate::model::{DomainName, printable};

/// What `_mta-sts.DOMAIN` publishes, as a sending MTA reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StsTxt {
    /// No record starting with `v=STSv1`: the domain does not use MTA-STS.
    Absent,
    /// Exactly one valid record.
    Valid {
        /// The policy id (`id=`), which changes whenever the policy does.
        id: String,
        /// The record as published.
        record: String,
    },
    /// Several records, or one that does not parse: senders treat the domain as having no policy.
    Invalid(String),
    /// The lookup got no answer (the reason).
    Failed(String),
}

/// Whether a field name is an `sts-field-name` / `tlsrpt-ext-name`: a letter, then letters, digits, `_-.`.
fn field_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// Parses one `v=STSv1` record into its id.
pub fn parse_sts(record: &str) -> Result<String, String> {
    let tags = tag_list(record);
    if let Some(why) = pairs_error(&tags) {
        return Err(why);
    }
    if let Some((k, _)) = tags.iter().find(|(k, _)| !field_name(k)) {
        return Err(format!("'{k}' is not a field name"));
    }
    let ids: Vec<&String> = tags
        .iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v)
        .collect();
    match ids.as_slice() {
        [] => Err("the required id= field is missing".into()),
        [id] if (1..=32).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Ok(id.to_string())
        }
        [id] => Err(format!("id={id} must be 1 to 32 letters and digits")),
        _ => Err("id= appears more than once".into()),
    }
}

/// Looks `_mta-sts.DOMAIN` up and classifies it (RFC 8461 3.1).
pub async fn sts_txt(resolver: &Resolver, domain: &DomainName) -> StsTxt {
    let all = match txt(resolver, &format!("_mta-sts.{domain}")).await {
        Ok(all) => all,
        Err(e) => return StsTxt::Failed(e),
    };
    let sts: Vec<&String> = all.iter().filter(|r| has_version(r, "STSv1")).collect();
    match sts.as_slice() {
        [] => StsTxt::Absent,
        [one] => match parse_sts(one) {
            Ok(id) => StsTxt::Valid {
                id,
                record: one.to_string(),
            },
            Err(why) => StsTxt::Invalid(format!("\"{}\": {}", printable(one), printable(&why))),
        },
        many => StsTxt::Invalid(format!(
            "{} records start with v=STSv1; senders then assume no MTA-STS (RFC 8461 3.1)",
            many.len()
        )),
    }
}

/// `mta_sts.record`.
pub async fn check(ctx: &Context<'_>, domain: &DomainName) -> Vec<Finding> {
    let name = format!("_mta-sts.{domain}");
    let fixed = |f: Finding| with_fix(f, suggested(ctx, domain, "_mta-sts."));
    vec![match sts_txt(ctx.resolver, domain).await {
        StsTxt::Failed(e) => {
            Finding::unknown_dns("mta_sts.record", &name, "the MTA-STS TXT record", &e)
        }
        StsTxt::Absent => fixed(Finding::new(
            "mta_sts.record",
            Status::Info,
            &name,
            "no MTA-STS (optional): senders may deliver without TLS when an attacker strips STARTTLS",
        )),
        StsTxt::Invalid(why) => fixed(Finding::new(
            "mta_sts.record",
            Status::Fail,
            &name,
            format!("invalid MTA-STS record {why}"),
        )),
        StsTxt::Valid { record, .. } => {
            Finding::new("mta_sts.record", Status::Pass, &name, printable(&record))
        }
    }]
}

/// Checks one `v=TLSRPTv1` record; returns its report destinations.
pub fn parse_tls_rpt(record: &str) -> Result<Vec<String>, String> {
    let tags = tag_list(record);
    if let Some(why) = pairs_error(&tags) {
        return Err(why);
    }
    if let Some((k, _)) = tags.iter().find(|(k, _)| !field_name(k)) {
        return Err(format!("'{k}' is not a field name"));
    }
    let ruas: Vec<&String> = tags
        .iter()
        .filter(|(k, _)| k == "rua")
        .map(|(_, v)| v)
        .collect();
    let rua = match ruas.as_slice() {
        [] => return Err("the required rua= field is missing".into()),
        [rua] => rua,
        _ => return Err("rua= appears more than once".into()),
    };
    let uris: Vec<String> = rua.split(',').map(|u| u.trim().to_string()).collect();
    for uri in &uris {
        let lower = uri.to_ascii_lowercase();
        let ok = match lower.split_once(':') {
            Some(("mailto", rest)) => {
                rest.contains('@') && !rest.starts_with('@') && !rest.ends_with('@')
            }
            Some(("https", rest)) => rest.starts_with("//") && rest.len() > 2,
            _ => false,
        };
        if !ok {
            return Err(format!(
                "rua= holds '{uri}', which is neither mailto:ADDRESS nor https://URL"
            ));
        }
    }
    Ok(uris)
}

/// `tls_rpt.record`.
pub async fn check_tls_rpt(ctx: &Context<'_>, domain: &DomainName) -> Vec<Finding> {
    let name = format!("_smtp._tls.{domain}");
    let fixed = |f: Finding| with_fix(f, suggested(ctx, domain, "_smtp._tls."));
    let all = match txt(ctx.resolver, &name).await {
        Ok(all) => all,
        Err(e) => {
            return vec![Finding::unknown_dns(
                "tls_rpt.record",
                &name,
                "the TLS-RPT TXT record",
                &e,
            )];
        }
    };
    let rpt: Vec<&String> = all.iter().filter(|r| has_version(r, "TLSRPTv1")).collect();
    let fail = |why: String| fixed(Finding::new("tls_rpt.record", Status::Fail, &name, why));
    vec![match rpt.as_slice() {
        [] => fixed(Finding::new(
            "tls_rpt.record",
            Status::Info,
            &name,
            "no TLS-RPT (optional): senders cannot tell you when TLS to your MX fails",
        )),
        [one] => match parse_tls_rpt(one) {
            Ok(uris) => Finding::new(
                "tls_rpt.record",
                Status::Pass,
                &name,
                format!("TLS reports to {}", printable(&uris.join(", "))),
            ),
            Err(why) => fail(format!(
                "invalid TLS-RPT record \"{}\": {}",
                printable(one),
                printable(&why)
            )),
        },
        many => fail(format!(
            "{} records start with v=TLSRPTv1; senders then assume no TLS-RPT (RFC 8460 3)",
            many.len()
        )),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_ids_are_one_to_32_alphanumerics() {
        assert_eq!(
            parse_sts("v=STSv1; id=20240101T000000").as_deref(),
            Ok("20240101T000000")
        );
        assert_eq!(parse_sts("v=STSv1;id=abc; ext=1").as_deref(), Ok("abc"));
        assert!(parse_sts("v=STSv1; id=has-dash").is_err());
        assert!(parse_sts("v=STSv1; id=").is_err());
        assert!(parse_sts(&format!("v=STSv1; id={}", "a".repeat(33))).is_err());
        assert!(parse_sts("v=STSv1").is_err());
        assert!(parse_sts("v=STSv1; junk; id=abc").is_err());
    }

    #[test]
    fn tls_rpt_needs_mailto_or_https_destinations() {
        assert_eq!(
            parse_tls_rpt("v=TLSRPTv1; rua=mailto:tls@example.org,https://r.example/x")
                .unwrap()
                .len(),
            2
        );
        assert!(parse_tls_rpt("v=TLSRPTv1").is_err());
        assert!(parse_tls_rpt("v=TLSRPTv1; rua=tls@example.org").is_err());
        assert!(parse_tls_rpt("v=TLSRPTv1; rua=http://r.example/").is_err());
    }
}
