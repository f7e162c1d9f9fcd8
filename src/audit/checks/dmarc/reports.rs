//! Where the applying record sends reports: `dmarc.reports` (are any requested) and `dmarc.external` (do the
//! destinations outside the policy domain's organization accept them).

use futures_util::future::join_all;

use super::Owner;
use crate::audit::checks::txt_records::{Dmarc, mailto_domain, zone_line};
use crate::audit::{Context, Finding, Status};
use crate::dns::dmarc::{self as walk, Discovery, WalkError};
use crate::dns::txt::has_version;
use crate::model::printable;
use crate::records;

/// `dmarc.reports`: the valid `rua`/`ruf` destinations.
pub(super) fn reports(at: &Owner<'_>, d: &Dmarc) -> Finding {
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

/// `dmarc.external` for every report domain of the applying record whose organizational domain is not the
/// policy domain's.
pub(super) async fn external(
    ctx: &Context<'_>,
    found: &Discovery,
    at: &Owner<'_>,
    d: &Dmarc,
) -> Vec<Finding> {
    let mut others: Vec<String> = d
        .uris("rua")
        .iter()
        .chain(&d.uris("ruf"))
        .filter_map(|u| mailto_domain(u))
        .filter(|o| o != at.domain)
        .collect();
    others.sort();
    others.dedup();
    if others.is_empty() {
        return Vec::new();
    }
    // The policy domain is the audited one, whose walk is done, or the parent publishing the record.
    let own_org = match at.inherited {
        false => Ok(found.organizational.clone()),
        true => walk::organizational_domain_of(ctx.resolver, at.domain).await,
    };
    let own_org = match own_org {
        Ok(org) => org,
        Err(e) => {
            let what = format!("the organizational domain of {} ({e})", at.domain);
            return vec![unknown(&at.name, &what)];
        }
    };
    let judged = others
        .iter()
        .map(|other| judge(ctx, at.domain, &own_org, other));
    join_all(judged).await.into_iter().flatten().collect()
}

/// The UNKNOWN of a report domain that could not be judged.
fn unknown(subject: &str, what: &str) -> Finding {
    Finding::new(
        "dmarc.external",
        Status::Unknown,
        subject,
        format!("could not test: {what}"),
    )
}

/// `dmarc.external` for the report domain `other` of the record `owner` publishes (None: same organization).
async fn judge(ctx: &Context<'_>, owner: &str, own_org: &str, other: &str) -> Option<Finding> {
    let name = format!("{owner}._report._dmarc.{other}");
    match walk::organizational_domain_of(ctx.resolver, other).await {
        Ok(org) if org == own_org => None,
        Ok(org) => Some(authorization(ctx, owner, own_org, other, &org).await),
        Err(WalkError::Lookup {
            name: failed,
            reason,
        }) => Some(Finding::unknown_dns(
            "dmarc.external",
            &name,
            &format!("{failed} on the DMARC tree walk of the report domain"),
            &reason,
        )),
        Err(e) => Some(unknown(&name, &e.to_string())),
    }
}

/// `dmarc.external` for one report domain outside the policy domain's organization.
async fn authorization(
    ctx: &Context<'_>,
    owner: &str,
    own_org: &str,
    other: &str,
    other_org: &str,
) -> Finding {
    let name = format!("{owner}._report._dmarc.{other}");
    let outside = format!(
        "{} (organizational domain {}, not {own_org})",
        printable(other),
        printable(other_org)
    );
    match ctx.resolver.txt_or_reason(&name).await {
        Err(e) => Finding::unknown_dns("dmarc.external", &name, "the report authorization record", &e),
        Ok(found) if found.iter().any(|r| has_version(r, "DMARC1")) => Finding::new(
            "dmarc.external",
            Status::Pass,
            &name,
            format!("{outside} accepts DMARC reports for {owner}"),
        ),
        Ok(_) => Finding::new(
            "dmarc.external",
            Status::Fail,
            &name,
            format!(
                "reports go to {outside}, which does not authorize them for {owner} (RFC 7489 7.1): receivers \
                 send none there"
            ),
        )
        .fix(zone_line(&name, "v=DMARC1")),
    }
}
