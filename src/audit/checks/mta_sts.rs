//! MTA-STS (RFC 8461) and TLS-RPT (RFC 8460): the DNS half. The `_mta-sts` record is read as a sender reads it
//! ([`crate::mta_sts::sts_txt`], shared with outbound delivery); fetching the policy over HTTPS
//! (`--fetch-policy`) is `mta_sts_policy.rs`.
//!
//! Ids:
//! - `mta_sts.record`: `_mta-sts.DOMAIN` TXT. Absent: INFO (MTA-STS is optional) with the record to publish.
//!   Present: exactly one record starting with `v=STSv1`, of the form `v=STSv1; id=<1-32 letters/digits>`
//!   (extension fields allowed): PASS, else FAIL (senders then ignore the policy).
//! - `tls_rpt.record`: `_smtp._tls.DOMAIN` TXT `v=TLSRPTv1; rua=<mailto:...|https:...>[,...]`. Absent: INFO with
//!   the record to publish; several or malformed: FAIL; else PASS with the report destinations.
//!
//! A lookup that gets no answer is UNKNOWN, never "absent".

use super::txt_records::{suggested, with_fix};
use crate::audit::{Context, Finding, Status};
use crate::dns::txt::{has_version, pairs_error, tag_list};
use crate::model::{DomainName, printable};
use crate::mta_sts::{StsTxt, field_name, sts_txt};

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
    let all = match ctx.resolver.txt_or_reason(&name).await {
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
