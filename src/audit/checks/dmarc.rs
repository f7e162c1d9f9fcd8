//! DMARC (RFC 7489): the policy a receiver applies to mail that fails SPF and DKIM alignment.
//!
//! The policy is `_dmarc.DOMAIN`; when that name holds no DMARC record, receivers use the organizational
//! domain's (RFC 7489 6.6.3), its `sp=` if present, else its `p=`. Without a public-suffix list the
//! organizational domain is approximated: each parent of DOMAIN with at least two labels is tried, nearest first,
//! and the first one holding a DMARC record is used (so `example.co.uk`-style suffixes are treated as domains).
//!
//! Ids:
//! - `dmarc.record`: exactly one TXT record starting with `v=DMARC1` at `_dmarc.DOMAIN`, with a valid `p=` (and
//!   `sp=` when present): PASS. Inherited from a parent: INFO naming it and the tag that applies. FAIL when
//!   there is none here nor at a parent, several, or `p=`/`sp=` is missing, invalid or repeated (receivers
//!   then apply no policy); a failed lookup, here or at a parent that would decide, is UNKNOWN.
//! - `dmarc.tags`: WARN naming each other tag or report URI that is invalid or repeated (`pct`, `adkim`, `aspf`,
//!   `fo`, `ri`, `rua`/`ruf` URIs, parts that are not `tag=value`): receivers ignore those and apply the rest
//!   (RFC 7489 6.3); fix: the record without them (a bare address in `rua`/`ruf` gets `mailto:`). No finding
//!   when every tag is valid.
//! - `dmarc.policy`: the applying policy `none` WARN (monitoring only), `quarantine`/`reject` PASS; `sp=` is shown.
//! - `dmarc.pct`: `pct` below 100 WARN (only part of the failing mail gets the policy), else PASS.
//! - `dmarc.reports`: valid `rua` URIs PASS with the addresses; none WARN (you never hear about failures).
//! - `dmarc.external`: one per report domain outside the policy domain's organizational domain (approximated as
//!   its last two labels): `POLICYDOMAIN._report._dmarc.OTHER` must publish `v=DMARC1` (RFC 7489 7.1), else
//!   receivers send no reports there (FAIL). No finding without such a domain.
//!
//! Findings about the record's content (all but `dmarc.record`) name the record they judge: `_dmarc.DOMAIN`, or
//! the parent's when inherited. Every lookup that gets no answer is UNKNOWN, never "missing".

use futures_util::future::join_all;

use super::txt_records::{Dmarc, mailto_domain, parse_dmarc, suggested, with_fix, zone_line};
use crate::audit::{Context, Finding, Status};
use crate::dns::txt::has_version;
use crate::model::{DomainName, printable};
use crate::records;

/// The last two labels of `name`: its organizational domain, approximated without a public-suffix list.
fn organizational(name: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').collect();
    labels[labels.len().saturating_sub(2)..].join(".")
}

/// `domain`, then each parent with at least two labels, nearest first: where a policy for `domain` may be.
fn policy_domains(domain: &str) -> Vec<String> {
    let labels: Vec<&str> = domain.split('.').collect();
    let parents = labels.len().saturating_sub(1).max(1);
    (0..parents).map(|i| labels[i..].join(".")).collect()
}

/// Whether a report domain belongs to the policy domain's organization (same organizational domain).
fn same_domain(other: &str, domain: &str) -> bool {
    organizational(other) == organizational(domain)
}

/// Where the applying record was found.
struct Owner<'a> {
    /// `_dmarc.OWNER`.
    name: String,
    /// The domain that publishes it: the audited one or a parent.
    domain: &'a str,
    inherited: bool,
}

/// The `dmarc.record` detail when neither DOMAIN nor a parent has a DMARC record.
fn absent(others: &[String], parents: &[String]) -> String {
    let mut what = if others.is_empty() {
        "no DMARC record".to_string()
    } else {
        let shown: Vec<String> = others
            .iter()
            .map(|r| format!("\"{}\"", printable(r)))
            .collect();
        format!(
            "no TXT record here starts with v=DMARC1 (found {})",
            shown.join(", ")
        )
    };
    if !parents.is_empty() {
        let names: Vec<String> = parents.iter().map(|p| format!("_dmarc.{p}")).collect();
        what = format!("{what}, nor at {}", names.join(", "));
    }
    format!("{what}: receivers apply no policy to mail forged in your name")
}

