//! The findings about the applying record's content: `dmarc.record` (PASS, inherited INFO, a public suffix
//! domain's WARN), `dmarc.tags`, `dmarc.historic` and `dmarc.policy`.

use super::Owner;
use crate::audit::checks::txt_records::{
    Dmarc, HISTORIC_DMARC_TAGS, parse_dmarc, with_fix, zone_line,
};
use crate::audit::{Finding, Status};
use crate::dns::dmarc::{Applied, Policy, Tag};
use crate::model::printable;

/// A policy as published: `none`, `quarantine` or `reject`.
fn word(policy: Policy) -> &'static str {
    match policy {
        Policy::Reject => "reject",
        Policy::Quarantine => "quarantine",
        Policy::None | Policy::Unspecified => "none",
    }
}

/// The tag receivers took the policy from, as published (an inherited record without `sp=` gives its `p=`).
fn tag_name(applied: &Applied, d: &Dmarc) -> &'static str {
    match applied.tag {
        Tag::P | Tag::ImpliedNone => "p",
        Tag::Sp if d.get("sp").is_some() => "sp",
        Tag::Sp => "p",
        Tag::Np => "np",
    }
}

/// `TAG=VALUE` as receivers applied it, with where it came from.
fn shown(at: &Owner<'_>, d: &Dmarc, applied: &Applied) -> String {
    let tag = tag_name(applied, d);
    let policy = word(applied.published);
    let mut shown = match (applied.tag, at.inherited) {
        (Tag::ImpliedNone, _) => "no p= (read as p=none because rua= is set)".to_string(),
        (_, true) => {
            let nx = match applied.tag {
                Tag::Np => ", the name does not exist",
                _ => "",
            };
            format!("{tag}={policy} (inherited from {}{nx})", at.name)
        }
        (_, false) => {
            let sp = d.get("sp").map(|s| format!(", subdomains sp={s}"));
            let np = d
                .get("np")
                .map(|s| format!(", non-existent subdomains np={s}"));
            format!(
                "{tag}={policy}{}{}",
                sp.unwrap_or_default(),
                np.unwrap_or_default()
            )
        }
    };
    if applied.effective != applied.published {
        shown = format!(
            "{shown}; t=y (testing): receivers apply {}",
            word(applied.effective)
        );
    }
    shown
}

/// The record with the applying policy raised to quarantine and out of test mode.
fn stricter(at: &Owner<'_>, d: &Dmarc, applied: &Applied) -> String {
    let tag = match (applied.tag, at.inherited) {
        (Tag::Np, _) => "np",
        (Tag::Sp, true) => "sp",
        _ => "p",
    };
    let raised = match applied.published {
        Policy::None | Policy::Unspecified => d.with(tag, Some("quarantine")),
        _ => d.with("", None),
    };
    // `with` repairs the record, so it parses again; `t` goes, as it keeps the policy one step lower.
    match parse_dmarc(&raised) {
        Ok(raised) if d.get("t").is_some() => raised.with("t", None),
        _ => raised,
    }
}

/// `dmarc.record` (PASS, inherited INFO, a public suffix domain's WARN with `own` as the fix), `dmarc.tags`,
/// `dmarc.historic` and `dmarc.policy` for a record that parsed and applies.
pub(super) fn findings(
    name: &str,
    at: &Owner<'_>,
    record: &str,
    d: &Dmarc,
    applied: &Applied,
    own: Option<String>,
) -> Vec<Finding> {
    let inherited = format!(
        "inherited from {} (policy {}={} applies): \"{}\"",
        at.name,
        tag_name(applied, d),
        word(applied.published),
        printable(record)
    );
    let first = match (at.inherited, at.foreign) {
        (_, true) => with_fix(
            Finding::new(
                "dmarc.record",
                Status::Warn,
                name,
                format!(
                    "{inherited}: a public suffix domain's record, whose operator sets your policy and gets \
                     your reports; publish your own"
                ),
            ),
            own,
        ),
        (true, false) => Finding::new("dmarc.record", Status::Info, name, inherited),
        (false, false) => Finding::new("dmarc.record", Status::Pass, name, printable(record)),
    };
    let mut findings = vec![first];
    if at.foreign {
        findings.push(policy_finding(at, d, applied));
        return findings;
    }
    if !d.problems.is_empty() {
        let detail = format!(
            "receivers ignore {} and apply the rest of the record (RFC 9989): {}",
            if d.problems.len() == 1 {
                "this tag"
            } else {
                "these tags"
            },
            d.problems.join("; ")
        );
        // `with` of nothing: the record with the ignored tags repaired or dropped.
        let fix = zone_line(&at.name, &d.with("", None));
        findings.push(Finding::new("dmarc.tags", Status::Warn, &at.name, detail).fix(fix));
    }
    let historic = d.historic();
    if !historic.is_empty() {
        let detail = format!(
            "{}: historic in RFC 9989; receivers following it ignore {} (for a trial, t=y replaces pct)",
            historic.join(", "),
            if historic.len() == 1 { "it" } else { "them" }
        );
        let fix = zone_line(&at.name, &d.without(HISTORIC_DMARC_TAGS));
        findings.push(Finding::new("dmarc.historic", Status::Info, &at.name, detail).fix(fix));
    }
    findings.push(policy_finding(at, d, applied));
    findings
}

/// `dmarc.policy`: the policy receivers apply; the fix raises it, unless the record is not the domain's.
fn policy_finding(at: &Owner<'_>, d: &Dmarc, applied: &Applied) -> Finding {
    let shown = shown(at, d, applied);
    match applied.effective {
        Policy::None | Policy::Unspecified => {
            let warn = Finding::new(
                "dmarc.policy",
                Status::Warn,
                &at.name,
                format!("{shown}: monitoring only, receivers deliver forged mail as usual"),
            );
            match at.foreign {
                true => warn,
                false => warn.fix(zone_line(&at.name, &stricter(at, d, applied))),
            }
        }
        _ => Finding::new("dmarc.policy", Status::Pass, &at.name, printable(&shown)),
    }
}
