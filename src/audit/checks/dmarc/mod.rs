//! DMARC (RFC 9989, which obsoletes RFC 7489): the policy a receiver applies to mail that fails SPF and DKIM
//! alignment, found as receivers find it: with the DNS tree walk of [`crate::dns::dmarc`], mailctl's one walk,
//! which follows the one mail-auth runs for `mailctl serve`.
//!
//! The walk queries `_dmarc.DOMAIN`, then its parents up to the top-level domain (at most eight names), and stops
//! at a record with `psd=y` or `psd=n`. What it finds gives the organizational domain (`psd=n` names it, `psd=y`
//! puts it one label below a public suffix domain, else it is the highest name with a record) and the record that
//! applies: DOMAIN's own (`p=`), else the organizational domain's (`sp=`, or `np=` when DOMAIN does not exist),
//! else a public suffix domain's. `t=y` lowers the policy one step.
//!
//! Ids:
//! - `dmarc.record`: the record that applies. DOMAIN's own PASS; inherited INFO naming the record and the tag that
//!   applies; a public suffix domain's record WARN (its operator sets the policy and gets the reports; fix: a
//!   record of your own; the PSD's tags and reports are not judged). FAIL when the walk finds no record, several
//!   DMARC records at the applying name, a record that receivers discard (`p=`/`sp=`/`np=` invalid or repeated,
//!   `adkim=`/`aspf=`/`fo=` invalid; also above DOMAIN, which breaks DMARC for every name below it), or one
//!   without `p=` and without a `mailto:` `rua=` (DMARC does not apply; with one, it reads as `p=none`).
//!   UNKNOWN when a lookup on the walk got no answer.
//! - `dmarc.org_domain`: INFO: the organizational domain and what decided it (`psd=n`, `psd=y`, the highest
//!   record on the walk). Report addresses are judged against it (`dmarc.external`), and relaxed alignment
//!   accepts SPF and DKIM domains under it.
//! - `dmarc.tags`: WARN naming each tag or report URI receivers skip (a `rua`/`ruf` entry that is not a URI,
//!   `psd`/`t` not y/n, a repeated tag, a part that is not `tag=value`); fix: the record without them (a bare
//!   address in `rua`/`ruf` gets `mailto:`). No finding when every tag is valid. `psd`, `np` and `t` are tags
//!   of RFC 9989; tags no receiver knows are ignored, not flagged.
//! - `dmarc.historic`: INFO naming `pct`, `rf` and `ri`: RFC 9989 made them historic and receivers following it
//!   ignore them (`pct=0` no longer means "testing": `t=y` does); fix: the record without them.
//! - `dmarc.policy`: the policy receivers apply (after `t=y`): `none` WARN (monitoring only), `quarantine` /
//!   `reject` PASS; the tags behind it are shown.
//! - `dmarc.reports`: valid `rua` URIs PASS with the addresses; none WARN (you never hear about failures).
//! - `dmarc.external`: one per report domain whose organizational domain (by the same walk) differs from that of
//!   the policy domain (the one publishing the applying record): `POLICYDOMAIN._report._dmarc.OTHER` must
//!   publish `v=DMARC1` (RFC 7489 7.1, kept by DMARCbis), else receivers send no reports there (FAIL). UNKNOWN
//!   when a lookup for it got no answer. No finding without such a domain.
//!
//! Findings about the record's content (all but `dmarc.record` and `dmarc.org_domain`) name the record they
//! judge: `_dmarc.DOMAIN`, or the parent's when inherited. Every lookup that gets no answer is UNKNOWN, never
//! "missing".

mod policy;
mod reports;

use super::txt_records::{parse_dmarc, suggested, with_fix, zone_line};
use crate::audit::{Context, Finding, Status};
use crate::dns::dmarc::{self as walk, Basis, Discovery, Verdict, WalkError};
use crate::model::{DomainName, printable};

/// Where the applying record was found.
struct Owner<'a> {
    /// `_dmarc.OWNER`.
    name: String,
    /// The domain that publishes it: the audited one or a parent.
    domain: &'a str,
    /// Not the audited domain's own record.
    inherited: bool,
    /// Neither the audited domain's nor its organizational domain's record: a public suffix domain's, which its
    /// operator, not the domain's, controls.
    foreign: bool,
}