/// Checks the DMARC record that applies to DOMAIN (its own or inherited) and, for external report destinations,
/// their authorization records.
pub async fn check(ctx: &Context<'_>, domain: &DomainName) -> Vec<Finding> {
    let name = format!("_dmarc.{domain}");
    let fix = suggested(ctx, domain, "_dmarc.");
    let fail = |detail: String| {
        vec![with_fix(
            Finding::new("dmarc.record", Status::Fail, &name, detail),
            fix.clone(),
        )]
    };
    // All candidates at once: the parents cost nothing for a two-label domain and save a round trip otherwise.
    let owners = policy_domains(domain.as_str());
    let names: Vec<String> = owners.iter().map(|o| format!("_dmarc.{o}")).collect();
    let answers = join_all(names.iter().map(|n| ctx.resolver.txt_or_reason(n))).await;
    let (mut others, mut found) = (Vec::new(), None);
    for (i, (owner, answer)) in owners.iter().zip(answers).enumerate() {
        let all = match answer {
            Ok(all) => all,
            Err(e) => {
                let what = match i {
                    0 => "the DMARC TXT record".to_string(),
                    _ => format!("the parent's DMARC record _dmarc.{owner}"),
                };
                return vec![Finding::unknown_dns("dmarc.record", &name, &what, &e)];
            }
        };
        let (dmarc, other): (Vec<String>, Vec<String>) =
            all.into_iter().partition(|r| has_version(r, "DMARC1"));
        if i == 0 {
            others = other;
        }
        if !dmarc.is_empty() {
            found = Some((owner.as_str(), i > 0, dmarc));
            break;
        }
    }
    let Some((owner, inherited, dmarc)) = found else {
        return fail(absent(&others, &owners[1..]));
    };
    let here = match inherited {
        true => format!(" at _dmarc.{owner} (inherited: {name} has none)"),
        false => String::new(),
    };
    let record = match dmarc.as_slice() {
        [one] => one.as_str(),
        many => {
            return fail(format!(
                "{} DMARC records{here}: receivers ignore them all (RFC 7489 6.6.3); keep exactly one",
                many.len()
            ));
        }
    };
    let d = match parse_dmarc(record) {
        Ok(d) => d,
        Err(why) => {
            return fail(format!(
                "invalid DMARC record{here} \"{}\": {}",
                printable(record),
                printable(&why)
            ));
        }
    };
    let at = Owner {
        name: format!("_dmarc.{owner}"),
        domain: owner,
        inherited,
    };
    let mut findings = record_findings(&name, &at, record, &d);
    findings.push(reports(&at, &d));
    let (rua, ruf) = (d.uris("rua"), d.uris("ruf"));
    let mut external: Vec<String> = rua
        .iter()
        .chain(&ruf)
        .filter_map(|u| mailto_domain(u))
        .filter(|o| !same_domain(o, owner))
        .collect();
    external.sort();
    external.dedup();
    findings.extend(join_all(external.iter().map(|o| authorization(ctx, owner, o))).await);
    findings
}

/// `dmarc.record` (PASS or inherited INFO), `dmarc.tags`, `dmarc.policy` and `dmarc.pct` for a record that parsed.
fn record_findings(name: &str, at: &Owner<'_>, record: &str, d: &Dmarc) -> Vec<Finding> {
    let fixed = |tag: &str, value: Option<&str>| zone_line(&at.name, &d.with(tag, value));
    // Subdomains get the organizational record's sp= when it has one, else its p= (RFC 7489 6.6.3).
    let tag = match at.inherited && d.get("sp").is_some() {
        true => "sp",
        false => "p",
    };
    let policy = d.get(tag).unwrap_or("none").to_ascii_lowercase();
    let mut findings = vec![match at.inherited {
        true => Finding::new(
            "dmarc.record",
            Status::Info,
            name,
            format!(
                "inherited from {} (policy {tag}={policy} applies): \"{}\"",
                at.name,
                printable(record)
            ),
        ),
        false => Finding::new("dmarc.record", Status::Pass, name, printable(record)),
    }];
    if !d.problems.is_empty() {
        let detail = format!(
            "receivers ignore {} and apply the rest of the record (RFC 7489 6.3): {}",
            if d.problems.len() == 1 {
                "this tag"
            } else {
                "these tags"
            },
            d.problems.join("; ")
        );
        // `with` of nothing: the record with the ignored tags repaired or dropped.
        findings
            .push(Finding::new("dmarc.tags", Status::Warn, &at.name, detail).fix(fixed("", None)));
    }

    let shown = match at.inherited {
        true => format!("{tag}={policy} (inherited from {})", at.name),
        false => {
            let sp = d.get("sp").map(|s| format!(", subdomains sp={s}"));
            format!("p={policy}{}", sp.unwrap_or_default())
        }
    };
    findings.push(if policy == "none" {
        Finding::new(
            "dmarc.policy",
            Status::Warn,
            &at.name,
            format!("{shown}: monitoring only, receivers deliver forged mail as usual"),
        )
        .fix(fixed(
            if at.inherited { "sp" } else { "p" },
            Some("quarantine"),
        ))
    } else {
        Finding::new("dmarc.policy", Status::Pass, &at.name, printable(&shown))
    });

    let pct: u8 = d.get("pct").and_then(|v| v.parse().ok()).unwrap_or(100);
    findings.push(if pct < 100 {
        Finding::new(
            "dmarc.pct",
            Status::Warn,
            &at.name,
            format!("pct={pct}: the policy applies to only {pct}% of failing mail"),
        )
        .fix(fixed("pct", None))
    } else {
        Finding::new(
            "dmarc.pct",
            Status::Pass,
            &at.name,
            "the policy applies to all failing mail",
        )
    });
    findings
}

