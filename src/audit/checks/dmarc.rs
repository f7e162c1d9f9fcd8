//! DMARC (RFC 7489): the policy a receiver applies to mail that fails SPF and DKIM alignment.
//!
//! Ids:
//! - `dmarc.record`: `_dmarc.DOMAIN` has exactly one TXT record starting with `v=DMARC1`, and it parses (FAIL when
//!   there is none, several, or an invalid one; receivers then apply no policy at all).
//! - `dmarc.policy`: `p=none` WARN (monitoring only), `quarantine`/`reject` PASS; `sp=` is shown.
//! - `dmarc.pct`: `pct` below 100 WARN (only part of the failing mail gets the policy), else PASS.
//! - `dmarc.reports`: `rua` listed PASS with the addresses; none WARN (you never hear about failures).
//! - `dmarc.external`: one per report domain outside DOMAIN: `DOMAIN._report._dmarc.OTHER` must publish
//!   `v=DMARC1` (RFC 7489 7.1), else receivers send no reports there (FAIL). No finding without such a domain.
//!
//! Every lookup that gets no answer is UNKNOWN, never "missing". The helpers [`txt`] and [`suggested`] are shared
//! with the DKIM and MTA-STS/TLS-RPT checks.

use futures_util::future::join_all;

use crate::audit::{Context, Finding, Status};
use crate::dns::records::{self, Inputs};
use crate::dns::{Answer, RData, RecordType, Resolver};
use crate::model::{DomainName, printable};

/// The TXT records at `name`, each with its strings joined; empty when the name or the type does not exist; the
/// error is the reason the lookup got no answer.
pub(crate) async fn txt(resolver: &Resolver, name: &str) -> Result<Vec<String>, String> {
    match resolver.query(name, RecordType::TXT).await {
        Answer::Records { data, .. } => Ok(data
            .iter()
            .filter_map(|d| match d {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect(),
                ),
                _ => None,
            })
            .collect()),
        Answer::NxDomain | Answer::NoData => Ok(Vec::new()),
        Answer::Failed(reason) => Err(reason),
    }
}

/// A TXT record in zone syntax: `name. 3600 IN TXT "value"`.
pub(crate) fn zone_line(name: &str, value: &str) -> String {
    let name = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    format!(
        "{name} {} IN TXT {}",
        records::TTL,
        crate::dkim::zone_txt_rdata(value)
    )
}

/// `finding` with `fix` when there is one.
pub(crate) fn with_fix(finding: Finding, fix: Option<String>) -> Finding {
    match fix {
        Some(fix) => finding.fix(fix),
        None => finding,
    }
}

/// The TXT record `mailctl dns records` would publish at `PREFIX.DOMAIN.` (e.g. `_dmarc.`), in zone syntax.
pub(crate) fn suggested(ctx: &Context<'_>, domain: &DomainName, prefix: &str) -> Option<String> {
    let mx_host = ctx
        .known
        .hostname
        .as_deref()
        .or(ctx.mx.hosts.first().map(|h| h.name.as_str()))
        .and_then(|h| h.parse::<DomainName>().ok())
        .or_else(|| format!("mail.{domain}").parse().ok())?;
    let set = records::build(&Inputs {
        domain: domain.clone(),
        mx_host,
        ips: ctx.options.ips.clone(),
        dkim: Vec::new(),
        dmarc_policy: "quarantine".into(),
        report_address: format!("postmaster@{domain}"),
        mta_sts_mode: "testing".into(),
    });
    let name = format!("{prefix}{domain}.");
    set.records
        .iter()
        .find(|r| r.name == name && r.rtype == "TXT")
        .map(|r| zone_line(&r.name, &r.value))
}

/// The tags of a `tag=value; ...` record, names lower-cased, both sides trimmed, empty parts skipped. A part
/// without `=` comes back with an empty name and the part as value (see [`pairs_error`]).
pub(crate) fn tag_list(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| match t.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_string()),
            None => (String::new(), t.to_string()),
        })
        .collect()
}

/// The complaint about the first part of a [`tag_list`] that is not `tag=value`, if any.
pub(crate) fn pairs_error(tags: &[(String, String)]) -> Option<String> {
    tags.iter()
        .find(|(k, _)| k.is_empty())
        .map(|(_, v)| format!("'{}' is not a tag=value pair", printable(v)))
}

/// Whether `record` starts with `v=VERSION`, the value matched exactly as DMARC, MTA-STS and TLS-RPT demand
/// (the only records receivers consider at all).
pub(crate) fn has_version(record: &str, version: &str) -> bool {
    tag_list(record)
        .first()
        .is_some_and(|(k, v)| k == "v" && v == version)
}

/// A parsed DMARC record.
struct Dmarc {
    tags: Vec<(String, String)>,
}