impl Owner<'_> {
    /// ` at _dmarc.OWNER (inherited: NAME has none)` for an inherited record, else nothing.
    fn here(&self, name: &str) -> String {
        match self.inherited {
            true => format!(" at {} (inherited: {name} has none)", self.name),
            false => String::new(),
        }
    }
}

/// The `dmarc.record` detail when the walk found no DMARC record.
fn absent(found: &Discovery) -> String {
    let steps = &found.walk.steps;
    let others: Vec<String> = steps
        .first()
        .map(|s| {
            s.txt
                .iter()
                .map(|r| format!("\"{}\"", printable(r)))
                .collect()
        })
        .unwrap_or_default();
    let mut what = if others.is_empty() {
        "no DMARC record".to_string()
    } else {
        format!(
            "no TXT record here starts with v=DMARC1 (found {})",
            others.join(", ")
        )
    };
    let parents: Vec<String> = steps.iter().skip(1).map(|s| s.name()).collect();
    if !parents.is_empty() {
        what = format!("{what}, nor at {}", parents.join(", "));
    }
    format!("{what}: receivers apply no policy to mail forged in your name")
}

/// `dmarc.record` FAIL for a record receivers discard, found at `at` on the walk from `name`'s domain.
fn invalid(name: &str, at: &str, record: &str, fix: Option<String>) -> Finding {
    let why = match parse_dmarc(record) {
        Err(why) => printable(&why),
        Ok(_) => "receivers (mail-auth, as in mailctl serve) cannot parse it".to_string(),
    };
    let record = printable(record);
    if at == name {
        let detail = format!(
            "invalid DMARC record \"{record}\": {why}: receivers discard it and apply no policy"
        );
        return with_fix(
            Finding::new("dmarc.record", Status::Fail, name, detail),
            fix,
        );
    }
    let detail = format!(
        "invalid DMARC record at {at}, on the DNS tree walk from {name}: \"{record}\": {why}: receivers stop \
         there and apply no DMARC policy to any name below it; repair {at}"
    );
    Finding::new("dmarc.record", Status::Fail, name, detail)
}