/// `dmarc.reports`: the valid `rua`/`ruf` destinations.
fn reports(at: &Owner<'_>, d: &Dmarc) -> Finding {
    let (rua, ruf) = (d.uris("rua"), d.uris("ruf"));
    let mut shown = Vec::new();
    if !rua.is_empty() {
        shown.push(format!("aggregate reports to {}", rua.join(", ")));
    }
    if !ruf.is_empty() {
        shown.push(format!("failure reports to {}", ruf.join(", ")));
    }
    if !rua.is_empty() {
        return Finding::new(
            "dmarc.reports",
            Status::Pass,
            &at.name,
            printable(&shown.join("; ")),
        );
    }
    let what = if d.get("rua").is_some() {
        "rua= holds no usable address (see dmarc.tags): you will never hear about failures"
            .to_string()
    } else if ruf.is_empty() {
        "no rua= report address: you will never hear about failures".to_string()
    } else {
        format!(
            "no rua= (aggregate reports); only {}, which few receivers send",
            printable(&shown.join(""))
        )
    };
    // When the repair of a malformed rua= yields an address, that is the fix (as for dmarc.tags).
    let fix = match d.repaired_has_rua() {
        true => d.with("", None),
        false => d.with(
            "rua",
            Some(&records::mailto(&format!("postmaster@{}", at.domain))),
        ),
    };
    Finding::new("dmarc.reports", Status::Warn, &at.name, what).fix(zone_line(&at.name, &fix))
}

/// `dmarc.external` for one outside report domain of the record published by `owner`.
async fn authorization(ctx: &Context<'_>, owner: &str, other: &str) -> Finding {
    let name = format!("{owner}._report._dmarc.{other}");
    match ctx.resolver.txt_or_reason(&name).await {
        Err(e) => Finding::unknown_dns("dmarc.external", &name, "the report authorization record", &e),
        Ok(found) if found.iter().any(|r| has_version(r, "DMARC1")) => Finding::new(
            "dmarc.external",
            Status::Pass,
            &name,
            format!("{} accepts DMARC reports for {owner}", printable(other)),
        ),
        Ok(_) => Finding::new(
            "dmarc.external",
            Status::Fail,
            &name,
            format!(
                "reports go to {}, which does not authorize them for {owner} (RFC 7489 7.1): receivers \
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
        let d = parse_dmarc(
            "v=DMARC1; p=reject; pct=50; rua=mailto:a@x.example!10m, mailto:b@y.example",
        )
        .unwrap();
        assert_eq!(d.get("pct"), Some("50"));
        assert_eq!(d.uris("rua").len(), 2);
        assert!(d.problems.is_empty());
        assert_eq!(
            d.with("pct", None),
            "v=DMARC1; p=reject; rua=mailto:a@x.example!10m, mailto:b@y.example"
        );
        assert!(parse_dmarc("v=DMARC1; rua=mailto:a@x.example").is_err());
        assert!(parse_dmarc("v=DMARC1; p=block").is_err());
        assert!(parse_dmarc("v=DMARC1; p=none; sp=block").is_err());
        assert!(parse_dmarc("v=DMARC1; p=none; p=reject").is_err());
        assert!(has_version("v=DMARC1;p=none", "DMARC1"));
        assert!(!has_version("v=DMARC1 p=none", "DMARC1"));
        assert!(!has_version("v=dmarc1; p=none", "DMARC1"));
    }

    #[test]
    fn invalid_optional_tags_are_ignored_and_named() {
        let d =
            parse_dmarc("v=DMARC1; p=none; pct=101; adkim=x; junk; rua=dmarc@x.example").unwrap();
        assert_eq!(d.problems.len(), 4, "{:?}", d.problems);
        assert!(d.problems[0].starts_with("pct=101") && d.problems[3].starts_with("rua="));
        assert_eq!((d.get("pct"), d.get("adkim")), (None, None));
        assert!(d.uris("rua").is_empty() && d.repaired_has_rua());
        assert_eq!(
            d.with("", None),
            "v=DMARC1; p=none; rua=mailto:dmarc@x.example"
        );
        let d =
            parse_dmarc("v=DMARC1; p=none; rua=postmaster, mailto:a@b.example; rua=x:y").unwrap();
        assert_eq!(d.uris("rua"), ["mailto:a@b.example"]);
        assert_eq!(d.with("", None), "v=DMARC1; p=none; rua=mailto:a@b.example");
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
        let d = "sub.example.org";
        assert!(same_domain("example.org", d) && same_domain("x.sub.example.org", d));
        assert!(same_domain("reports.example.org", d));
        assert!(!same_domain("other.example", d) && !same_domain("example.org.evil", d));
    }

    #[test]
    fn policy_domains_walk_up_to_two_labels() {
        assert_eq!(
            policy_domains("a.b.example.org"),
            ["a.b.example.org", "b.example.org", "example.org"]
        );
        assert_eq!(policy_domains("example.org"), ["example.org"]);
        assert_eq!(policy_domains("localhost"), ["localhost"]);
    }
}