impl Dmarc {
    fn get(&self, tag: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == tag)
            .map(|(_, v)| v.as_str())
    }

    fn uris(&self, tag: &str) -> Vec<String> {
        self.get(tag)
            .map(|v| v.split(',').map(|u| u.trim().to_string()).collect())
            .unwrap_or_default()
    }

    /// The record with `tag` set to `value` (appended when absent, removed when `value` is None).
    fn with(&self, tag: &str, value: Option<&str>) -> String {
        let mut tags = self.tags.clone();
        match (tags.iter().position(|(k, _)| k == tag), value) {
            (Some(i), Some(v)) => tags[i].1 = v.to_string(),
            (Some(i), None) => {
                tags.remove(i);
            }
            (None, Some(v)) => tags.push((tag.to_string(), v.to_string())),
            (None, None) => {}
        }
        tags.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The domain of a `mailto:` report URI (`mailto:a@b.example!10m`), lower-cased.
fn mailto_domain(uri: &str) -> Option<String> {
    let rest = uri
        .get(..7)?
        .eq_ignore_ascii_case("mailto:")
        .then(|| &uri[7..])?;
    let address = rest.split('!').next()?;
    let address = percent_encoding::percent_decode_str(address).decode_utf8_lossy();
    let (local, domain) = address.rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

fn parse(record: &str) -> Result<Dmarc, String> {
    let tags = tag_list(record);
    if let Some(why) = pairs_error(&tags) {
        return Err(why);
    }
    for (i, (k, _)) in tags.iter().enumerate() {
        if tags[..i].iter().any(|(j, _)| j == k) {
            return Err(format!("the tag {k}= appears twice"));
        }
    }
    let d = Dmarc { tags };
    let policy =
        |v: &str| ["none", "quarantine", "reject"].contains(&v.to_ascii_lowercase().as_str());
    match d.get("p") {
        None => return Err("the required p= tag is missing".into()),
        Some(p) if !policy(p) => return Err(format!("p={p} is not none, quarantine or reject")),
        Some(_) => {}
    }
    if let Some(sp) = d.get("sp").filter(|v| !policy(v)) {
        return Err(format!("sp={sp} is not none, quarantine or reject"));
    }
    if let Some(pct) = d
        .get("pct")
        .filter(|v| v.parse::<u8>().map_or(true, |n| n > 100))
    {
        return Err(format!("pct={pct} is not a number from 0 to 100"));
    }
    for tag in ["adkim", "aspf"] {
        if let Some(v) = d
            .get(tag)
            .filter(|v| !["r", "s"].contains(&v.to_ascii_lowercase().as_str()))
        {
            return Err(format!("{tag}={v} is not r or s"));
        }
    }
    for tag in ["rua", "ruf"] {
        for uri in d.uris(tag) {
            let mailto = uri
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("mailto:"));
            if (mailto && mailto_domain(&uri).is_none()) || (!mailto && !uri.contains(':')) {
                return Err(format!(
                    "{tag}= holds '{uri}', which is not a mailto: or other URI"
                ));
            }
        }
    }
    Ok(d)
}

/// Whether a report domain belongs to the audited domain (itself, a subdomain or a parent).
fn same_domain(other: &str, domain: &DomainName) -> bool {
    let d = domain.as_str();
    other == d || other.ends_with(&format!(".{d}")) || d.ends_with(&format!(".{other}"))
}

/// Checks `_dmarc.DOMAIN` and, for external report destinations, their authorization records.
pub async fn check(ctx: &Context<'_>, domain: &DomainName) -> Vec<Finding> {
    let name = format!("_dmarc.{domain}");
    let fix = suggested(ctx, domain, "_dmarc.");
    let no_record = |detail: String| {
        vec![with_fix(
            Finding::new("dmarc.record", Status::Fail, &name, detail),
            fix.clone(),
        )]
    };
    let all = match txt(ctx.resolver, &name).await {
        Ok(all) => all,
        Err(e) => {
            return vec![Finding::unknown_dns(
                "dmarc.record",
                &name,
                "the DMARC TXT record",
                &e,
            )];
        }
    };
    let (dmarc, other): (Vec<&String>, Vec<&String>) =
        all.iter().partition(|r| has_version(r, "DMARC1"));
    let record = match dmarc.as_slice() {
        [] if other.is_empty() => {
            return no_record(
                "no DMARC record: receivers apply no policy to mail forged in your name".into(),
            );
        }
        [] => {
            let shown: Vec<String> = other
                .iter()
                .map(|r| format!("\"{}\"", printable(r)))
                .collect();
            return no_record(format!(
                "no TXT record here starts with v=DMARC1 (found {}): receivers apply no policy",
                shown.join(", ")
            ));
        }
        [one] => one.as_str(),
        many => {
            return no_record(format!(
                "{} DMARC records: receivers ignore them all (RFC 7489 6.6.3); keep exactly one",
                many.len()
            ));
        }
    };
    let d = match parse(record) {
        Ok(d) => d,
        Err(why) => {
            return no_record(format!(
                "invalid DMARC record \"{}\": {}",
                printable(record),
                printable(&why)
            ));
        }
    };
    let fixed = |tag: &str, value: Option<&str>| zone_line(&name, &d.with(tag, value));
    let mut findings = vec![Finding::new(
        "dmarc.record",
        Status::Pass,
        &name,
        printable(record),
    )];

    let p = d.get("p").unwrap_or("none").to_ascii_lowercase();
    let sp = d
        .get("sp")
        .map(|s| format!(", subdomains sp={s}"))
        .unwrap_or_default();
    findings.push(if p == "none" {
        Finding::new(
            "dmarc.policy",
            Status::Warn,
            &name,
            format!("p=none{sp}: monitoring only, receivers deliver forged mail as usual"),
        )
        .fix(fixed("p", Some("quarantine")))
    } else {
        Finding::new("dmarc.policy", Status::Pass, &name, format!("p={p}{sp}"))
    });

    let pct: u8 = d.get("pct").and_then(|v| v.parse().ok()).unwrap_or(100);
    findings.push(if pct < 100 {
        Finding::new(
            "dmarc.pct",
            Status::Warn,
            &name,
            format!("pct={pct}: the policy applies to only {pct}% of failing mail"),
        )
        .fix(fixed("pct", None))
    } else {
        Finding::new(
            "dmarc.pct",
            Status::Pass,
            &name,
            "the policy applies to all failing mail",
        )
    });

    let (rua, ruf) = (d.uris("rua"), d.uris("ruf"));
    let mut shown = Vec::new();
    if !rua.is_empty() {
        shown.push(format!("aggregate reports to {}", rua.join(", ")));
    }
    if !ruf.is_empty() {
        shown.push(format!("failure reports to {}", ruf.join(", ")));
    }
    findings.push(if rua.is_empty() {
        let what = if ruf.is_empty() {
            "no rua= report address: you will never hear about failures".to_string()
        } else {
            format!(
                "no rua= (aggregate reports); only {}, which few receivers send",
                shown.join("")
            )
        };
        Finding::new("dmarc.reports", Status::Warn, &name, what).fix(fixed(
            "rua",
            Some(&records::mailto(&format!("postmaster@{domain}"))),
        ))
    } else {
        Finding::new(
            "dmarc.reports",
            Status::Pass,
            &name,
            printable(&shown.join("; ")),
        )
    });

    let mut external: Vec<String> = rua
        .iter()
        .chain(&ruf)
        .filter_map(|u| mailto_domain(u))
        .filter(|o| !same_domain(o, domain))
        .collect();
    external.sort();
    external.dedup();
    findings.extend(join_all(external.iter().map(|o| authorization(ctx, domain, o))).await);
    findings
}

/// `dmarc.external` for one outside report domain.
async fn authorization(ctx: &Context<'_>, domain: &DomainName, other: &str) -> Finding {
    let name = format!("{domain}._report._dmarc.{other}");
    match txt(ctx.resolver, &name).await {
        Err(e) => Finding::unknown_dns("dmarc.external", &name, "the report authorization record", &e),
        Ok(found) if found.iter().any(|r| has_version(r, "DMARC1")) => Finding::new(
            "dmarc.external",
            Status::Pass,
            &name,
            format!("{} accepts DMARC reports for {domain}", printable(other)),
        ),
        Ok(_) => Finding::new(
            "dmarc.external",
            Status::Fail,
            &name,
            format!(
                "reports go to {}, which does not authorize them for {domain} (RFC 7489 7.1): receivers \
                 send none there",
                printable(other)
            ),
        )
        .fix(zone_line(&name, "v=DMARC1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dmarc_records_parse_and_reject_bad_values() {
        let d = parse("v=DMARC1; p=reject; pct=50; rua=mailto:a@x.example!10m, mailto:b@y.example")
            .unwrap();
        assert_eq!(d.get("pct"), Some("50"));
        assert_eq!(d.uris("rua").len(), 2);
        assert_eq!(
            d.with("pct", None),
            "v=DMARC1; p=reject; rua=mailto:a@x.example!10m, mailto:b@y.example"
        );
        assert!(parse("v=DMARC1; rua=mailto:a@x.example").is_err());
        assert!(parse("v=DMARC1; p=block").is_err());
        assert!(parse("v=DMARC1; p=none; pct=101").is_err());
        assert!(parse("v=DMARC1; p=none; p=reject").is_err());
        assert!(parse("v=DMARC1; p=none; rua=postmaster").is_err());
        assert!(has_version("v=DMARC1;p=none", "DMARC1"));
        assert!(!has_version("v=DMARC1 p=none", "DMARC1"));
        assert!(!has_version("v=dmarc1; p=none", "DMARC1"));
    }

    #[test]
    fn report_domains_come_from_mailto_uris() {
        assert_eq!(
            mailto_domain("mailto:a@X.example!10m").as_deref(),
            Some("x.example")
        );
        assert_eq!(
            mailto_domain("mailto:a%40b@y.example").as_deref(),
            Some("y.example")
        );
        assert_eq!(mailto_domain("https://r.example/"), None);
        let d: DomainName = "sub.example.org".parse().unwrap();
        assert!(same_domain("example.org", &d) && same_domain("x.sub.example.org", &d));
        assert!(!same_domain("other.example", &d));
    }
}