/// `dmarc.org_domain`: the organizational domain and what decided it.
fn org_domain(domain: &DomainName, found: &Discovery) -> Finding {
    let why = match found.walk.organizational_basis() {
        Some((step, Basis::PsdNo)) => format!("{} says psd=n", step.name()),
        Some((step, Basis::PsdYes)) => format!(
            "one label below the public suffix domain {} ({} says psd=y)",
            step.domain,
            step.name()
        ),
        Some((step, Basis::Highest)) => format!(
            "{} is the highest DMARC record on the DNS tree walk",
            step.name()
        ),
        None => "no DMARC record on the DNS tree walk".to_string(),
    };
    Finding::new(
        "dmarc.org_domain",
        Status::Info,
        domain.to_string(),
        format!("organizational domain {}: {why}", found.organizational),
    )
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
    let found = match walk::discover(ctx.resolver, domain.as_str()).await {
        Ok(found) => found,
        Err(WalkError::Lookup {
            name: failed,
            reason,
        }) => {
            let what = match failed == name {
                true => "the DMARC TXT record".to_string(),
                false => format!("{failed} on the DMARC tree walk"),
            };
            return vec![Finding::unknown_dns("dmarc.record", &name, &what, &reason)];
        }
        Err(WalkError::Invalid { name: at, record }) => {
            return vec![invalid(&name, &at, &record, fix)];
        }
    };
    let (step, applied) = match &found.verdict {
        Verdict::NoRecord => return fail(absent(&found)),
        Verdict::NoPolicy(step) => (*step, None),
        Verdict::Applies(applied) => (applied.step, Some(applied)),
    };
    let s = &found.walk.steps[step];
    let at = Owner {
        name: s.name(),
        domain: &s.domain,
        inherited: s.domain != found.walk.start,
        foreign: s.domain != found.walk.start && s.domain != found.organizational,
    };
    let here = at.here(&name);
    let dmarc: Vec<&String> = s.txt.iter().filter(|r| walk::is_dmarc(r)).collect();
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
    let Some(applied) = applied else {
        let detail = format!(
            "the DMARC record{here} has no p= and no mailto: rua= address: receivers apply no policy \
             (RFC 9989 4.10.1)"
        );
        let fix = zone_line(&at.name, &d.with("p", Some("quarantine")));
        return vec![Finding::new("dmarc.record", Status::Fail, &name, detail).fix(fix)];
    };
    let mut findings = policy::findings(&name, &at, record, &d, applied, fix);
    // Right after `dmarc.record`, which names the record the organizational domain helped choose.
    findings.insert(1, org_domain(domain, &found));
    // A public suffix domain's record is not the domain's to fix: its tags and reports are not judged.
    if !at.foreign {
        findings.push(reports::reports(&at, &d));
        findings.extend(reports::external(ctx, &found, &at, &d).await);
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::super::txt_records::mailto_domain;
    use super::*;
    use crate::dns::txt::has_version;

    #[test]
    fn dmarc_records_parse_and_reject_bad_values() {
        let d = parse_dmarc(
            "v=DMARC1; p=reject; pct=50; rua=mailto:a@x.example!10m, mailto:b@y.example",
        )
        .unwrap();
        assert_eq!(d.get("pct"), Some("50"));
        assert_eq!(d.historic(), ["pct=50"]);
        assert_eq!(d.uris("rua").len(), 2);
        assert!(d.problems.is_empty());
        assert_eq!(
            d.without(&["pct", "rf", "ri"]),
            "v=DMARC1; p=reject; rua=mailto:a@x.example!10m, mailto:b@y.example"
        );
        // Without p= the record may still apply (as p=none, with a rua=): the walk decides, not the parser.
        assert!(parse_dmarc("v=DMARC1; rua=mailto:a@x.example").is_ok());
        assert!(parse_dmarc("v=DMARC1; p=block").is_err());
        assert!(parse_dmarc("v=DMARC1; p=none; sp=block").is_err());
        assert!(parse_dmarc("v=DMARC1; p=none; np=block").is_err());
        assert!(parse_dmarc("v=DMARC1; p=none; p=reject").is_err());
        assert!(parse_dmarc("v=DMARC1; p=none; adkim=x").is_err());
        assert!(parse_dmarc("v=DMARC1; p=none; fo=2").is_err());
        assert!(has_version("v=DMARC1;p=none", "DMARC1"));
        assert!(!has_version("v=DMARC1 p=none", "DMARC1"));
        assert!(!has_version("v=dmarc1; p=none", "DMARC1"));
    }

    #[test]
    fn rfc_9989_tags_are_valid_and_historic_ones_are_not_judged() {
        let d = parse_dmarc("v=DMARC1; p=reject; np=reject; psd=n; t=y; pct=150; ri=x; rf=afrf")
            .unwrap();
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(d.historic(), ["pct=150", "ri=x", "rf=afrf"]);
        assert_eq!(
            d.without(&["pct", "rf", "ri"]),
            "v=DMARC1; p=reject; np=reject; psd=n; t=y"
        );
        let d = parse_dmarc("v=DMARC1; p=reject; psd=maybe; t=yes").unwrap();
        assert_eq!(d.problems.len(), 2, "{:?}", d.problems);
        assert_eq!(d.with("", None), "v=DMARC1; p=reject");
    }

    #[test]
    fn invalid_optional_tags_are_ignored_and_named() {
        let d = parse_dmarc("v=DMARC1; p=none; aspf=s; junk; rua=dmarc@x.example").unwrap();
        assert_eq!(d.problems.len(), 2, "{:?}", d.problems);
        assert!(d.problems[0].starts_with("'junk'") && d.problems[1].starts_with("rua="));
        assert_eq!(d.get("aspf"), Some("s"));
        assert!(d.uris("rua").is_empty() && d.repaired_has_rua());
        assert_eq!(
            d.with("", None),
            "v=DMARC1; p=none; aspf=s; rua=mailto:dmarc@x.example"
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
    }
}
